//! The venue route: authenticate, classify, decide, sign, forward.
//!
//! Nothing is forwarded unless the decider has recorded an allow (and its limit debit) first.
//! Every refusal is a JSON body `{error, reason, decision_id}` with a status that says who must
//! act: 400 the request is malformed, 401 the token is not valid, 403 keygate said no, 404 no
//! such venue, 409 a request id was used before, 413 the body is too large, 429 too many
//! refused tokens came from this address in the last minute, 202 the request is
//! held for approval, 500 an allowed request could not be signed (its credential cannot be
//! opened), 502 the venue could not be reached, 503 keygate could not record the decision (and
//! so did nothing).
//!
//! A bot may instead authenticate as the exchange documents, with a keygate native key
//! (`X-MBX-APIKEY` and `signature`, or `OK-ACCESS-*`): the signature and its time window are
//! checked against the key's sealed secret ([`crate::native`]), the decider checks the key as a
//! token, and every refusal is answered in the venue's own error format instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keygate_core::auth::{self, AuthError};
use keygate_core::{Intent, Outcome};
use keygate_store::{Answer, GatewayRequest};
use keygate_venues::native::{self as signing, Claim, Mandatory, NativeError};
use keygate_venues::{Classified, ClassifyError, Keys, Request, VenueKind};
use serde_json::json;

use crate::native::Style;
use crate::{Gateway, metrics};

/// The largest request body the gateway reads.
pub const MAX_BODY: usize = 64 * 1024;

/// The header that carries the decision id on every answer that has one.
pub const DECISION_HEADER: &str = "x-keygate-decision";

/// Refused tokens one source address may send per minute before the gateway stops passing its
/// requests to the decider (each refusal is an audit write; a flood must not become one).
pub const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 30;

/// Counts events per key over fixed windows (a poisoned lock is read through, never skipped).
pub struct Windows<K> {
    window: std::time::Duration,
    by_key: std::sync::Mutex<std::collections::HashMap<K, (Instant, u32)>>,
}

impl<K: std::hash::Hash + Eq> Windows<K> {
    pub fn new(window: std::time::Duration) -> Self {
        Self {
            window,
            by_key: std::sync::Mutex::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<K, (Instant, u32)>> {
        match self.by_key.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// The count of `key` in its current window.
    pub fn count(&self, key: &K) -> u32 {
        self.map()
            .get(key)
            .filter(|(start, _)| start.elapsed() < self.window)
            .map_or(0, |(_, n)| *n)
    }

    /// Counts one event of `key`; the count in its current window, this one included.
    pub fn add(&self, key: K) -> u32 {
        let mut map = self.map();
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| start.elapsed() < self.window);
        }
        let e = map.entry(key).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= self.window {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }
}

/// Counts refused tokens per source address over one-minute windows.
pub struct Throttle(Windows<std::net::IpAddr>);

impl Default for Throttle {
    fn default() -> Self {
        Self(Windows::new(std::time::Duration::from_secs(60)))
    }
}

impl Throttle {
    /// Whether `ip` has used up its refusals for this minute.
    pub(crate) fn blocked(&self, ip: std::net::IpAddr) -> bool {
        self.0.count(&ip) >= MAX_AUTH_FAILURES_PER_MINUTE
    }

    /// Counts one refusal of `ip`.
    pub(crate) fn failed(&self, ip: std::net::IpAddr) {
        if self.0.add(ip) == MAX_AUTH_FAILURES_PER_MINUTE {
            tracing::warn!(%ip, "too many refused tokens from this address; its requests are refused unrecorded for the rest of the minute");
        }
    }
}

/// Requests forwarded without credentials (`anonymous_public`), per venue and source address
/// over one-second windows: anyone who can reach the listener must not spend all of keygate's
/// request weight at the venue, which would get the signed requests of the bots refused.
pub struct PublicLimit(Windows<(String, std::net::IpAddr)>);

impl Default for PublicLimit {
    fn default() -> Self {
        Self(Windows::new(std::time::Duration::from_secs(1)))
    }
}

impl PublicLimit {
    /// Counts one request; whether it is within `per_second`.
    pub(crate) fn admit(&self, venue: &str, ip: std::net::IpAddr, per_second: u32) -> bool {
        self.0.add((venue.to_string(), ip)) <= per_second
    }
}

/// A refusal: status, code and reason, and the audit entry that records it if any.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    reason: String,
    decision_id: Option<i64>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body =
            json!({"error": self.error, "reason": self.reason, "decision_id": self.decision_id});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(id) = self.decision_id
            && let Ok(v) = HeaderValue::from_str(&id.to_string())
        {
            r.headers_mut().insert(DECISION_HEADER, v);
        }
        r
    }
}

