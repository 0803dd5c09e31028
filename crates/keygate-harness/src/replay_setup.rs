//! Setting up a gateway replay: the venue simulator with an account per credential, the data
//! directory (keygate-admin's `init` and credentials, never the `keygate` binary), the
//! scenario's clients, address book and tokens on the simulated clock, and the gateway on a
//! loopback port. It must not know the events: [`crate::replay_gateway`] drives them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use keygate_config::Config;
use keygate_config::instance::{Instance, Paths};
use keygate_core::auth::{ClientRecord, TokenRecord};
use keygate_core::time::DAY;
use keygate_server::Gateway;
use keygate_sim::{Account, Restrictions, Sim, SimConfig, VenueKind};
use rust_decimal::Decimal;
use zeroize::Zeroizing;

use crate::replay::{client_cidrs, destination};

fn random_hex(n: usize) -> Result<Zeroizing<String>> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    keygate_vault::random_bytes(&mut b)?;
    Ok(Zeroizing::new(hex::encode(&*b)))
}

/// A venue's key at the simulator: what keygate holds, and what the leaked-key outflows use.
pub struct VenueKey {
    pub kind: VenueKind,
    pub api_key: String,
    pub secret: Zeroizing<String>,
    pub passphrase: Option<Zeroizing<String>>,
}

pub fn venue_kind(k: keygate_venues::VenueKind) -> VenueKind {
    match k {
        keygate_venues::VenueKind::Binance => VenueKind::Binance,
        keygate_venues::VenueKind::Okx => VenueKind::Okx,
    }
}

/// The venue simulator, serving on a loopback port, and the keys of its accounts.
pub struct SimVenues {
    pub url: String,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub keys: HashMap<String, VenueKey>,
}

/// The simulator, with an account per credential (venues may share one, as in the config).
pub async fn start_sim(
    config: &Config,
    header: &keygate_core::replay::Header,
) -> Result<SimVenues> {
    let mut keys: HashMap<String, VenueKey> = HashMap::new();
    let mut accounts = vec![];
    for (name, v) in &config.venues {
        // The simulator plays exchanges only: an EVM venue takes no part in a replay.
        let Some(kind) = v.kind.exchange().map(venue_kind) else {
            continue;
        };
        let credential = v.credential.clone().unwrap_or_else(|| name.clone());
        if let Some(k) = keys.get(&credential) {
            if k.kind != kind {
                bail!(
                    "[venues.{name}] shares credential {credential} with a venue of another kind"
                );
            }
            continue;
        }
        let key = VenueKey {
            kind,
            api_key: format!("replay-{name}"),
            secret: random_hex(16)?,
            passphrase: match kind {
                VenueKind::Okx => Some(random_hex(8)?),
                VenueKind::Binance => None,
            },
        };
        accounts.push(sim_account(&key, header));
        keys.insert(credential, key);
    }
    let sim = Sim::with_markets(SimConfig { accounts }, sim_markets(config, header)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(keygate_sim::serve(listener, sim.clone()));
    Ok(SimVenues { url, task, keys })
}

/// The simulator's book around a reference price: 10 levels a
/// side, 10 bps apart, each deep enough that no order of a scenario walks past the first.
const BOOK_STEP_BPS: u32 = 10;
const BOOK_LEVELS: usize = 10;
const BOOK_DEPTH: i64 = 1_000_000_000_000;

/// The simulator's markets: its defaults (the books version-1 trades rest on), and a book
/// around each of the header's instruments at its first reference price, so the mid keygate
/// reads from the book ticker is the scenario's. The simulator's books do not move: a reference
/// series is not followed (an order's reference in the gateway is the first price). Its books are
/// per kind of venue, so two venues of one kind may not list one symbol at two prices.
pub fn sim_markets(
    config: &Config,
    header: &keygate_core::replay::Header,
) -> Result<Vec<keygate_sim::Market>> {
    let mut markets = keygate_sim::default_markets();
    let mut listed: HashMap<(VenueKind, String), Decimal> = HashMap::new();
    for (venue, symbols) in &header.instruments {
        let kind = config
            .venues
            .get(venue)
            .and_then(|v| v.kind.exchange())
            .map(venue_kind)
            .with_context(|| {
                format!(
                    "the scenario's header lists instruments on {venue}, which has no exchange [venues.{venue}] in the config"
                )
            })?;
        for (symbol, i) in symbols {
            let m = keygate_sim::Market::around(
                kind,
                &i.base,
                &i.quote,
                i.reference,
                BOOK_STEP_BPS,
                BOOK_LEVELS,
                Decimal::from(BOOK_DEPTH),
            );
            if m.symbol() != *symbol {
                bail!(
                    "instrument {symbol} on {venue}: a {kind} venue names {}/{} {}; use that symbol",
                    i.base,
                    i.quote,
                    m.symbol()
                );
            }
            match listed.insert((kind, m.symbol()), i.reference) {
                Some(p) if p != i.reference => bail!(
                    "instrument {symbol} is listed at {p} and at {} on two {kind} venues; the simulator has one book per symbol and kind of venue",
                    i.reference
                ),
                _ => {}
            }
            markets.retain(|x| !(x.venue == kind && x.symbol() == m.symbol()));
            markets.push(m);
        }
    }
    Ok(markets)
}

/// A simulator account for a venue key: every scenario asset in plenty, withdrawals enabled,
/// restricted to loopback.
fn sim_account(key: &VenueKey, header: &keygate_core::replay::Header) -> Account {
    let big = |n: i64| Decimal::from(n);
    Account {
        venue: key.kind,
        api_key: key.api_key.clone(),
        secret: key.secret.to_string(),
        passphrase: key.passphrase.as_ref().map(|p| p.to_string()),
        balances: header
            .prices
            .keys()
            .map(|a| (a.clone(), big(1_000_000_000_000)))
            .collect(),
        restrictions: Restrictions {
            enable_withdrawals: true,
            ip_restrict: true,
            ip: vec!["127.0.0.1".into()],
            ..Restrictions::default()
        },
    }
}

/// The data directory: `init` (keygate-admin's), then the replay's config with the venues at
/// the simulator, and the venue keys in its vault. Nothing of this host's `KEYGATE_*`
/// settings reaches it: the config is read as written.
pub async fn data_dir(data: &Path, config: &Config, sim: &SimVenues) -> Result<Instance> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot make the data directory {}", data.display()))?;
    keygate_admin::init::init(&keygate_admin::init::InitRequest {
        data_dir: data.to_path_buf(),
        passphrase: false,
        store_url: None,
    })
    .await?;
    let made = Config::load_as_written(&data.join("keygate.toml"))?;
    let url = made.store_url(data);
    if !url.starts_with(&format!("sqlite://{}", data.display())) {
        bail!(
            "the replay's store {url} is not the SQLite file in {}",
            data.display()
        );
    }
    let mut cfg = config.clone();
    cfg.store = made.store;
    cfg.vault = made.vault;
    cfg.audit = made.audit;
    cfg.log = made.log;
    cfg.alerts = Default::default();
    cfg.venues.retain(|_, v| v.kind.exchange().is_some());
    for v in cfg.venues.values_mut() {
        v.base_url = Some(sim.url.clone());
        v.reconcile_every = "off".into();
    }
    let paths = Paths {
        config_file: data.join("keygate.toml"),
        base: data.to_path_buf(),
    };
    let inst = Instance::open(cfg, paths).await?;
    for (name, k) in &sim.keys {
        let mut parts = vec![
            keygate_vault::SecretString::new(k.api_key.clone()),
            keygate_vault::SecretString::new(k.secret.to_string()),
        ];
        if let Some(p) = &k.passphrase {
            parts.push(keygate_vault::SecretString::new(p.to_string()));
        }
        let kind = match k.kind {
            VenueKind::Binance => keygate_vault::CredentialKind::BinanceHmac,
            VenueKind::Okx => keygate_vault::CredentialKind::OkxHmac,
        };
        keygate_admin::credentials::add_credential(
            &inst,
            name,
            kind,
            Some(name),
            parts,
            crate::now_ms(),
        )
        .await?;
    }
    Ok(inst)
}

