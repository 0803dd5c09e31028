//! The venue route, as a sequence of typed steps: read credentials ([`authenticate::read`]) →
//! authenticate (a native signature, [`authenticate::venue`]) → classify
//! ([`classify`]) → decide ([`decide`], [`judge`]) → sign and forward ([`forward`]) → answer.
//!
//! Nothing that moves value (an order, a cancel, a withdrawal or transfer) is forwarded unless
//! the decider has committed its allow and limit debit first; a read is answered once its audit
//! entry is appended, before the batch commits (the decider's early answer).
//! Every refusal is a [`GatewayError`], answered once, in [`handle`]: as keygate's JSON
//! `{error, reason, decision_id}` ([`crate::refusal`]), or in the venue's own error format
//! ([`crate::venue_format`]) for requests that authenticate as the exchange documents.
//!
//! A bot may instead authenticate as the exchange documents, with a keygate native key
//! (`X-MBX-APIKEY` and `signature`, or `OK-ACCESS-*`): the signature and its time window are
//! checked against the key's sealed secret ([`crate::native`]), the decider checks the key as a
//! token, and every refusal is answered in the venue's own error format instead.
//!
//! Must not know: how the decider decides, or how a venue's requests are signed (the adapter's).

mod authenticate;
mod forward;
mod limits;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keygate_core::auth::Presented;
use keygate_core::{Intent, Outcome};
use keygate_store::{Answer, GatewayRequest};
use keygate_venues::{Classified, ClassifyError, Request};
use serde_json::json;

pub(crate) use authenticate::bearer_token;
pub use limits::{PublicLimit, Throttle};

use crate::refusal::{
    BadRequest, GatewayError, Internal, NotFound, Refusal, Throttled, Unavailable, UnknownVenue,
    from_rejection, with_decision,
};
use crate::venue_format::{Style, venue_response};
use crate::{Gateway, VenueSetup, metrics};
use authenticate::{Credentials, Presentation, Venue};

pub use crate::bounds::{MAX_AUTH_FAILURES_PER_MINUTE, MAX_BODY};

/// The endpoint label of a request not (yet) classified.
const UNKNOWN: &str = "unknown";

/// One venue request as it came in: read once, borrowed by every step.
struct Incoming<'a> {
    gw: &'a Gateway,
    /// The caller's address (IPv4-mapped addresses as IPv4).
    ip: IpAddr,
    venue: &'a str,
    /// The venue's set-up, if `venue` is configured.
    setup: Option<&'a VenueSetup>,
    /// The venue's REST path as the router decoded it, without its leading `/`.
    path: &'a str,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

/// What is known of a request so far, for its answer and its metrics.
struct Seen {
    /// How a refusal is answered: in the venue's format (Some) or keygate's own (None).
    style: Option<Style>,
    endpoint: &'static str,
}

/// A request answered without refusal, and its outcome for the metrics.
struct Done {
    response: Response,
    outcome: &'static str,
}

/// Any path outside the routes.
pub async fn not_found(uri: Uri) -> Response {
    GatewayError::NotFound(NotFound::Route(uri.path().to_string())).into_response()
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
        return GatewayError::BadRequest(BadRequest::PathNotUtf8).into_response();
    };
    let incoming = Incoming {
        gw: &gw,
        ip: peer.ip().to_canonical(),
        venue: &venue,
        setup: gw.venues.get(&venue),
        path: &path,
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let mut seen = Seen {
        style: None,
        endpoint: UNKNOWN,
    };
    let (response, outcome) = match run(&incoming, &mut seen, body).await {
        Ok(done) => (done.response, done.outcome),
        Err(refusal) => {
            if refusal.error.counts_against_caller() {
                gw.throttle.failed(incoming.ip);
            }
            let outcome = refusal.error.code();
            (answer(seen.style, refusal), outcome)
        }
    };
    // Only configured venues become label values: a caller cannot grow the metrics.
    let label = if incoming.setup.is_some() {
        venue.as_str()
    } else {
        UNKNOWN
    };
    metrics::request(label, seen.endpoint, outcome);
    metrics::timing("total", started.elapsed().as_secs_f64());
    response
}

/// A refusal answered in the venue's format (`style`) or keygate's own.
fn answer(style: Option<Style>, refusal: Refusal) -> Response {
    match style {
        Some(s) => venue_response(s, &refusal),
        None => refusal.into_response(),
    }
}