fn refuse(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        reason: reason.into(),
        decision_id: None,
    }
}

/// Any path outside the routes.
pub async fn not_found(uri: Uri) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "{} is not a keygate route; venue requests go to /venues/<venue>/<the venue's REST path>",
            uri.path()
        ),
    )
    .into_response()
}

fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::ClientDisabled { .. }
        | AuthError::WrongAddress { .. }
        | AuthError::OutOfScope { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    let missing = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send the keygate token as Authorization: Bearer kgt_<id>_<secret>",
        )
    };
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let text = value.to_str().map_err(|_| missing())?;
    text.strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(missing)
}

/// `/venues/{venue}/{*path}`, any method.
pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Ok(Path((venue, path))) = path else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the path does not decode to UTF-8",
        )
        .into_response();
    };
    let mut style = None;
    let (response, endpoint, outcome) = match run(
        &gw, peer, &venue, &path, &method, &uri, &headers, body, &mut style,
    )
    .await
    {
        Ok(done) => done,
        Err((refusal, endpoint)) => {
            let outcome = refusal.error;
            let response = match style {
                Some(s) => crate::native::venue_response(
                    s,
                    refusal.error,
                    &refusal.reason,
                    refusal.decision_id,
                ),
                None => refusal.into_response(),
            };
            (response, endpoint, outcome)
        }
    };
    // Only configured venues become label values: a caller cannot grow the metrics.
    let label = if gw.venues.contains_key(&venue) {
        venue.as_str()
    } else {
        "unknown"
    };
    metrics::request(label, endpoint, outcome);
    metrics::timing("total", started.elapsed().as_secs_f64());
    response
}

