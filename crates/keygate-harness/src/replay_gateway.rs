//! `keygate-harness replay --through-gateway` and `keygate-harness demo`: a scenario sent over HTTP through the
//! gateway that `keygate serve` runs (the same code, on a loopback port of this process) in
//! front of the venue simulator, with a fresh SQLite data directory.
//!
//! Everything runs on one simulated clock that the driver moves to each event's time: the
//! store dates its writes by it, the gateway decides and signs by it, the simulator checks
//! signatures and dates withdrawals by it. The scenario is moved forward by whole days (so the
//! hour of the day, which policies and detectors read, is kept) to start after the data
//! directory was made; the report gives the scenario's own times. Each event's outcome is read
//! from the audit entry keygate wrote for it.
//!
//! Request events on a configured venue go through `/venues/<venue>/…` with the client's token,
//! from the event's source address (bound on loopback), in the venue's own REST shape. Events
//! on a venue with no REST adapter (an EVM hot wallet: the transfer API is not built yet) are
//! decided by the gateway's decider directly. An outflow event on a venue is a withdrawal made
//! straight at the simulator with the venue key, around keygate; reconciliation then reads the
//! venue's history, as its background task would. After each allowed withdrawal the venue's
//! history is reconciled too, so a false alarm would show.
//!
//! With a version-3 header the driver follows the venues' balances with the same
//! [`Ledger`] as the in-process replay: an outflow the venue would refuse is not sent; a
//! venue's stated `detect` defers its reconciliation (and the freeze) by that long; and the
//! containment a freeze starts takes effect after the round trips of its requests, measured
//! at a simulator with a master account ([`crate::replay_contain`]) when the freeze is seen.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use keygate_core::replay::{
    Effect, Event, Fate, How, Judged, Ledger, Observed, OutflowEvent, Report, RequestEvent, Tally,
};
use keygate_core::time::DAY;
use keygate_core::{Action, Intent, Outcome};
use keygate_server::{Gateway, VenueSetup};
use keygate_sim::VenueKind;
use keygate_store::Clock;
use rust_decimal::Decimal;
use zeroize::Zeroizing;

use crate::cli::DemoArgs;
use crate::replay::{Scenario, progress};
use crate::replay_setup::{VenueKey, data_dir, seed, serve, start_sim};
use keygate_config::Config;

/// The prices the simulated books quote; orders rest there (far from any real fill).
const BID: &str = "36000";
const ASK: &str = "37000";

/// Runs a scenario through a gateway in a temporary data directory.
pub async fn run(config: &Config, base: &Path, scenario: &Path, show: bool) -> Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("keygate-replay-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    run_in(&dir.path().join("data"), config, base, scenario, show).await
}

/// The driver's view of a running gateway replay.
struct Driver {
    gw: Arc<Gateway>,
    clock: Clock,
    offset: i64,
    base_url: String,
    tokens: HashMap<String, Zeroizing<String>>,
    http: HashMap<IpAddr, reqwest::Client>,
    keys: HashMap<String, VenueKey>,
    sim_url: String,
    plain: reqwest::Client,
    /// Freezes seen so far.
    freezes: BTreeSet<i64>,
    /// The last order each client placed (its client order id and venue symbol), for its next
    /// cancel.
    last_order: HashMap<String, (String, String)>,
    orders: u64,
    contain: keygate_core::replay::Contain,
    engine: Arc<keygate_core::Engine>,
    /// The venues' balances and containments (version 3).
    ledger: Ledger,
    /// Outflows reconciliation has yet to see: (when, the outflow).
    pending: Vec<(i64, OutflowEvent)>,
    /// Measures containment's round trips (only for a scenario that contains an exchange).
    probe: Option<crate::replay_contain::Probe>,
}