/// The steps, in order; `seen` learns the answer's style and the endpoint as they are known.
async fn run(inc: &Incoming<'_>, seen: &mut Seen, body: Body) -> Result<Done, Refusal> {
    let presentation = Presentation::of(inc.headers, inc.setup);
    seen.style = presentation.style();
    if inc.gw.throttle.blocked(inc.ip) {
        return Err(GatewayError::TooManyFailures(Throttled::Gateway(inc.ip)).into());
    }
    // The credentials are read before anything else: a bearer token is parsed, a native key's
    // id is checked for shape.
    let credentials = authenticate::read(presentation, inc.headers)?;
    let body = read_body(body).await?;
    let venue_path = format!("/{}", inc.path);
    let mut classified = classify(inc, &venue_path, &body);
    if let Ok(c) = &mut classified {
        attach_reference(inc, c).await;
    }
    if let Ok(c) = &classified {
        seen.endpoint = c.endpoint;
        if let Some(st) = seen.style.as_mut() {
            st.action = Some(c.action);
        }
    }
    let presented = match credentials {
        Credentials::Token(p) => p,
        Credentials::Venue(v) => {
            match authenticate::venue(inc, v, &venue_path, &body, &classified).await? {
                Venue::Presented(p) => p,
                Venue::Public(c) => {
                    let response = forward::public(inc, c).await?;
                    return Ok(Done {
                        response,
                        outcome: "public",
                    });
                }
            }
        }
    };
    let request = gateway_request(inc, presented, venue_path, &classified)?;
    match decide(inc, request, classified, seen.style.is_some()).await? {
        Judged::Held { id, reasons } => Ok(Done {
            response: held(id, &reasons),
            outcome: "held",
        }),
        Judged::Allowed { id, classified } => Ok(Done {
            response: forward::allowed(inc, id, classified).await?,
            outcome: "allowed",
        }),
    }
}

/// The body, up to [`MAX_BODY`] bytes.
async fn read_body(body: Body) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| GatewayError::BodyTooLarge)
}

/// What the venue's adapter makes of the request. An unclassified request is still decided
/// (and so recorded) before it is refused.
fn classify(inc: &Incoming<'_>, venue_path: &str, body: &[u8]) -> Result<Classified, GatewayError> {
    let Some(setup) = inc.setup else {
        return Err(GatewayError::UnknownVenue(UnknownVenue::NotConfigured {
            venue: inc.venue.to_string(),
            known: venue_names(inc.gw),
        }));
    };
    setup
        .adapter
        .classify(&Request {
            method: inc.method.as_str(),
            path: venue_path,
            query: inc.uri.query().unwrap_or(""),
            body,
        })
        .map_err(|e| match e {
            ClassifyError::UnknownEndpoint { .. } => GatewayError::UnknownEndpoint(e),
            _ => GatewayError::BadRequest(BadRequest::Classify(e)),
        })
}

/// Gives an order the market price of its instrument, read from the venue's book (cached); an
/// order without one is denied by the decider as unvalued.
async fn attach_reference(inc: &Incoming<'_>, c: &mut Classified) {
    let (Some(setup), Some(order)) = (inc.setup, c.order.as_mut()) else {
        return;
    };
    let now = inc.gw.store.clock().now();
    order.reference = inc
        .gw
        .references
        .current(inc.gw, setup, &order.symbol, now)
        .await;
}

/// What the decider is asked: the token, the request's ids and hold, its intent (or why it has
/// none), and the request as keygate would forward it (which a hold binds).
fn gateway_request(
    inc: &Incoming<'_>,
    token: Presented,
    venue_path: String,
    classified: &Result<Classified, GatewayError>,
) -> Result<GatewayRequest, GatewayError> {
    let header_id = request_id_header(inc.headers)?;
    let hold = hold_header(inc.headers).map_err(GatewayError::BadRequest)?;
    let native_id = classified.as_ref().ok().and_then(|c| c.request_id.clone());
    let native_id_sent = native_id.is_some();
    Ok(GatewayRequest {
        token,
        ip: inc.ip,
        venue: inc.venue.to_string(),
        method: inc.method.as_str().to_string(),
        path: venue_path,
        intent: intent(inc.venue, classified),
        request_id: native_id.or(header_id),
        hold,
        native_id: native_id_sent,
        request_text: classified.as_ref().ok().map(Classified::canonical),
    })
}

