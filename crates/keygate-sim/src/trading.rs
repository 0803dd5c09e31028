//! Placing and cancelling orders: an order fills against its market's book at once
//! (`book::take`), its fills move the account's base and quote balances, what rests of a limit
//! order locks its cost, and a cancel gives that back. An order the account's free balance
//! cannot cover is refused whole, and nothing changes.
//!
//! The account pays no fees, and resting orders never fill later (the simulator's books are
//! standing quotes: see [`crate::Market`]).

use rust_decimal::Decimal;

use crate::book::{self, Size, Taken};
use crate::config::VenueKind;
use crate::state::{Fill, Order, OrderStatus, OrderType, Side, State};

/// How an order treats what the book does not fill at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Execution {
    /// Rests until cancelled (Binance `GTC`, OKX `limit`).
    Rest,
    /// Fills what it can; the rest expires (Binance `IOC`, OKX `ioc`; every market order).
    ImmediateOrCancel,
    /// Fills whole at once, or not at all (Binance `FOK`, OKX `fok`).
    FillOrKill,
    /// Rests, and is refused if it would take liquidity (Binance `LIMIT_MAKER`).
    MakerOnly,
}

/// What a new order needs; the state assigns the id, status, fills and times.
pub(crate) struct NewOrder {
    pub venue: VenueKind,
    pub api_key: String,
    /// `None`: generate one (Binance); OKX passes `Some("")` for "not sent".
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub venue_type: String,
    pub execution: Execution,
    /// Base quantity; zero when `quote_quantity` sizes the order.
    pub quantity: Decimal,
    pub quote_quantity: Option<Decimal>,
    /// A limit order's price; `None` for a market order.
    pub price: Option<Decimal>,
    pub time_in_force: Option<String>,
    pub td_mode: Option<String>,
}

/// How a cancel names its order.
pub(crate) enum OrderRef<'a> {
    Id(u64),
    ClientId(&'a str),
    /// Binance may send both; they must name the same order.
    Both(u64, &'a str),
}

/// Why an order was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlaceError {
    /// An open order of the account already has this client order id.
    DuplicateClientOrderId,
    /// The venue lists no such symbol.
    UnknownSymbol,
    /// The account's free balance of `asset` does not cover the order.
    InsufficientBalance { asset: String },
    /// A maker-only order would take liquidity.
    WouldTake,
    /// A size or price so large its cost overflows.
    TooLarge,
}

/// What an order does, before it is settled against the account.
struct Outcome {
    taken: Taken,
    /// Base quantity left resting on the book.
    rest: Decimal,
    status: OrderStatus,
}

/// The fills and the status of `order` against its market's book.
fn execute(state: &State, order: &NewOrder) -> Result<Outcome, PlaceError> {
    let market = state
        .market(order.venue, &order.symbol)
        .ok_or(PlaceError::UnknownSymbol)?;
    if order.execution == Execution::MakerOnly
        && let Some(price) = order.price
        && book::crosses(market, order.side, price)
    {
        return Err(PlaceError::WouldTake);
    }
    let size = match order.quote_quantity {
        Some(q) => Size::Quote(q),
        None => Size::Base(order.quantity),
    };
    let mut taken =
        book::take(market, order.side, order.price, size).ok_or(PlaceError::TooLarge)?;
    if order.execution == Execution::FillOrKill && !taken.complete {
        taken = Taken {
            fills: vec![],
            base: Decimal::ZERO,
            quote: Decimal::ZERO,
            complete: false,
        };
    }
    let rests = matches!(order.execution, Execution::Rest | Execution::MakerOnly)
        && order.order_type == OrderType::Limit;
    let rest = if rests {
        order
            .quantity
            .checked_sub(taken.base)
            .ok_or(PlaceError::TooLarge)?
    } else {
        Decimal::ZERO
    };
    let status = match (rest > Decimal::ZERO, taken.fills.is_empty(), taken.complete) {
        (true, true, _) => OrderStatus::New,
        (true, false, _) => OrderStatus::PartiallyFilled,
        (false, _, true) => OrderStatus::Filled,
        (false, _, false) => OrderStatus::Expired,
    };
    Ok(Outcome {
        taken,
        rest,
        status,
    })
}