/// Sets up the data directory, the simulator and the gateway, then runs every event.
pub async fn run_in(
    data: &Path,
    config: &Config,
    base: &Path,
    path: &Path,
    show: bool,
) -> Result<Report> {
    let mut scenario = Scenario::open(path)?;
    let header = scenario.header.clone();
    crate::replay::check_containment(config, &header)?;
    let engine = crate::replay::engine(config, base, &header)?;
    // Checked before anything starts.
    crate::replay::state(config, &engine, &header)?;
    let contain = keygate_config::engine::contain(config)?;

    // Whole days forward, to start after everything `init` and `credential add` record now.
    let now = crate::now_ms();
    let offset = ((now - header.start).div_euclid(DAY) + 2) * DAY;
    let clock = Clock::simulated(header.start + offset);
    let Clock::Simulated(shared) = &clock else {
        bail!("the replay clock is not simulated");
    };
    keygate_sim::use_clock(shared.clone())
        .map_err(|e| anyhow::anyhow!("{e}: one gateway replay runs per process"))?;

    let sim = start_sim(config, &header).await?;
    let mut inst = data_dir(data, config, &sim).await?;
    inst.store = inst.store.clone().with_clock(clock.clone());
    let tokens = seed(&inst.store, &inst.config, header.start + offset, offset).await?;
    let served = serve(inst, engine).await?;
    // The same engine again, for the containment scope of outflows on venues with no adapter.
    let engine = Arc::new(crate::replay::engine(config, base, &header)?);
    let probe = probe(&served.gw, &header).await?;
    let mut driver = Driver {
        gw: served.gw.clone(),
        clock,
        offset,
        base_url: served.base_url.clone(),
        tokens,
        http: HashMap::new(),
        keys: sim.keys,
        sim_url: sim.url,
        plain: reqwest::Client::new(),
        freezes: BTreeSet::new(),
        last_order: HashMap::new(),
        orders: 0,
        contain,
        engine,
        ledger: Ledger::new(&header),
        pending: vec![],
        probe,
    };
    let clients = crate::replay::client_nets(config)?;
    let result = driver.run(&mut scenario, &clients, show).await;
    served.task.abort();
    sim.task.abort();
    served.h.store.close().await;
    result
}

impl Driver {
    /// Every event of the scenario, each on its time, tallied.
    async fn run(
        &mut self,
        scenario: &mut Scenario,
        clients: &crate::replay::ClientNets<'_>,
        show: bool,
    ) -> Result<Report> {
        let header = scenario.header.clone();
        let mut tally = Tally::new(&header, "gateway", &self.engine.pinned);
        let bar = show.then(|| progress(scenario.size));
        let mut n = 0u64;
        let result: Result<()> = async {
            while let Some(event) = scenario.next_event()? {
                self.due(event.t(), &mut tally)
                    .await
                    .with_context(|| format!("before event {}", n + 1))?;
                self.clock.advance(event.t() + self.offset);
                match &event {
                    Event::Request(r) => {
                        crate::replay::check_client(clients, r, n)?;
                        let seen = self
                            .request(r, &mut tally)
                            .await
                            .with_context(|| format!("event {}", n + 1))?;
                        tally.request(r, &seen);
                    }
                    Event::Outflow(o) => {
                        let judged = self
                            .outflow(o, &mut tally)
                            .await
                            .with_context(|| format!("event {}", n + 1))?;
                        tally.outflow(o, &judged);
                    }
                }
                n += 1;
                if let Some(b) = &bar
                    && n.is_multiple_of(64)
                {
                    b.set_position(scenario.read);
                }
            }
            Ok(())
        }
        .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result?;
        Ok(tally.report())
    }
}

/// An HTTP client whose connections come from `ip` (a loopback address: a scenario's hosts).
fn client_from(ip: IpAddr) -> Result<reqwest::Client> {
    if !ip.is_loopback() {
        bail!(
            "a gateway replay sends from each client's address, bound on this machine: {ip} is not a loopback address (use 127.x.y.z in [[scenario.clients]] cidrs and source_ip)"
        );
    }
    Ok(reqwest::Client::builder()
        .local_address(ip)
        .pool_max_idle_per_host(4)
        // The gateway's server closes a keep-alive connection that waits 30 s for its next
        // request (hyper's header read timeout); a client that reuses one as it closes gets
        // "connection closed before message completed". A client whose host sends rarely (on
        // a loaded machine, 30 s of real time between its events) drops idle ones sooner.
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()?)
}