type Failed = (Refusal, &'static str);

#[allow(clippy::too_many_arguments)]
async fn run(
    gw: &Gateway,
    peer: SocketAddr,
    venue: &str,
    path: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    style: &mut Option<Style>,
) -> Result<(Response, &'static str, &'static str), Failed> {
    let unknown = "unknown";
    let ip = peer.ip().to_canonical();
    let setup = gw.venues.get(venue);
    let kind = setup.map(|s| s.adapter.kind);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // How the request authenticates: a bearer token wins; else the venue's own key header.
    let bearer_sent = headers.contains_key(axum::http::header::AUTHORIZATION);
    let native_key = match kind {
        Some(k) if !bearer_sent => header(match k {
            VenueKind::Binance => signing::BINANCE_KEY_HEADER,
            VenueKind::Okx => signing::OKX_KEY_HEADER,
        }),
        _ => None,
    };
    // Answered in the venue's own format: requests with the venue's key header, and those
    // without credentials where public market data goes unsigned (as client libraries send).
    let anonymous_ok = setup.is_some_and(|s| s.anonymous_public);
    if let Some(k) = kind
        && (native_key.is_some() || (!bearer_sent && anonymous_ok))
    {
        *style = Some(Style {
            kind: k,
            action: None,
        });
    }
    if gw.throttle.blocked(ip) {
        return Err((
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!(
                    "more than {MAX_AUTH_FAILURES_PER_MINUTE} requests from {ip} were refused for their token in the last minute; check the token, then retry in a minute"
                ),
            ),
            unknown,
        ));
    }
    // The credentials are read before anything else: a bearer token is parsed, a native key's
    // id is checked for shape.
    let mut presented = None;
    if let Some(key) = native_key {
        if !valid_key_id(key) {
            gw.throttle.failed(ip);
            return Err((
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "malformed",
                    "the API key is not a keygate native key (16 lower-case hex digits, as `keygate token issue --native` prints it)",
                ),
                unknown,
            ));
        }
    } else if bearer_sent || !anonymous_ok {
        let token_text = bearer(headers).map_err(|r| {
            gw.throttle.failed(ip);
            (r, unknown)
        })?;
        presented = Some(auth::parse_token(token_text).map_err(|e| {
            gw.throttle.failed(ip);
            (
                Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    error: e.code(),
                    reason: e.to_string(),
                    decision_id: None,
                },
                unknown,
            )
        })?);
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        (
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {MAX_BODY} bytes; nothing was forwarded"),
            ),
            unknown,
        )
    })?;
    let venue_path = format!("/{path}");
    let query = uri.query().unwrap_or("");
    let classified: Result<Classified, (StatusCode, &'static str, String)> = match setup {
        None => Err((
            StatusCode::NOT_FOUND,
            "unknown_venue",
            format!(
                "venue {venue:?} is not configured; the venues are: {}",
                venue_names(gw)
            ),
        )),
        Some(s) => s
            .adapter
            .classify(&Request {
                method: method.as_str(),
                path: &venue_path,
                query,
                body: &body,
            })
            .map_err(|e| match e {
                ClassifyError::UnknownEndpoint { .. } => {
                    (StatusCode::FORBIDDEN, "unknown_endpoint", e.to_string())
                }
                _ => (StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            }),
    };
    if let (Some(st), Ok(c)) = (style.as_mut(), &classified) {
        st.action = Some(c.action);
    }
    // Public market data, unsigned, where the venue's config allows it without credentials.
    let public = |c: &Classified| anonymous_ok && !c.signed && c.method == "GET";
    if presented.is_none() {
        let (Some(setup), Some(k)) = (setup, kind) else {
            return Err((
                refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no venue"),
                unknown,
            ));
        };
        let raw_path = raw_venue_path(uri.path()).unwrap_or(&venue_path);
        let req = Request {
            method: method.as_str(),
            path: raw_path,
            query,
            body: &body,
        };
        let claim = match native_key {
            None => Claim::None,
            Some(_) => signing::claim(k, &req, &header),
        };
        match claim {
            Claim::None | Claim::Unsigned { .. } => {
                if let Ok(c) = &classified
                    && public(c)
                {
                    let endpoint = c.endpoint;
                    if !gw.public_limit.admit(venue, ip, setup.anonymous_rate) {
                        return Err((
                            refuse(
                                StatusCode::TOO_MANY_REQUESTS,
                                "too_many_requests",
                                format!(
                                    "more than {} requests a second without credentials from this address to {venue}; slow down, or send credentials",
                                    setup.anonymous_rate
                                ),
                            ),
                            endpoint,
                        ));
                    }
                    let keys = Keys {
                        api_key: "",
                        secret: "",
                        passphrase: None,
                    };
                    return match forward(gw, setup, c, &keys).await {
                        Ok(r) => Ok((r, endpoint, "public")),
                        Err(reason) => Err((
                            refuse(StatusCode::BAD_GATEWAY, "venue_unreachable", reason),
                            endpoint,
                        )),
                    };
                }
                gw.throttle.failed(ip);
                let endpoint = classified.as_ref().map(|c| c.endpoint).unwrap_or(unknown);
                return Err((
                    match native_key {
                        Some(_) => refuse(
                            StatusCode::UNAUTHORIZED,
                            "unsigned",
                            "this request needs a signature: sign it with the keygate secret as the exchange documents (public market data goes unsigned only where the venue's anonymous_public is on)",
                        ),
                        None => bearer(headers).err().unwrap_or_else(|| {
                            refuse(
                                StatusCode::UNAUTHORIZED,
                                "unauthenticated",
                                "no credentials",
                            )
                        }),
                    },
                    endpoint,
                ));
            }
            Claim::Signed { key } => {
                let endpoint = classified.as_ref().map(|c| c.endpoint).unwrap_or(unknown);
                let opened = gw.native_keys.get(gw.credentials.master(), key).await.map_err(|e| {
                    tracing::error!(error = %e, venue, "a native key could not be read");
                    (
                        refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "keygate could not read the API key; nothing was forwarded. Retry later",
                        ),
                        endpoint,
                    )
                })?;
                let outcome = match &opened {
                    None => Err(auth::NativeFailure::NoKey),
                    Some(secret) => {
                        let keys = crate::keys(secret, key).map_err(|e| {
                            (
                                refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
                                endpoint,
                            )
                        })?;
                        let now = gw.store.clock().now();
                        match signing::verify(k, &req, &header, &keys, now) {
                            Ok(()) => {
                                let mac = signing::presented_mac(k, &req, &header);
                                match mac.map(|m| gw.used_signatures.first_use(key, &m, now)) {
                                    Some(Ok(())) => Ok(()),
                                    Some(Err(crate::native::Refused::Again)) => {
                                        Err(auth::NativeFailure::Stale(
                                            "this signature was used before: sign every request anew, with its own timestamp"
                                                .into(),
                                        ))
                                    }
                                    Some(Err(crate::native::Refused::Full)) | None => {
                                        return Err((
                                            refuse(
                                                StatusCode::TOO_MANY_REQUESTS,
                                                "too_many_signatures",
                                                "keygate remembers no more signatures in this minute; nothing was forwarded. Retry later",
                                            ),
                                            endpoint,
                                        ));
                                    }
                                }
                            }
                            Err(NativeError::BadSignature) => {
                                Err(auth::NativeFailure::BadSignature)
                            }
                            Err(NativeError::BadPassphrase) => {
                                Err(auth::NativeFailure::BadPassphrase)
                            }
                            Err(NativeError::Stale(d)) => Err(auth::NativeFailure::Stale(d)),
                            Err(e @ NativeError::Simulated) => {
                                gw.throttle.failed(ip);
                                return Err((
                                    refuse(StatusCode::UNAUTHORIZED, "simulated", e.to_string()),
                                    endpoint,
                                ));
                            }
                            Err(NativeError::Malformed { code, detail }) => {
                                gw.throttle.failed(ip);
                                let error = match code {
                                    Mandatory::Signature => "no_signature",
                                    Mandatory::Timestamp => "no_timestamp",
                                    Mandatory::TimestampFormat => "bad_timestamp",
                                    Mandatory::RecvWindow => "bad_recv_window",
                                    Mandatory::Passphrase => "no_passphrase",
                                };
                                return Err((
                                    refuse(StatusCode::UNAUTHORIZED, error, detail),
                                    endpoint,
                                ));
                            }
                        }
                    }
                };
                drop(opened);
                presented = Some(auth::Presented::native(key.to_string(), outcome));
            }
        }
    }
    let Some(presented) = presented else {
        return Err((
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no credentials were read",
            ),
            unknown,
        ));
    };
    let endpoint = classified.as_ref().map(|c| c.endpoint).unwrap_or(unknown);
    let header_id = match headers.get("x-keygate-request-id") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(t) if !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(t.to_string())
            }
            _ => {
                return Err((
                    refuse(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "x-keygate-request-id must be 1-64 printable ASCII characters without spaces",
                    ),
                    endpoint,
                ));
            }
        },
    };
    let hold = match hold_header(headers) {
        Ok(h) => h,
        Err(reason) => {
            return Err((
                refuse(StatusCode::BAD_REQUEST, "bad_request", reason),
                endpoint,
            ));
        }
    };
    let native_id = classified.as_ref().ok().and_then(|c| c.request_id.clone());
    let native = native_id.is_some();
    let request_id = native_id.or(header_id);
    let intent = match &classified {
        Ok(c) => Ok(Intent {
            client: String::new(),
            venue: venue.to_string(),
            action: c.action,
            asset: c.asset.clone(),
            amount: c.amount,
            destination: c.destination.clone(),
            source_ip: None,
            token_id: None,
        }),
        Err((_, _, reason)) => Err(reason.clone()),
    };
    let decide_started = Instant::now();
    let answer = gw
        .decider
        .gateway(
            GatewayRequest {
                token: presented,
                ip,
                venue: venue.to_string(),
                method: method.as_str().to_string(),
                path: venue_path.clone(),
                intent,
                request_id,
                hold,
                native_id: native,
            },
            gw.store.clock().now(),
        )
        .await;
    metrics::timing("decide", decide_started.elapsed().as_secs_f64());
    let fail = |r: Refusal| (r, endpoint);
    let decision = match answer {
        Err(e) => {
            tracing::error!(error = %e, venue, "a gateway decision could not be recorded");
            return Err(fail(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "keygate could not record the decision ({e}); nothing was forwarded. Retry later"
                ),
            )));
        }
        Ok(Answer::Refused { id, error }) => {
            gw.throttle.failed(ip);
            return Err(fail(Refusal {
                status: auth_status(&error),
                error: error.code(),
                reason: error.to_string(),
                decision_id: Some(id),
            }));
        }
        Ok(Answer::Rejected { id, code, reason }) => {
            let (status, error) = match (&classified, code.as_str()) {
                (Err((status, error, _)), _) => (*status, *error),
                (Ok(_), "hold_expired") => (StatusCode::FORBIDDEN, "hold_expired"),
                (Ok(_), "hold_pending") => (StatusCode::CONFLICT, "hold_pending"),
                (Ok(_), "hold_invalid") => (StatusCode::CONFLICT, "hold_invalid"),
                (Ok(_), _) => (StatusCode::CONFLICT, "replayed"),
            };
            return Err(fail(Refusal {
                status,
                error,
                reason,
                decision_id: Some(id),
            }));
        }
        Ok(Answer::Decided(d)) => d,
    };
    let reason = decision.verdict.reasons.join("; ");
    match decision.verdict.outcome {
        Outcome::Allow => {}
        Outcome::Hold if style.is_some() => {
            return Err(fail(Refusal {
                status: StatusCode::ACCEPTED,
                error: "held",
                reason: format!(
                    "{reason}; held for approval {id}: approvers run `keygate approve hold:{id}`; once a quorum has, send the same request again with the header x-keygate-hold: {id}",
                    id = decision.id
                ),
                decision_id: Some(decision.id),
            }));
        }
        Outcome::Hold => {
            let mut r = (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "status": "held", "approval_id": decision.id, "decision_id": decision.id,
                    "reason": reason,
                    "next": format!(
                        "approvers run `keygate approve hold:{id}`; once a quorum has, send the same request again with the header x-keygate-hold: {id}",
                        id = decision.id
                    ),
                })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&decision.id.to_string()) {
                r.headers_mut().insert(DECISION_HEADER, v);
            }
            return Ok((r, endpoint, "held"));
        }
        Outcome::Deny => {
            let frozen = decision.verdict.stage == keygate_core::decide::Stage::Freeze;
            return Err(fail(Refusal {
                status: StatusCode::FORBIDDEN,
                error: if frozen { "frozen" } else { "denied" },
                reason,
                decision_id: Some(decision.id),
            }));
        }
    }
    // Allowed and durable: sign and forward.
    let id = decision.id;
    let (Some(setup), Ok(mut classified)) = (setup, classified) else {
        return Err(fail(Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal",
            reason: "an allowed request had no venue or classification; nothing was forwarded"
                .into(),
            decision_id: Some(id),
        }));
    };
    setup.adapter.tag_withdrawal(
        &mut classified,
        &keygate_core::outflow::gateway_reference(id),
    );
    let secret = match gw.credentials.get(&setup.credential).await {
        Ok(s) => s,
        Err(reason) => {
            tracing::error!(venue, decision = id, %reason, "the venue credential cannot be opened");
            return Err(fail(Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "credential_unavailable",
                reason: format!(
                    "{reason}; the request was allowed and recorded but nothing was forwarded"
                ),
                decision_id: Some(id),
            }));
        }
    };
    let forwarded = match crate::keys(&secret, &setup.credential) {
        Ok(keys) => forward(gw, setup, &classified, &keys).await,
        Err(e) => Err(e),
    };
    drop(secret);
    match forwarded {
        Ok(mut r) => {
            if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
                r.headers_mut().insert(DECISION_HEADER, v);
            }
            Ok((r, endpoint, "allowed"))
        }
        Err(reason) => {
            tracing::warn!(venue, decision = id, %reason, "forwarding an allowed request failed");
            Err(fail(Refusal {
                status: StatusCode::BAD_GATEWAY,
                error: "venue_unreachable",
                reason,
                decision_id: Some(id),
            }))
        }
    }
}