/// The balance moves of an order: (asset, change of the free balance, change of the locked
/// one). A buy pays its fills in the quote asset and locks `rest × price` of it, and receives
/// the base filled; a sell gives the base filled and locks the base resting, and receives the
/// quote. `need` is what the free balance must hold first: a limit buy must be able to pay its
/// whole quantity at its price.
struct Settlement {
    moves: Vec<(String, Decimal, Decimal)>,
    need: (String, Decimal),
}

fn settlement(base: &str, quote: &str, order: &NewOrder, out: &Outcome) -> Option<Settlement> {
    let t = &out.taken;
    Some(match order.side {
        Side::Buy => {
            let locked = out.rest.checked_mul(order.price.unwrap_or_default())?;
            let pays = t.quote.checked_add(locked)?;
            let need = match order.price {
                Some(p) if order.order_type == OrderType::Limit && out.status.is_open() => {
                    order.quantity.checked_mul(p)?.max(pays)
                }
                _ => pays,
            };
            Settlement {
                moves: vec![
                    (quote.to_string(), -pays, locked),
                    (base.to_string(), t.base, Decimal::ZERO),
                ],
                need: (quote.to_string(), need),
            }
        }
        Side::Sell => {
            let gives = t.base.checked_add(out.rest)?;
            Settlement {
                moves: vec![
                    (base.to_string(), -gives, out.rest),
                    (quote.to_string(), t.quote, Decimal::ZERO),
                ],
                need: (base.to_string(), gives),
            }
        }
    })
}

impl State {
    /// Places an order: fills it against its market's book, settles the fills and locks what
    /// rests, and records it. On an error nothing changes.
    pub fn place_order(&mut self, order: NewOrder, now_ms: i64) -> Result<Order, PlaceError> {
        let id = self.next_order_id;
        let client_order_id = match &order.client_order_id {
            Some(given) => given.clone(),
            None => format!("sim{id:019}"),
        };
        let key = (order.venue, order.api_key.clone(), client_order_id.clone());
        if !client_order_id.is_empty() && self.open_ids.contains(&key) {
            return Err(PlaceError::DuplicateClientOrderId);
        }
        let index = *self
            .by_key
            .get(&order.api_key)
            .ok_or(PlaceError::UnknownSymbol)?;
        let out = execute(self, &order)?;
        let (base, quote) = match self.market(order.venue, &order.symbol) {
            Some(m) => (m.base.clone(), m.quote.clone()),
            None => return Err(PlaceError::UnknownSymbol),
        };
        let plan = settlement(&base, &quote, &order, &out).ok_or(PlaceError::TooLarge)?;
        self.settle(index, &plan)?;

        self.next_order_id += 1;
        let fills = self.fills(&out.taken);
        if let Some(last) = fills.last() {
            self.last_price
                .insert((order.venue, order.symbol.clone()), last.price);
        }
        let placed = Order {
            venue: order.venue,
            api_key: order.api_key,
            id,
            client_order_id,
            symbol: order.symbol,
            side: order.side,
            order_type: order.order_type,
            venue_type: order.venue_type,
            quantity: order.quantity,
            quote_quantity: order.quote_quantity,
            price: order.price,
            time_in_force: order.time_in_force,
            td_mode: order.td_mode,
            status: out.status,
            executed_quantity: out.taken.base,
            executed_quote: out.taken.quote,
            fills,
            time_ms: now_ms,
            update_time_ms: now_ms,
        };
        if placed.status.is_open() {
            self.open_ids.insert(key);
        }
        self.orders.push(placed.clone());
        Ok(placed)
    }

    /// Checks the free balance covers `plan`, then applies it.
    fn settle(&mut self, index: usize, plan: &Settlement) -> Result<(), PlaceError> {
        let (asset, need) = &plan.need;
        if self.free_of(index, asset) < *need {
            return Err(PlaceError::InsufficientBalance {
                asset: asset.clone(),
            });
        }
        // Compute every new balance before changing any, so an overflow changes nothing.
        let mut updates = Vec::with_capacity(plan.moves.len());
        for (asset, free, locked) in &plan.moves {
            let new_free = self
                .free_of(index, asset)
                .checked_add(*free)
                .ok_or(PlaceError::TooLarge)?;
            let new_locked = self
                .locked_of(index, asset)
                .checked_add(*locked)
                .ok_or(PlaceError::TooLarge)?;
            updates.push((asset.clone(), new_free, new_locked));
        }
        for (asset, free, locked) in updates {
            self.accounts[index].balances.insert(asset.clone(), free);
            if locked.is_zero() {
                self.locked[index].remove(&asset);
            } else {
                self.locked[index].insert(asset, locked);
            }
        }
        Ok(())
    }

