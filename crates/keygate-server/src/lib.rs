//! keygate's HTTP server: the venue gateway, health and metrics, the reconciliation task, and
//! containment at the venue.
//!
//! [`app`] builds the router from a [`Gateway`] without binding a socket; `keygate serve` binds
//! it. A bot calls `/venues/{venue}/<the venue's own REST path>` with `Authorization: Bearer
//! <token>`; the gateway classifies the request with the venue's adapter, has the decider
//! authenticate and decide it durably in one step, and only then signs it with the venue
//! credential and forwards it. See docs/gateway.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use keygate_core::Millis;
use keygate_store::{Decider, Store};
use keygate_vault::MasterKey;
use keygate_venues::Adapter;

pub mod alerts;
mod bounds;
pub mod containment;
mod credentials;
mod gateway;
pub mod metrics;
pub mod native;
pub mod reconcile;
pub mod reconcile_orders;
pub mod reconcile_transfers;
pub mod references;
pub mod refusal;
pub mod tls;
pub mod transfers;
pub mod venue_format;

pub use credentials::{CredentialCache, CredentialError, keys, open_row};
pub use gateway::{MAX_AUTH_FAILURES_PER_MINUTE, MAX_BODY};
pub use refusal::{DECISION_HEADER, GatewayError, Refusal};

/// The address a connection came from, as the gateway sees it (plain TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// One venue as the gateway reaches it.
#[derive(Debug, Clone)]
pub struct VenueSetup {
    pub name: String,
    pub adapter: Adapter,
    /// The venue's REST base URL, without a trailing slash.
    pub base_url: String,
    /// The id of the vault credential keygate signs with.
    pub credential: String,
    /// How long a forwarded request may take.
    pub timeout: Duration,
    /// How often to reconcile the venue's withdrawal history; None turns it off.
    pub reconcile_every: Option<Duration>,
    /// How far back reconciliation reads on its first run.
    pub reconcile_lookback: Duration,
    /// What an unapproved outflow at this venue freezes (None: nothing, only the alarm).
    pub contain: Option<keygate_core::freeze::Scope>,
    /// Whether the venue's public market-data endpoints are forwarded to requests without
    /// credentials (unsigned, undecided and unaudited), as client libraries send them.
    pub anonymous_public: bool,
    /// Requests a second one source address may send without credentials (`anonymous_public`).
    pub anonymous_rate: u32,
}

/// What the server needs: the decider, the store and master key (for credentials), the venues.
pub struct Gateway {
    pub decider: Decider,
    pub store: Store,
    pub venues: HashMap<String, VenueSetup>,
    pub credentials: CredentialCache,
    pub native_keys: native::NativeKeyCache,
    /// Native signatures already accepted (each is good for one request), in the store.
    pub used_signatures: native::UsedSignatures,
    pub http: reqwest::Client,
    pub throttle: gateway::Throttle,
    pub public_limit: gateway::PublicLimit,
    /// The EVM venues, by name (the transfer API and the chain watchers).
    pub chains: HashMap<String, Arc<transfers::ChainSetup>>,
    /// The instruments' market prices, read from the venues' books.
    pub references: references::References,
    /// Containment at the venue, for the venues that have a containment credential.
    pub containment: Option<Arc<containment::Containment>>,
}

impl Gateway {
    /// Builds a gateway. `credential_ttl` is how long an opened credential stays in memory
    /// before it is read again (so a rotation on any instance takes effect within it).
    pub fn new(
        decider: Decider,
        store: Store,
        master: MasterKey,
        venues: Vec<VenueSetup>,
        credential_ttl: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let native_keys = native::NativeKeyCache::new(store.clone(), credential_ttl);
        let used_signatures = native::UsedSignatures::new(store.clone());
        let credentials = CredentialCache::new(store.clone(), master, credential_ttl);
        Ok(Self {
            decider,
            store,
            venues: venues.into_iter().map(|v| (v.name.clone(), v)).collect(),
            credentials,
            native_keys,
            used_signatures,
            http,
            throttle: gateway::Throttle::default(),
            public_limit: gateway::PublicLimit::default(),
            chains: HashMap::new(),
            references: references::References::default(),
            containment: None,
        })
    }

    /// Reads an instrument's book again once its reading is older than `fresh_for`.
    pub fn with_reference_refresh(mut self, fresh_for: Duration) -> Self {
        self.references = references::References::new(fresh_for);
        self
    }

    /// Adds containment at the venue (see [`containment`]).
    pub fn with_containment(mut self, c: containment::Containment) -> Self {
        self.containment = Some(Arc::new(c));
        self
    }

    /// Adds the EVM venues.
    pub fn with_chains(mut self, chains: Vec<transfers::ChainSetup>) -> Self {
        for c in chains {
            self.chains
                .insert(c.transfers.venue.name.clone(), Arc::new(c));
        }
        self
    }
}

/// The server's routes.
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/venues/{venue}/{*path}", any(gateway::handle))
        .route("/v1/transfers", axum::routing::post(transfers::create))
        .route("/v1/transfers/{id}", get(transfers::show))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::render))
        .fallback(gateway::not_found)
        .with_state(gateway)
}

/// Milliseconds since the Unix epoch, by the system clock (the gateway dates its decisions by
/// its store's [`keygate_store::Clock`] instead).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A request's method that HTTP cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("method {0} cannot be sent")]
pub struct UnsendableMethod(pub String);

/// A signed request to a venue, ready to send.
pub fn venue_request(
    http: &reqwest::Client,
    base_url: &str,
    out: keygate_venues::Outgoing,
    timeout: Duration,
) -> Result<reqwest::RequestBuilder, UnsendableMethod> {
    let Ok(method) = reqwest::Method::from_bytes(out.method.as_bytes()) else {
        return Err(UnsendableMethod(out.method));
    };
    let mut req = http
        .request(method, format!("{base_url}{}", out.path_and_query))
        .timeout(timeout)
        .body(out.body);
    for (h, v) in &out.headers {
        req = req.header(*h, v);
    }
    Ok(req)
}

/// What went wrong with a request to a venue, without its URL (which carries the signed query).
pub fn send_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or failed"
    } else if e.is_body() || e.is_decode() {
        "bad answer body"
    } else {
        "request failed"
    }
}
