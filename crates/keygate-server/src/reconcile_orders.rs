//! Reconciliation of each venue's order history, beside the withdrawal one and on its
//! interval: every order the venue shows is judged once by `Store::reconcile_order`. An order
//! that no decision of keygate's forwarded (no client id keygate stamped or recorded) is an
//! unapproved action: a critical audit entry, an error log line and the metric
//! `keygate_unapproved_orders_total`, and the freeze `[containment] unapproved_outflow` names,
//! which starts containment at the venue.
//!
//! Where it last read up to is kept in the store (`reconcile.{venue}.orders_until_ms`); each
//! read overlaps the last by [`OVERLAP`], so a restart leaves no gap. Binance needs a symbol per
//! read: the clients' instruments on the venue, and every pair of an asset the account holds
//! with a quote asset of those (a wash trade into an unlisted pair leaves the pair's base in
//! the account); on a venue no client trades on, every pair of two held assets. OKX reads
//! every spot instrument at once.

use keygate_core::Millis;
use keygate_core::venue_order::VenueOrder;
use keygate_store::reconcile::Reconciled;
use keygate_venues::VenueKind;
use keygate_venues::orders::OrderPage;

use crate::{Gateway, VenueSetup};

/// How far the next read overlaps the last one.
const OVERLAP: Millis = 10 * 60 * 1000;

/// The most history pages one symbol's read takes in a pass.
const MAX_PAGES: usize = 50;

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrdersPass {
    pub seen: usize,
    pub matched: usize,
    pub unapproved: Vec<i64>,
}

fn cursor_key(venue: &str) -> String {
    format!("reconcile.{venue}.orders_until_ms")
}