/// Clients, address book and tokens, dated on the simulated clock from `start`; returns each
/// client's token.
pub async fn seed(
    store: &keygate_store::Store,
    cfg: &Config,
    start: i64,
    offset: i64,
) -> Result<HashMap<String, Zeroizing<String>>> {
    let cooldown =
        keygate_config::engine::duration("address_book.cooldown", &cfg.address_book.cooldown)?;
    for c in &cfg.scenario.clients {
        let rec = ClientRecord {
            instruments: c.instruments.clone(),
            name: c.name.clone(),
            venues: c.venues.clone(),
            actions: c.actions.clone(),
            tags: vec![],
            enabled: true,
        };
        store.add_client(&rec, "replay", start).await?;
    }
    for (i, d) in cfg.scenario.destinations.iter().enumerate() {
        let want = destination(i, d, cooldown)?;
        let added = want.added_at + offset;
        let row = store
            .add_destination(
                &want.venue,
                &want.asset,
                &want.address,
                &want.label,
                cooldown,
                "replay",
                added,
            )
            .await?;
        store
            .approve_destination(row.id, "replay-approver", added)
            .await?;
    }
    let mut tokens = HashMap::new();
    for c in &cfg.scenario.clients {
        let cidrs = client_cidrs(c)?;
        let mut id = [0u8; 8];
        let mut secret = Zeroizing::new([0u8; 32]);
        keygate_vault::random_bytes(&mut id)?;
        keygate_vault::random_bytes(&mut *secret)?;
        let t = keygate_core::auth::new_token(id, *secret);
        store
            .insert_token(
                &TokenRecord {
                    id: t.id.clone(),
                    client: c.name.clone(),
                    kind: keygate_core::auth::TokenKind::Bearer,
                    secret_hash: t.secret_hash,
                    venues: c.venues.clone(),
                    actions: c.actions.clone(),
                    cidrs: cidrs.clone(),
                    issued_at: start,
                    // Valid for the whole replay: a bot renews its token, and a scenario
                    // does not script that.
                    expires_at: start.saturating_add(3650 * DAY),
                    revoked_at: None,
                },
                "replay",
            )
            .await?;
        tokens.insert(c.name.clone(), t.text.clone());
    }
    Ok(tokens)
}

/// The gateway `serve` runs, on a loopback port of this process.
pub struct Served {
    pub gw: Arc<Gateway>,
    pub h: keygate_config::StateHandle,
    pub base_url: String,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn serve(inst: Instance, engine: keygate_core::Engine) -> Result<Served> {
    let (gw, h) = keygate_config::setup::gateway(inst, engine).await?;
    let gw = Arc::new(gw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = keygate_server::app(gw.clone())
        .into_make_service_with_connect_info::<keygate_server::Peer>();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Served {
        gw,
        h,
        base_url,
        task,
    })
}