/// The intent of a classified request, or the reason it has none.
fn intent(venue: &str, classified: &Result<Classified, GatewayError>) -> Result<Intent, String> {
    match classified {
        Ok(c) => Ok(Intent {
            route: c.route.clone(),
            order: c.order.clone(),
            client: String::new(),
            venue: venue.to_string(),
            action: c.action,
            asset: c.asset.clone(),
            amount: c.amount,
            destination: c.destination.clone(),
            source_ip: None,
            token_id: None,
        }),
        Err(e) => Err(e.to_string()),
    }
}

/// The `x-keygate-request-id` header, if sent.
fn request_id_header(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(v) = headers.get("x-keygate-request-id") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(t) if !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(t.to_string()))
        }
        _ => Err(GatewayError::BadRequest(BadRequest::RequestId)),
    }
}

/// The `x-keygate-hold` header: the approved hold a request carries out, if any.
pub(crate) fn hold_header(headers: &HeaderMap) -> Result<Option<i64>, BadRequest> {
    match headers.get("x-keygate-hold") {
        None => Ok(None),
        Some(v) => match v.to_str().ok().and_then(|t| t.trim().parse::<i64>().ok()) {
            Some(id) if id > 0 => Ok(Some(id)),
            _ => Err(BadRequest::Hold),
        },
    }
}

/// What a decided request goes on to.
// Not boxed: a box would be one more allocation per request; this lives once, on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Judged {
    /// Allowed and durably recorded: sign and forward it.
    Allowed { id: i64, classified: Classified },
    /// Held for approval (a bearer request; a native one's hold is a refusal).
    Held { id: i64, reasons: String },
}

/// Has the decider authenticate, decide and record the request.
async fn decide(
    inc: &Incoming<'_>,
    request: GatewayRequest,
    classified: Result<Classified, GatewayError>,
    native: bool,
) -> Result<Judged, Refusal> {
    let started = Instant::now();
    let answer = inc
        .gw
        .decider
        .gateway(request, inc.gw.store.clock().now())
        .await;
    metrics::timing("decide", started.elapsed().as_secs_f64());
    let answer = answer.map_err(|e| {
        tracing::error!(error = %e, venue = inc.venue, "a gateway decision could not be recorded");
        GatewayError::Unavailable(Unavailable::NotRecorded(e))
    })?;
    judge(answer, classified, native)
}

/// What the decider's answer means for the request. `native`: its refusals are answered in the
/// venue's format, and so is a hold.
fn judge(
    answer: Answer,
    classified: Result<Classified, GatewayError>,
    native: bool,
) -> Result<Judged, Refusal> {
    let decision = match answer {
        Answer::Refused { id, error } => return Err(GatewayError::Token(error).with_decision(id)),
        Answer::Rejected { id, code, reason } => {
            let error = match classified {
                // Unclassified: refused for what its classification found.
                Err(e) => e,
                Ok(_) => from_rejection(code, reason),
            };
            return Err(error.with_decision(id));
        }
        Answer::Decided(d) => d,
    };
    let id = decision.id;
    match decision.verdict.outcome {
        Outcome::Allow => match classified {
            Ok(classified) => Ok(Judged::Allowed { id, classified }),
            Err(_) => Err(GatewayError::Internal(Internal::NotForwardable).with_decision(id)),
        },
        Outcome::Hold if native => Err(GatewayError::Held {
            reasons: decision.verdict.reasons.join("; "),
            id,
        }
        .with_decision(id)),
        Outcome::Hold => Ok(Judged::Held {
            id,
            reasons: decision.verdict.reasons.join("; "),
        }),
        Outcome::Deny => {
            let reasons = decision.verdict.reasons.join("; ");
            let frozen = decision.verdict.stage == keygate_core::decide::Stage::Freeze;
            let error = if frozen {
                GatewayError::Frozen(reasons)
            } else {
                GatewayError::Denied(reasons)
            };
            Err(error.with_decision(id))
        }
    }
}

/// The answer to a bearer request held for approval.
fn held(id: i64, reasons: &str) -> Response {
    let body = json!({
        "status": "held", "approval_id": id, "decision_id": id,
        "reason": reasons,
        "next": format!(
            "approvers run `keygate approve hold:{id}`; once a quorum has, send the same request again with the header x-keygate-hold: {id}"
        ),
    });
    with_decision(
        (StatusCode::ACCEPTED, axum::Json(body)).into_response(),
        Some(id),
    )
}

fn venue_names(gw: &Gateway) -> String {
    let mut names: Vec<&str> = gw.venues.keys().map(String::as_str).collect();
    names.sort();
    names.join(", ")
}

#[cfg(test)]
mod tests;