    /// Numbers the fills of one order with trade ids.
    fn fills(&mut self, taken: &Taken) -> Vec<Fill> {
        taken
            .fills
            .iter()
            .map(|t| {
                let trade_id = self.next_trade_id;
                self.next_trade_id += 1;
                Fill {
                    trade_id,
                    price: t.price,
                    quantity: t.quantity,
                }
            })
            .collect()
    }

    /// Cancels an open order of `api_key` on `symbol` and unlocks what it locked; `None` when
    /// there is no such open order (unknown, of another account or symbol, filled, expired or
    /// already cancelled).
    pub fn cancel_order(
        &mut self,
        venue: VenueKind,
        api_key: &str,
        symbol: &str,
        by: OrderRef<'_>,
        now_ms: i64,
    ) -> Option<Order> {
        let position = self.orders.iter().position(|o| {
            o.venue == venue
                && o.api_key == api_key
                && o.symbol == symbol
                && o.status.is_open()
                && match by {
                    OrderRef::Id(id) => o.id == id,
                    OrderRef::ClientId(client) => o.client_order_id == client,
                    OrderRef::Both(id, client) => o.id == id && o.client_order_id == client,
                }
        })?;
        let index = *self.by_key.get(api_key)?;
        let order = self.orders[position].clone();
        let (base, quote) = {
            let m = self.market(venue, symbol)?;
            (m.base.clone(), m.quote.clone())
        };
        let rest = order.quantity.checked_sub(order.executed_quantity)?;
        let (asset, amount) = match order.side {
            Side::Buy => (quote, rest.checked_mul(order.price.unwrap_or_default())?),
            Side::Sell => (base, rest),
        };
        let plan = Settlement {
            moves: vec![(asset, amount, -amount)],
            need: (String::new(), Decimal::ZERO),
        };
        self.settle(index, &plan).ok()?;
        let done = &mut self.orders[position];
        done.status = OrderStatus::Canceled;
        done.update_time_ms = now_ms;
        let done = done.clone();
        self.open_ids.remove(&(
            done.venue,
            done.api_key.clone(),
            done.client_order_id.clone(),
        ));
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Level, Market, SimConfig};
    use crate::state::Sim;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn sim() -> Sim {
        let config = SimConfig::from_json(
            r#"{"accounts":[
                {"venue":"binance","api_key":"b1","secret":"s","balances":{"BTC":"1","USDT":"1000"}},
                {"venue":"okx","api_key":"o1","secret":"s","passphrase":"p","balances":{"USDT":"100"}}
            ]}"#,
        )
        .unwrap();
        let market = Market {
            venue: VenueKind::Binance,
            base: "BTC".into(),
            quote: "USDT".into(),
            bids: vec![Level::new(d("99"), d("1")), Level::new(d("98"), d("2"))],
            asks: vec![Level::new(d("101"), d("1")), Level::new(d("102"), d("2"))],
        };
        Sim::with_markets(config, vec![market]).unwrap()
    }

    fn order(side: Side, ty: OrderType, qty: &str, price: Option<&str>) -> NewOrder {
        NewOrder {
            venue: VenueKind::Binance,
            api_key: "b1".into(),
            client_order_id: None,
            symbol: "BTCUSDT".into(),
            side,
            order_type: ty,
            venue_type: "LIMIT".into(),
            execution: match ty {
                OrderType::Limit => Execution::Rest,
                OrderType::Market => Execution::ImmediateOrCancel,
            },
            quantity: d(qty),
            quote_quantity: None,
            price: price.map(d),
            time_in_force: None,
            td_mode: None,
        }
    }

    fn balances(sim: &Sim) -> [Decimal; 4] {
        [
            sim.free("b1", "BTC").unwrap(),
            sim.locked("b1", "BTC").unwrap(),
            sim.free("b1", "USDT").unwrap(),
            sim.locked("b1", "USDT").unwrap(),
        ]
    }

    #[test]
    fn a_crossing_limit_buy_fills_up_to_its_price_and_rests_the_rest() {
        let sim = sim();
        let placed = sim
            .lock()
            .place_order(order(Side::Buy, OrderType::Limit, "4", Some("101.5")), 1)
            .unwrap();
        assert_eq!(placed.status, OrderStatus::PartiallyFilled);
        assert_eq!(
            (placed.executed_quantity, placed.executed_quote),
            (d("1"), d("101"))
        );
        assert_eq!(placed.fills.len(), 1);
        // 1 BTC bought for 101; 3 rest at 101.5, locking 304.5.
        assert_eq!(balances(&sim), [d("2"), d("0"), d("594.5"), d("304.5")]);
        assert_eq!(sim.balance("b1", "USDT"), Some(d("899")));
        assert_eq!(
            sim.lock().last_price(VenueKind::Binance, "BTCUSDT"),
            Some(d("101"))
        );

        let canceled = sim
            .lock()
            .cancel_order(
                VenueKind::Binance,
                "b1",
                "BTCUSDT",
                OrderRef::Id(placed.id),
                2,
            )
            .unwrap();
        assert_eq!(canceled.status, OrderStatus::Canceled);
        assert_eq!(balances(&sim), [d("2"), d("0"), d("899"), d("0")]);
        // Once.
        assert!(
            sim.lock()
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "BTCUSDT",
                    OrderRef::Id(placed.id),
                    3
                )
                .is_none()
        );
    }

    #[test]
    fn market_orders_walk_the_book_and_move_both_balances() {
        let sim = sim();
        let sold = sim
            .lock()
            .place_order(order(Side::Sell, OrderType::Market, "1", None), 1)
            .unwrap();
        assert_eq!(sold.status, OrderStatus::Filled);
        assert_eq!(sold.executed_quote, d("99"));
        assert_eq!(balances(&sim), [d("0"), d("0"), d("1099"), d("0")]);
        let mut by_quote = order(Side::Buy, OrderType::Market, "0", None);
        by_quote.quote_quantity = Some(d("305"));
        let bought = sim.lock().place_order(by_quote, 2).unwrap();
        // 101 for the first BTC, 204 for two at 102.
        assert_eq!(
            (bought.executed_quantity, bought.executed_quote),
            (d("3"), d("305"))
        );
        assert_eq!(bought.status, OrderStatus::Filled);
        assert_eq!(balances(&sim), [d("3"), d("0"), d("794"), d("0")]);
        // More than the book holds: what it holds, the rest expires.
        let big = sim
            .lock()
            .place_order(order(Side::Buy, OrderType::Market, "4", None), 3)
            .unwrap();
        assert_eq!(
            (big.status, big.executed_quantity),
            (OrderStatus::Expired, d("3"))
        );
        assert_eq!(big.executed_quote, d("305"));
        assert_eq!(balances(&sim), [d("6"), d("0"), d("489"), d("0")]);
        assert!(sim.lock().open_orders(VenueKind::Binance, "b1").is_empty());
    }

    #[test]
    fn orders_the_balance_cannot_cover_change_nothing() {
        let sim = sim();
        let before = balances(&sim);
        // 10 BTC at 100 is exactly the 1,000 USDT free; 10.01 is more.
        for o in [
            order(Side::Buy, OrderType::Limit, "10.01", Some("100")),
            order(Side::Sell, OrderType::Limit, "1.5", Some("200")),
            order(Side::Sell, OrderType::Market, "2", None),
            // Crosses for 3 BTC (305), then rests 9 at 102: 1,224 in all.
            order(Side::Buy, OrderType::Limit, "12", Some("102")),
        ] {
            let side = o.side;
            let err = sim.lock().place_order(o, 1).unwrap_err();
            let asset = if side == Side::Buy { "USDT" } else { "BTC" };
            assert_eq!(
                err,
                PlaceError::InsufficientBalance {
                    asset: asset.into()
                }
            );
        }
        assert_eq!(balances(&sim), before);
        assert!(sim.orders().is_empty());
        let exact = sim
            .lock()
            .place_order(order(Side::Buy, OrderType::Limit, "10", Some("100")), 2)
            .unwrap();
        assert_eq!(exact.status, OrderStatus::New);
        assert_eq!(balances(&sim), [d("1"), d("0"), d("0"), d("1000")]);
    }

    #[test]
    fn time_in_force_and_maker_only() {
        let sim = sim();
        let mut fok = order(Side::Buy, OrderType::Limit, "2", Some("101.5"));
        fok.execution = Execution::FillOrKill;
        let killed = sim.lock().place_order(fok, 1).unwrap();
        assert_eq!(
            (killed.status, killed.executed_quantity),
            (OrderStatus::Expired, d("0"))
        );
        let mut ioc = order(Side::Buy, OrderType::Limit, "2", Some("101.5"));
        ioc.execution = Execution::ImmediateOrCancel;
        let partial = sim.lock().place_order(ioc, 2).unwrap();
        assert_eq!(
            (partial.status, partial.executed_quantity),
            (OrderStatus::Expired, d("1"))
        );
        let mut maker = order(Side::Sell, OrderType::Limit, "1", Some("99"));
        maker.execution = Execution::MakerOnly;
        assert_eq!(sim.lock().place_order(maker, 3), Err(PlaceError::WouldTake));
        let mut resting = order(Side::Sell, OrderType::Limit, "1", Some("100"));
        resting.execution = Execution::MakerOnly;
        assert_eq!(
            sim.lock().place_order(resting, 4).unwrap().status,
            OrderStatus::New
        );
        assert_eq!(sim.locked("b1", "BTC"), Some(d("1")));
    }

    #[test]
    fn client_order_ids_are_unique_among_open_orders_only() {
        let sim = sim();
        let mut state = sim.lock();
        let with_id = |id: &str| {
            let mut o = order(Side::Buy, OrderType::Limit, "1", Some("100"));
            o.client_order_id = Some(id.into());
            o
        };
        let first = state.place_order(with_id("c1"), 1).unwrap();
        assert_eq!(first.status, OrderStatus::New);
        assert_eq!(
            state.place_order(with_id("c1"), 2),
            Err(PlaceError::DuplicateClientOrderId)
        );
        let generated = state
            .place_order(order(Side::Buy, OrderType::Limit, "1", Some("100")), 3)
            .unwrap();
        assert!(generated.client_order_id.starts_with("sim"));
        assert_ne!(generated.id, first.id);
        // Wrong symbol, or id and client id naming different orders: not found.
        assert!(
            state
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "ETHUSDT",
                    OrderRef::Id(first.id),
                    4
                )
                .is_none()
        );
        assert!(
            state
                .cancel_order(
                    VenueKind::Binance,
                    "b1",
                    "BTCUSDT",
                    OrderRef::Both(generated.id, "c1"),
                    4
                )
                .is_none()
        );
        let canceled = state
            .cancel_order(
                VenueKind::Binance,
                "b1",
                "BTCUSDT",
                OrderRef::ClientId("c1"),
                4,
            )
            .unwrap();
        assert_eq!(
            (canceled.status, canceled.update_time_ms),
            (OrderStatus::Canceled, 4)
        );
        // The id is free again; an unlisted symbol is refused.
        assert!(state.place_order(with_id("c1"), 6).is_ok());
        assert_eq!(state.open_orders(VenueKind::Binance, "b1").len(), 2);
        let mut unknown = order(Side::Buy, OrderType::Limit, "1", Some("1"));
        unknown.symbol = "ETHBTC".into();
        assert_eq!(
            state.place_order(unknown, 7),
            Err(PlaceError::UnknownSymbol)
        );
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        let sim = sim();
        let huge = order(
            Side::Buy,
            OrderType::Limit,
            "79228162514264337593543950335",
            Some("79228162514264337593543950335"),
        );
        assert_eq!(sim.lock().place_order(huge, 1), Err(PlaceError::TooLarge));
        assert!(sim.orders().is_empty());
    }
}