/// Sends one signed read (`build` makes it; `None`: the venue has none) and returns the
/// answer's body, or `None` for an unlisted symbol.
pub(crate) async fn send(
    gw: &Gateway,
    setup: &VenueSetup,
    what: &str,
    build: impl FnOnce(&keygate_venues::Keys<'_>) -> Option<keygate_venues::Outgoing>,
) -> Result<Option<Vec<u8>>, String> {
    let secret = gw
        .credentials
        .get(&setup.credential)
        .await
        .map_err(|e| e.to_string())?;
    let out = build(&crate::keys(&secret, &setup.credential).map_err(|e| e.to_string())?);
    drop(secret);
    let out = out.ok_or_else(|| format!("{} has no {what} keygate can read", setup.name))?;
    let req = crate::venue_request(&gw.http, &setup.base_url, out, setup.timeout)
        .map_err(|e| e.to_string())?;
    let resp = req.send().await.map_err(|e| {
        format!(
            "cannot read {}'s {what}: {}",
            setup.name,
            crate::send_error(&e)
        )
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|_| format!("cannot read {}'s {what} answer", setup.name))?;
    if status.is_success() {
        return Ok(Some(body.to_vec()));
    }
    if setup.adapter.is_unknown_symbol(&body) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&body);
    Err(format!(
        "{} answered the {what} with HTTP {status}: {}",
        setup.name,
        text.chars().take(200).collect::<String>()
    ))
}

/// The symbols to read on `setup` (Binance); one empty symbol on OKX, which reads them all.
async fn symbols(gw: &Gateway, setup: &VenueSetup) -> Result<Vec<String>, String> {
    if setup.adapter.kind == VenueKind::Okx {
        return Ok(vec![String::new()]);
    }
    let clients = gw.store.clients().await.map_err(|e| e.to_string())?;
    let instruments = crate::references::traded_instruments(&clients, setup);
    let now = gw.store.clock().now();
    let held = match send(gw, setup, "account", |k| {
        Some(setup.adapter.account_request(k, now))
    })
    .await?
    {
        Some(body) => setup.adapter.held_assets(&body)?,
        None => vec![],
    };
    Ok(pairs(&instruments, &held))
}

/// The clients' instruments' symbols, and each held asset against each of their quote assets.
/// A venue no client trades on (withdrawals only, say) still has its orders read: each held
/// asset against each other one.
fn pairs(instruments: &[(String, String)], held: &[String]) -> Vec<String> {
    let mut quotes: Vec<&String> = instruments.iter().map(|(_, q)| q).collect();
    if quotes.is_empty() {
        quotes = held.iter().collect();
    }
    quotes.sort();
    quotes.dedup();
    let mut out: Vec<String> = instruments.iter().map(|(b, q)| format!("{b}{q}")).collect();
    for h in held {
        for q in &quotes {
            if h != *q {
                out.push(format!("{h}{q}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every order of one symbol placed since `since`, page by page.
async fn read_symbol(
    gw: &Gateway,
    setup: &VenueSetup,
    symbol: &str,
    since: Millis,
) -> Result<Vec<VenueOrder>, String> {
    let mut orders = vec![];
    let mut page: Option<OrderPage> = None;
    for _ in 0..MAX_PAGES {
        let now = gw.store.clock().now();
        let body = send(gw, setup, "order history", |k| {
            Some(
                setup
                    .adapter
                    .order_history(symbol, since, page.as_ref(), k, now),
            )
        })
        .await?;
        let Some(body) = body else {
            return Ok(orders);
        };
        let rows = setup.adapter.parse_order_history(&setup.name, &body)?;
        let next = setup.adapter.next_order_page(since, &rows);
        orders.extend(rows);
        match next {
            Some(n) => page = Some(n),
            None => return Ok(orders),
        }
    }
    // Never move the cursor past what was not read: the next pass starts here again.
    Err(format!(
        "{}'s order history of {symbol} since {since} ms is longer than {MAX_PAGES} pages; it was not all read",
        setup.name
    ))
}

/// Reads one venue's order history once and judges every order in it.
pub async fn pass(gw: &Gateway, setup: &VenueSetup) -> Result<OrdersPass, String> {
    let now = gw.store.clock().now();
    let stored = gw
        .store
        .get_meta(&cursor_key(&setup.name))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|s| s.parse::<Millis>().ok());
    let since = match stored {
        Some(t) => t.saturating_sub(OVERLAP),
        None => now.saturating_sub(setup.reconcile_lookback.as_millis() as Millis),
    };
    let mut orders = vec![];
    for symbol in symbols(gw, setup).await? {
        orders.extend(read_symbol(gw, setup, &symbol, since).await?);
    }
    orders.retain(|o| o.at >= since);
    orders.sort_by_key(|o| o.at);
    let mut p = OrdersPass::default();
    for o in &orders {
        judge(gw, setup, o, &mut p).await?;
    }
    gw.store
        .set_meta(&cursor_key(&setup.name), &now.to_string())
        .await
        .map_err(|e| e.to_string())?;
    Ok(p)
}

/// Judges one order; an unapproved one is logged and counted.
async fn judge(
    gw: &Gateway,
    setup: &VenueSetup,
    o: &VenueOrder,
    p: &mut OrdersPass,
) -> Result<(), String> {
    match gw
        .store
        .reconcile_order(o, setup.contain.as_ref())
        .await
        .map_err(|e| e.to_string())?
    {
        Reconciled::Known => {}
        Reconciled::Matched { .. } => {
            p.seen += 1;
            p.matched += 1;
        }
        Reconciled::Unapproved {
            audit_id,
            freeze_id,
        } => {
            p.seen += 1;
            p.unapproved.push(audit_id);
            metrics::counter!("keygate_unapproved_orders_total", "venue" => setup.name.clone())
                .increment(1);
            tracing::error!(
                alarm = "order.unapproved",
                severity = "critical",
                venue = %setup.name,
                venue_id = %o.id,
                symbol = %o.symbol,
                side = o.side.as_str(),
                filled_quote = %o.filled_quote,
                audit_id,
                freeze_id,
                "an order keygate did not forward was placed at the venue: a credential is being used outside keygate"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_assets_are_read_against_the_instruments_quotes() {
        let instruments = vec![("BTC".to_string(), "USDT".to_string())];
        let held = vec!["SHIT".to_string(), "USDT".to_string(), "BTC".to_string()];
        assert_eq!(
            pairs(&instruments, &held),
            vec!["BTCUSDT", "SHITUSDT"],
            "USDTUSDT is not a pair"
        );
    }

    #[test]
    fn with_no_client_instrument_the_held_assets_are_read_against_each_other() {
        let held = vec!["BTC".to_string(), "USDT".to_string()];
        assert_eq!(pairs(&[], &held), vec!["BTCUSDT", "USDTBTC"]);
        assert!(pairs(&[], &[]).is_empty());
    }
}