fn venue_names(gw: &Gateway) -> String {
    let mut names: Vec<&str> = gw.venues.keys().map(String::as_str).collect();
    names.sort();
    names.join(", ")
}

/// Whether `key` has the shape of a native key's id (a token id: 16 lower-case hex digits).
fn valid_key_id(key: &str) -> bool {
    key.len() == 16 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The venue's REST path of a gateway URL path as sent (not percent-decoded): what a bot signs.
fn raw_venue_path(uri_path: &str) -> Option<&str> {
    let rest = uri_path.strip_prefix("/venues/")?;
    rest.find('/').map(|i| &rest[i..])
}

/// Signs with the venue credential (unless the endpoint is public) and sends; the venue's
/// answer comes back unchanged.
async fn forward(
    gw: &Gateway,
    setup: &crate::VenueSetup,
    c: &Classified,
    keys: &Keys<'_>,
) -> Result<Response, String> {
    let out = setup.adapter.sign(c, keys, gw.store.clock().now());
    let req = crate::venue_request(&gw.http, &setup.base_url, out, setup.timeout)?;
    let started = Instant::now();
    let resp = req.send().await.map_err(|e| {
        format!(
            "venue {} could not be reached ({}); the request was allowed and recorded but may not have arrived. Check the venue before retrying",
            setup.name,
            crate::send_error(&e)
        )
    })?;
    let status = resp.status();
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let bytes: Bytes = resp.bytes().await.map_err(|e| {
        format!(
            "venue {}'s answer could not be read ({}); the request may have been carried out. Check the venue before retrying",
            setup.name,
            crate::send_error(&e)
        )
    })?;
    metrics::timing("venue", started.elapsed().as_secs_f64());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type
        && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
    {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
    }
    Ok(r)
}

/// The `x-keygate-hold` header: the approved hold a request carries out, if any.
pub(crate) fn hold_header(headers: &HeaderMap) -> Result<Option<i64>, &'static str> {
    match headers.get("x-keygate-hold") {
        None => Ok(None),
        Some(v) => match v.to_str().ok().and_then(|t| t.trim().parse::<i64>().ok()) {
            Some(id) if id > 0 => Ok(Some(id)),
            _ => Err(
                "x-keygate-hold must be the number of an approved hold (the approval_id of a 202 answer)",
            ),
        },
    }
}