impl Driver {
    /// The outcome keygate recorded in audit entry `seq`.
    async fn observed(&self, seq: i64) -> Result<Observed> {
        // Reads and denials are answered before their batch commits: wait for it.
        let mut waited = 0;
        let row = loop {
            match self.gw.store.audit_entry(seq).await? {
                Some(row) => break row,
                None if waited < 10_000 => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    waited += 1;
                }
                None => bail!("audit entry {seq} did not appear within 10 s"),
            }
        };
        let keygate_store::audit::AuditEntry::Decision(d) = row.entry()? else {
            bail!("audit entry {seq} is not a decision: {}", row.entry);
        };
        let (outcome, stage) = (d.outcome, d.stage);
        let detectors = d
            .detections
            .iter()
            .map(|s| s.detector.to_string())
            .collect();
        let froze = if outcome == Outcome::Deny {
            self.new_freeze().await?
        } else {
            None
        };
        Ok(Observed {
            outcome,
            stage,
            froze,
            detectors,
            fate: Fate::Unfollowed,
        })
    }

    /// A freeze set since the last look, with who set it.
    async fn new_freeze(&self) -> Result<Option<(keygate_core::freeze::Scope, String)>> {
        let rows = self.gw.store.freezes(false).await?;
        Ok(rows
            .into_iter()
            .find(|f| !self.freezes.contains(&f.freeze.id))
            .map(|f| (f.freeze.scope, f.freeze.set_by)))
    }

    async fn remember_freezes(&mut self) -> Result<()> {
        for f in self.gw.store.freezes(false).await? {
            self.freezes.insert(f.freeze.id);
        }
        Ok(())
    }

    async fn request(&mut self, r: &RequestEvent, tally: &mut Tally) -> Result<Observed> {
        let mut seen = match self.gw.venues.get(&r.venue).cloned() {
            Some(setup) => {
                let seq = self.send(setup.adapter.kind, r).await?;
                let mut seen = self.observed(seq).await?;
                // A venue with an outflow reconciliation has yet to see is reconciled then.
                let waiting = self.pending.iter().any(|(_, o)| o.venue == r.venue);
                if seen.outcome == Outcome::Allow && r.action == Action::Withdraw && !waiting {
                    let pass = self.reconcile(&setup).await?;
                    // keygate's own withdrawal taken for an unapproved one: a false alarm,
                    // and the freeze it set, counted against this event.
                    if !pass.unapproved.is_empty()
                        && let Some((scope, _)) = self.new_freeze().await?
                    {
                        seen.froze = Some((scope, "reconciliation".into()));
                    }
                }
                seen
            }
            None => {
                let intent = Intent {
                    token_id: None,
                    ..r.intent()
                };
                let d = self.gw.decider.decide(intent, self.clock.now()).await?;
                self.observed(d.id).await?
            }
        };
        self.remember_freezes().await?;
        if seen.outcome == Outcome::Allow {
            seen.fate = self.ledger.allowed(r);
        }
        if let Some((scope, _)) = &seen.froze {
            self.freeze_set(scope, r.t, tally).await?;
        }
        Ok(seen)
    }

    /// What is due by `t` (scenario time): the reconciliations of outflows seen `detect` after
    /// them, each on the clock at its time, with the freezes they set; then the containments
    /// due.
    async fn due(&mut self, t: i64, tally: &mut Tally) -> Result<()> {
        self.pending.sort_by_key(|(at, _)| *at);
        while self.pending.first().is_some_and(|(at, _)| *at <= t) {
            let (at, o) = self.pending.remove(0);
            self.clock.advance(at + self.offset);
            self.judge(&o).await?;
            if let Some(scope) = self.new_freeze().await?.map(|(s, _)| s) {
                self.remember_freezes().await?;
                tally.effect(&Effect::Froze {
                    at,
                    scope: scope.clone(),
                });
                self.freeze_set(&scope, at, tally).await?;
            }
        }
        for c in self.ledger.due(t) {
            tally.effect(&Effect::Contained(c));
        }
        Ok(())
    }

    /// A freeze of `scope` seen at `at`: each exchange venue it starts a containment of has
    /// its containment's round trips measured now, and takes effect that long after `at`.
    async fn freeze_set(
        &mut self,
        scope: &keygate_core::freeze::Scope,
        at: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let engine = self.engine.clone();
        let credential_of = |v: &str| engine.credential_of(v).map(str::to_string);
        for (venue, plan) in self.ledger.to_plan(credential_of, scope) {
            let (Some(setup), Some(probe), How::Sweep) =
                (self.gw.venues.get(&venue), self.probe.as_mut(), plan.how)
            else {
                continue;
            };
            let held = self.ledger.holdings(&venue);
            let ms = probe
                .measure(&setup.adapter, &held, self.clock.now())
                .await
                .with_context(|| format!("measuring the containment of {venue}"))?;
            self.ledger.set_latency(&venue, ms);
            tally.measured(&venue, ms);
        }
        self.ledger.freeze_set(credential_of, scope, at);
        Ok(())
    }

    /// Sends a request event as the venue's REST call; returns keygate's decision id.
    async fn send(&mut self, kind: keygate_venues::VenueKind, r: &RequestEvent) -> Result<i64> {
        let (method, path, body) = self.rest_call(kind, r)?;
        let token = self.tokens.get(&r.client).with_context(|| {
            format!(
                "client {} has no token: declare it in [[scenario.clients]]",
                r.client
            )
        })?;
        let ip = r.source_ip;
        let http = match self.http.entry(ip) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(client_from(ip)?),
        };
        let url = format!("{}/venues/{}{path}", self.base_url, r.venue);
        let mut req = http
            .request(method, url)
            .header("Authorization", format!("Bearer {}", token.as_str()));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let seq = resp
            .headers()
            .get("x-keygate-decision")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let text = resp.text().await.unwrap_or_default();
        decision_of(r, status, seq, &text)
    }

    /// The venue's REST call for a request event: method, path and query, JSON body.
    fn rest_call(&mut self, kind: keygate_venues::VenueKind, r: &RequestEvent) -> Result<RestCall> {
        let amount = r.amount.unwrap_or_default().normalize().to_string();
        let asset = r.asset.clone().unwrap_or_default();
        let to = r.to.clone().unwrap_or_default();
        self.orders += 1;
        let order_id = format!("rp{}", self.orders);
        let binance = kind == keygate_venues::VenueKind::Binance;
        // (method, path and query, JSON body)
        Ok(match (r.action, binance) {
            (Action::Read, true) => (reqwest::Method::GET, "/api/v3/account".into(), None),
            (Action::Read, false) => (reqwest::Method::GET, "/api/v5/account/balance".into(), None),
            (Action::Trade, _) if r.order.is_some() => {
                let order = r.order.as_ref().context("a trade with an order")?;
                self.last_order
                    .insert(r.client.clone(), (order_id.clone(), order.symbol.clone()));
                order_call(binance, order, &order_id)?
            }
            (Action::Trade, _) => {
                let (side, qty, px) = order_terms(&asset, r.amount.unwrap_or_default())?;
                let symbol = if binance { "BTCUSDT" } else { "BTC-USDT" };
                self.last_order
                    .insert(r.client.clone(), (order_id.clone(), symbol.into()));
                if binance {
                    (
                        reqwest::Method::POST,
                        format!(
                            "/api/v3/order?symbol=BTCUSDT&side={}&type=LIMIT&timeInForce=GTC&quantity={qty}&price={px}&newClientOrderId={order_id}",
                            side.to_uppercase()
                        ),
                        None,
                    )
                } else {
                    (
                        reqwest::Method::POST,
                        "/api/v5/trade/order".into(),
                        Some(serde_json::json!({
                            "instId": "BTC-USDT", "tdMode": "cash", "side": side,
                            "ordType": "limit", "sz": qty, "px": px, "clOrdId": order_id,
                        })),
                    )
                }
            }
            (Action::Cancel, _) => {
                let (id, symbol) = self.last_order.get(&r.client).cloned().unwrap_or_else(|| {
                    let symbol = if binance { "BTCUSDT" } else { "BTC-USDT" };
                    ("none".into(), symbol.into())
                });
                if binance {
                    (
                        reqwest::Method::DELETE,
                        format!("/api/v3/order?symbol={symbol}&origClientOrderId={id}"),
                        None,
                    )
                } else {
                    (
                        reqwest::Method::POST,
                        "/api/v5/trade/cancel-order".into(),
                        Some(serde_json::json!({"instId": symbol, "clOrdId": id})),
                    )
                }
            }
            (Action::Withdraw, true) => (
                reqwest::Method::POST,
                format!(
                    "/sapi/v1/capital/withdraw/apply?coin={asset}&address={to}&amount={amount}"
                ),
                None,
            ),
            (Action::Withdraw, false) => (
                reqwest::Method::POST,
                "/api/v5/asset/withdrawal".into(),
                Some(serde_json::json!({
                    "ccy": asset, "amt": amount, "dest": "4", "toAddr": to,
                })),
            ),
            (Action::Transfer, _) => bail!(
                "venue {} is an exchange: a transfer goes to an EVM venue (one not in [venues])",
                r.venue
            ),
        })
    }

    /// Reads the venue's history and judges what it shows, as the reconciler does.
    async fn reconcile(&mut self, setup: &VenueSetup) -> Result<keygate_server::reconcile::Pass> {
        keygate_server::reconcile::pass(&self.gw, setup)
            .await
            .map_err(|e| anyhow::anyhow!("reconciling {}: {e}", setup.name))
    }

    /// An outflow keygate did not make: a withdrawal straight at the venue with its key (if the
    /// venue would let it out: one it refuses is not sent), then reconciliation, at once or
    /// the venue's `detect` later; on a venue with no REST adapter, the outflow as a watcher
    /// reports it.
    async fn outflow(&mut self, o: &OutflowEvent, tally: &mut Tally) -> Result<Judged> {
        let fate = self.ledger.spend(&o.venue, &o.asset, o.amount);
        if !fate.got() {
            return Ok(Judged {
                matched: false,
                froze: None,
                fate,
            });
        }
        if let Some(setup) = self.gw.venues.get(&o.venue).cloned() {
            self.leaked_withdrawal(&setup, o).await?;
        }
        let detect = self.ledger.detect(&o.venue);
        if detect > 0 {
            self.pending.push((o.t.saturating_add(detect), o.clone()));
            // Judged then: an outflow keygate never allowed, whatever else it matches.
            return Ok(Judged {
                matched: false,
                froze: None,
                fate,
            });
        }
        let matched = self.judge(o).await?;
        let froze = self.new_freeze().await?.map(|(s, _)| s);
        self.remember_freezes().await?;
        if let Some(scope) = &froze {
            self.freeze_set(scope, o.t, tally).await?;
        }
        Ok(Judged {
            matched,
            froze,
            fate,
        })
    }

    /// Reconciliation of an outflow: the venue's history read and judged, or, on a venue with
    /// no REST adapter, the outflow judged as the watcher reports it. Whether it matched.
    async fn judge(&mut self, o: &OutflowEvent) -> Result<bool> {
        Ok(match self.gw.venues.get(&o.venue).cloned() {
            Some(setup) => {
                let pass = self.reconcile(&setup).await?;
                pass.unapproved.is_empty()
            }
            None => {
                let scope = self.contain.scope(&self.engine, &o.venue);
                let r = self
                    .gw
                    .store
                    .reconcile_outflow(&o.outflow(), scope.as_ref())
                    .await?;
                matches!(r, keygate_store::reconcile::Reconciled::Matched { .. })
            }
        })
    }

    /// A withdrawal signed with the venue's own key, sent straight to the simulator.
    async fn leaked_withdrawal(&self, setup: &VenueSetup, o: &OutflowEvent) -> Result<()> {
        let key = self
            .keys
            .get(&setup.credential)
            .with_context(|| format!("venue {} has no key at the simulator", o.venue))?;
        let amount = o.amount.normalize().to_string();
        let (method, path, query, body) = match key.kind {
            VenueKind::Binance => (
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                format!(
                    "coin={}&address={}&amount={amount}&withdrawOrderId={}",
                    o.asset, o.to, o.tx
                ),
                String::new(),
            ),
            VenueKind::Okx => (
                "POST",
                "/api/v5/asset/withdrawal",
                String::new(),
                serde_json::json!({
                    "ccy": o.asset, "amt": amount, "dest": "4", "toAddr": o.to, "clientId": o.tx,
                })
                .to_string(),
            ),
        };
        let classified = setup
            .adapter
            .classify(&keygate_venues::Request {
                method,
                path,
                query: &query,
                body: body.as_bytes(),
            })
            .map_err(|e| anyhow::anyhow!("outflow {}: {e}", o.tx))?;
        let keys = keygate_venues::Keys {
            api_key: &key.api_key,
            secret: key.secret.as_str(),
            passphrase: key.passphrase.as_ref().map(|p| p.as_str()),
        };
        let out = setup.adapter.sign(&classified, &keys, self.clock.now());
        let resp = keygate_server::venue_request(&self.plain, &self.sim_url, out, setup.timeout)
            .map_err(anyhow::Error::msg)?
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "the simulator refused the outflow {}: {}",
                o.tx,
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// The containment probe, for a scenario that contains an exchange venue (none otherwise):
/// a master and sub-account of each kind such venues are, holding the header's assets.
async fn probe(
    gw: &Gateway,
    header: &keygate_core::replay::Header,
) -> Result<Option<crate::replay_contain::Probe>> {
    let kinds: Vec<VenueKind> = header
        .containment
        .iter()
        .filter(|(_, c)| c.how == How::Sweep)
        .filter_map(|(v, _)| gw.venues.get(v))
        .map(|s| crate::replay_setup::venue_kind(s.adapter.kind))
        .collect();
    if kinds.is_empty() {
        return Ok(None);
    }
    let assets: Vec<String> = header
        .balances
        .values()
        .flat_map(|b| b.keys().cloned())
        .collect();
    Ok(Some(crate::replay_contain::start(&kinds, &assets).await?))
}

/// A REST call: method, path and query, JSON body.
type RestCall = (reqwest::Method, String, Option<serde_json::Value>);

/// A scenario order as the venue's own order request, with the terms the replay decided it
/// by (so the gateway classifies the same order):
/// - Binance `POST /api/v3/order` (<https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints#new-order-trade>):
///   `symbol`, `side`, `type` `LIMIT` with `timeInForce=GTC`, `quantity` and `price`, or
///   `MARKET` with `quantity` (base) or `quoteOrderQty` (quote);
/// - OKX `POST /api/v5/trade/order` (<https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order>):
///   `instId`, `tdMode` `cash`, `side`, `ordType` `limit` with `sz` (base) and `px`, or
///   `market` with `sz` in the unit `tgtCcy` names (`base_ccy` or `quote_ccy`), said
///   explicitly since its default depends on the side.
fn order_call(binance: bool, o: &keygate_core::order::Order, id: &str) -> Result<RestCall> {
    use keygate_core::order::OrderKind;
    let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    let (qty, quote_qty, px) = (text(o.quantity), text(o.quote_quantity), text(o.price));
    let side = o.side.as_str();
    if binance {
        let terms = match (o.kind, qty, quote_qty, px) {
            (OrderKind::Limit, Some(q), None, Some(p)) => {
                format!("type=LIMIT&timeInForce=GTC&quantity={q}&price={p}")
            }
            (OrderKind::Market, Some(q), None, None) => format!("type=MARKET&quantity={q}"),
            (OrderKind::Market, None, Some(q), None) => format!("type=MARKET&quoteOrderQty={q}"),
            _ => bail!("order on {} has no terms the venue takes", o.symbol),
        };
        let path = format!(
            "/api/v3/order?symbol={}&side={}&{terms}&newClientOrderId={id}",
            o.symbol,
            side.to_uppercase()
        );
        return Ok((reqwest::Method::POST, path, None));
    }
    let mut body = serde_json::json!({
        "instId": o.symbol, "tdMode": "cash", "side": side, "clOrdId": id,
    });
    let terms = match (o.kind, qty, quote_qty, px) {
        (OrderKind::Limit, Some(q), None, Some(p)) => {
            serde_json::json!({"ordType": "limit", "sz": q, "px": p})
        }
        (OrderKind::Market, Some(q), None, None) => {
            serde_json::json!({"ordType": "market", "sz": q, "tgtCcy": "base_ccy"})
        }
        (OrderKind::Market, None, Some(q), None) => {
            serde_json::json!({"ordType": "market", "sz": q, "tgtCcy": "quote_ccy"})
        }
        _ => bail!("order on {} has no terms the venue takes", o.symbol),
    };
    if let (Some(b), Some(t)) = (body.as_object_mut(), terms.as_object()) {
        b.extend(t.clone());
    }
    Ok((
        reqwest::Method::POST,
        "/api/v5/trade/order".into(),
        Some(body),
    ))
}

/// A trade event as a resting limit order: a buy committing `amount` USDT at the bid, or a
/// sell of `amount` BTC at the ask.
fn order_terms(asset: &str, amount: Decimal) -> Result<(&'static str, String, &'static str)> {
    match asset {
        "USDT" => {
            let px: Decimal = BID.parse()?;
            let qty = (amount / px).round_dp(6).max(Decimal::new(1, 6));
            Ok(("buy", qty.normalize().to_string(), BID))
        }
        "BTC" => Ok(("sell", amount.normalize().to_string(), ASK)),
        other => bail!(
            "a gateway replay trades BTC against USDT; a trade of {other} has no order to send"
        ),
    }
}

/// `keygate-harness demo`: the Kronos scenario through the gateway, in a new directory it keeps.
pub async fn demo(args: &DemoArgs) -> Result<()> {
    let dir: PathBuf = match &args.out {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!(
                    "{} is not empty; give --out a new or empty directory",
                    d.display()
                );
            }
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("keygate-demo-")
            .tempdir()
            .context("cannot make a temporary directory")?
            .keep(),
    };
    let scenario = dir.join("kronos-2023.jsonl");
    let config = dir.join("kronos-2023.toml");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&scenario)?);
        crate::scenarios::kronos(&mut out)?;
        out.flush()?;
    }
    std::fs::write(&config, crate::scenarios::KRONOS_CONFIG)?;
    std::fs::write(
        dir.join("kronos-2023.cedar"),
        crate::scenarios::KRONOS_POLICIES,
    )?;
    println!(
        "keygate demo: the Kronos Research theft of 2023-11-18 (a leaked key's 72 USDT test, then ~$26M in three hours) replayed through a live keygate gateway in front of a simulated Binance, OKX, BTSE and Deepcoin, after 14 days of normal bot traffic."
    );
    println!("working in {}", dir.display());
    let cfg = Config::load_as_written(&config)?;
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = run_in(&dir.join("data"), &cfg, &dir, &scenario, show).await?;
    let json = dir.join("report.json");
    let chart = dir.join("chart.svg");
    crate::replay::finish(&report, Some(&json), Some(&chart))?;
    let allowed = report.attack_allowed_usd.clone();
    println!();
    println!(
        "Outcome: through keygate the attacker would have got USD {allowed}. Without it, Kronos lost about USD 26,000,000 (Kronos; DN Institute)."
    );
    println!(
        "Normal traffic: {} of {} bot requests allowed; denied {}, held {}, frozen {}.",
        report.normal.allowed,
        report.normal.events,
        report.normal_denied,
        report.normal_held,
        report.normal_frozen
    );
    println!("The chart is {}", chart.display());
    Ok(())
}

/// keygate's decision id for a request's answer; a refusal before the decision (a bad token,
/// an unclassified request) is the replay's fault, not an outcome.
fn decision_of(
    r: &RequestEvent,
    status: reqwest::StatusCode,
    seq: Option<i64>,
    text: &str,
) -> Result<i64> {
    let Some(seq) = seq else {
        bail!(
            "keygate refused a {} of {} on {} before deciding it ({status}): {text}",
            r.action,
            r.client,
            r.venue
        );
    };
    // A refusal before the decision (a bad token, an unclassified request) is the
    // replay's fault, not an outcome.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(code) = v["error"].as_str()
        && !["denied", "frozen"].contains(&code)
    {
        bail!(
            "keygate refused a {} of {} on {} ({status} {code}): {}",
            r.action,
            r.client,
            r.venue,
            v["reason"]
        );
    }
    Ok(seq)
}
