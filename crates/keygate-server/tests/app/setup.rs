//! A gateway on a fresh SQLite store: client `mm` (binance, every action), a bearer token, the
//! venue `binance` forwarding to a keygate-sim on loopback with its sealed credential; every
//! request permitted unless a test gives policies of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use keygate_core::auth::{ClientRecord, TokenKind, TokenRecord, new_token};
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine};
use keygate_server::{Gateway, Peer, VenueSetup};
use keygate_store::{Backend, Decider, DeciderOptions, NewCredential, Store, testing};
use keygate_vault::{Binding, CredentialKind, CredentialSecret, MasterKey, SecretString};
use keygate_venues::{Adapter, AdapterOptions, VenueKind};
use rust_decimal::Decimal;
use tower::ServiceExt;

pub const SIM_KEY: &str = "bkey";
pub const SIM_SECRET: &str = "bsecret";

pub struct Env {
    pub app: axum::Router,
    /// The gateway behind `app`, for driving its background tasks in-process.
    pub gw: Arc<Gateway>,
    /// The simulator's address, for requests straight at the venue (around keygate).
    pub venue_url: String,
    pub token: String,
    pub store: Store,
    /// The master key, the venue and the engine, to start another instance on the same store.
    pub master: [u8; 32],
    pub venue: VenueSetup,
    pub engine: Arc<Engine>,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    /// The master key every credential and native key is sealed under.
    pub fn master(&self) -> MasterKey {
        MasterKey::from_bytes(self.master)
    }

    /// Another gateway instance on the same store (its own decider and in-memory caches), as
    /// a second `keygate serve` or this one restarted.
    pub fn another_instance(&self) -> axum::Router {
        let decider = Decider::start(
            self.store.clone(),
            self.engine.clone(),
            DeciderOptions::default(),
        );
        let gw = Gateway::new(
            decider,
            self.store.clone(),
            self.master(),
            vec![self.venue.clone()],
            Duration::from_secs(60),
        )
        .unwrap();
        keygate_server::app(Arc::new(gw))
    }
}

/// The policy every test runs with unless it gives its own.
const PERMIT_ALL: &str = "permit(principal, action, resource);";

fn engine(policies: &str) -> Arc<Engine> {
    Arc::new(Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "p.cedar".into(),
            text: policies.into(),
        }])
        .unwrap(),
        limits: vec![LimitSpec {
            name: "withdraw-1h".into(),
            client: Selector::All,
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Withdraw],
            window: HOUR,
            max_usd_cents: Some(100),
            max_amount: None,
            max_count: None,
        }],
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    })
}

async fn sim() -> String {
    let config = keygate_sim::SimConfig::from_json(&format!(
        r#"{{"accounts": [{{"venue": "binance", "api_key": "{SIM_KEY}", "secret": "{SIM_SECRET}",
            "balances": {{"USDT": "1000000"}}, "restrictions": {{"enable_withdrawals": true}}}}]}}"#
    ))
    .unwrap();
    let sim = keygate_sim::Sim::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate_sim::serve(listener, sim));
    format!("http://{addr}")
}

pub async fn env() -> Env {
    env_with(true).await
}

/// `anonymous_public`: whether binance's public market data goes unsigned without credentials.
pub async fn env_with(anonymous_public: bool) -> Env {
    build(anonymous_public, PERMIT_ALL).await
}

/// A gateway deciding with `policies` (Cedar text).
pub async fn env_with_policies(policies: &str) -> Env {
    build(true, policies).await
}

async fn build(anonymous_public: bool, policies: &str) -> Env {
    let (store, dir) = testing::fresh_store(Backend::Sqlite).await;
    let now = keygate_server::now_ms();
    store
        .add_client(
            &ClientRecord {
                instruments: vec!["BTC/USDT".into()],
                name: "mm".into(),
                venues: vec!["binance".into()],
                actions: Action::ALL.to_vec(),
                tags: vec![],
                enabled: true,
            },
            "alice",
            now,
        )
        .await
        .unwrap();
    let t = new_token([7; 8], [9; 32]);
    store
        .insert_token(
            &TokenRecord {
                id: t.id.clone(),
                client: "mm".into(),
                kind: TokenKind::Bearer,
                secret_hash: t.secret_hash,
                venues: vec!["binance".into()],
                actions: Action::ALL.to_vec(),
                cidrs: vec!["127.0.0.0/8".parse().unwrap()],
                issued_at: now - MINUTE,
                expires_at: now + HOUR,
                revoked_at: None,
            },
            "alice",
        )
        .await
        .unwrap();
    let master_bytes = [42u8; 32];
    let master = MasterKey::from_bytes(master_bytes);
    store
        .set_meta(keygate_store::MASTER_KEY_ID, master.id().as_str())
        .await
        .unwrap();
    let secret = CredentialSecret::new(
        CredentialKind::BinanceHmac,
        vec![
            SecretString::new(SIM_KEY.into()),
            SecretString::new(SIM_SECRET.into()),
        ],
    )
    .unwrap();
    let binding = Binding {
        id: "cr_binance",
        venue: "binance",
        kind: secret.kind().as_str(),
        version: 1,
    };
    let sealed = keygate_vault::seal(&master, &binding, &secret.encode()).unwrap();
    store
        .insert_credential(&NewCredential {
            id: "cr_binance".into(),
            version: 1,
            venue: "binance".into(),
            kind: secret.kind().as_str().into(),
            fingerprint: secret.fingerprint(),
            key_id: sealed.key_id.as_str().into(),
            wrapped_key: sealed.wrapped_key,
            ciphertext: sealed.ciphertext,
            created_ms: now,
        })
        .await
        .unwrap();
    let venue_url = sim().await;
    let venue = VenueSetup {
        name: "binance".into(),
        adapter: Adapter::new(VenueKind::Binance, AdapterOptions::default()),
        base_url: venue_url.clone(),
        credential: "cr_binance".into(),
        timeout: Duration::from_secs(5),
        reconcile_every: None,
        reconcile_lookback: Duration::from_secs(60),
        contain: None,
        anonymous_public,
        anonymous_rate: 2,
    };
    let engine = engine(policies);
    let decider = Decider::start(store.clone(), engine.clone(), DeciderOptions::default());
    let gw = Gateway::new(
        decider,
        store.clone(),
        master,
        vec![venue.clone()],
        Duration::from_secs(60),
    )
    .unwrap();
    let gw = Arc::new(gw);
    Env {
        app: keygate_server::app(gw.clone()),
        gw,
        venue_url,
        token: t.text.to_string(),
        store,
        master: master_bytes,
        venue,
        engine,
        _dir: dir,
    }
}

/// An answer: status, headers and body as JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
}

impl Answer {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }

    pub fn decision(&self) -> Option<i64> {
        self.headers
            .get(keygate_server::DECISION_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    }
}

/// Sends a request to `app` in-process, from 127.0.0.1.
pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.into()).unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(Peer(peer)));
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}
