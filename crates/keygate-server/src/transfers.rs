//! The transfer API for EVM venues: `POST /v1/transfers` and `GET /v1/transfers/{id}`.
//!
//! A transfer is authenticated with the same Bearer tokens as the gateway (scope: action
//! `transfer` on the venue), checked and priced with the node (asset listed, amount exact in the
//! token's decimals, gas and fees: a node that is down refuses here with 503, before any
//! decision or limit debit), then decided by the decider like every intent (its `client_ref` is
//! the request id: never reused per client and venue). Only an allow durably recorded is signed
//! (alloy's local signer, the vault's `evm-key`) and sent, each signed hash recorded before it
//! goes out. A retry with a used `client_ref` answers with the transfer it named. A held
//! transfer is carried out, once, when it is sent again with `x-keygate-hold` after a quorum of
//! approvals. Refusals are `{error, reason, decision_id}` like the gateway's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_chain::transfer::{PlanError, Transfers};
use keygate_chain::tx::Key;
use keygate_core::auth::{self, Presented};
use keygate_core::{Action, Intent, Outcome};
use keygate_store::decider::Rejection;
use keygate_store::{Answer, EvmTransferRow, GatewayRequest};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;

/// One EVM venue as the transfer API and the watcher reach it.
#[derive(Debug)]
pub struct ChainSetup {
    pub transfers: Transfers,
    /// What an unapproved outflow at this venue freezes (None: nothing, only the alarm).
    pub contain: Option<keygate_core::freeze::Scope>,
}

/// The body of `POST /v1/transfers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    venue: String,
    asset: String,
    to: String,
    /// A decimal string in token units; a JSON number is refused (it may have been a float).
    amount: String,
    client_ref: String,
}

/// `body` with `status`, and the decision id in its header when there is one.
fn answer(status: StatusCode, body: serde_json::Value, id: Option<i64>) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(id) = id
        && let Ok(v) = axum::http::HeaderValue::from_str(&id.to_string())
    {
        r.headers_mut().insert(crate::gateway::DECISION_HEADER, v);
    }
    r
}

fn refuse(status: StatusCode, error: &str, reason: impl Into<String>, id: Option<i64>) -> Response {
    let body = json!({"error": error, "reason": reason.into(), "decision_id": id});
    answer(status, body, id)
}

/// The caller's address and token, before anything else: an address with too many refused
/// tokens this minute is answered 429, and a missing or malformed token counts against it.
fn caller(
    gw: &Gateway,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
) -> Result<(std::net::IpAddr, Presented), Box<Response>> {
    let ip = peer.ip().to_canonical();
    if gw.throttle.blocked(ip) {
        return Err(Box::new(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            "too many requests from this address were refused for their token in the last minute; retry in a minute",
            None,
        )));
    }
    match presented(headers) {
        Ok(p) => Ok((ip, p)),
        Err(r) => {
            gw.throttle.failed(ip);
            Err(r)
        }
    }
}

fn presented(headers: &HeaderMap) -> Result<Presented, Box<Response>> {
    let text = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            Box::new(refuse(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send the keygate token as Authorization: Bearer kgt_<id>_<secret>",
                None,
            ))
        })?;
    auth::parse_token(text).map_err(|e| {
        Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            e.code(),
            e.to_string(),
            None,
        ))
    })
}

/// Checks a token for a transfer on `venue` without deciding anything: the same check the
/// decider makes (with no venue, the token alone: known, its proof, address, time, client),
/// and a refusal is audited like the decider's. The token's client.
async fn check(
    gw: &Gateway,
    p: &Presented,
    ip: std::net::IpAddr,
    venue: Option<&str>,
    request: (&str, &str),
) -> Result<String, Box<Response>> {
    let (token, client) = gw.store.token_with_client(&p.id).await.map_err(|e| {
        Box::new(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("keygate could not read the token ({e}); retry later"),
            None,
        ))
    })?;
    let now = gw.store.clock().now();
    let checked = match venue {
        Some(v) => auth::authenticate(
            p,
            token.as_ref(),
            client.as_ref(),
            ip,
            v,
            Action::Transfer,
            now,
        ),
        None => auth::check_token(p, token.as_ref(), client.as_ref(), ip, now).map(|_| ()),
    };
    let venue = venue.unwrap_or("-");
    match checked {
        Ok(()) => {}
        Err(e) => {
            gw.throttle.failed(ip);
            let entry = keygate_store::decider::auth_failure_entry(
                &e,
                ip,
                venue,
                Some(Action::Transfer),
                Some(request),
                gw.store.clock().now(),
            );
            let id = match gw.store.append_audit(vec![entry]).await {
                Ok(ids) => ids.first().copied(),
                Err(err) => {
                    tracing::error!(error = %err, "a refused token could not be audited");
                    None
                }
            };
            let status = match e {
                auth::AuthError::ClientDisabled { .. }
                | auth::AuthError::WrongAddress { .. }
                | auth::AuthError::OutOfScope { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            return Err(Box::new(refuse(status, e.code(), e.to_string(), id)));
        }
    }
    Ok(token.map(|t| t.client).unwrap_or_default())
}

/// A recorded transfer and its state on chain.
async fn report(gw: &Gateway, row: &EvmTransferRow, just_sent: bool) -> Response {
    let Some(setup) = gw.chains.get(&row.venue) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown_venue",
            format!("venue {} is no longer configured", row.venue),
            Some(row.decision_id),
        );
    };
    let txs = match gw.store.evm_txs(row.decision_id).await {
        Ok(h) => h,
        // Just sent: its state is pending, whatever can be read now.
        Err(_) if just_sent => vec![],
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("keygate could not read the transfer ({e}); retry later"),
                Some(row.decision_id),
            );
        }
    };
    let unread = keygate_chain::transfer::Status::Pending {
        tx_hash: row.tx_hash.clone(),
        block: None,
        confirmations: 0,
        note: Some("sent; its state could not be read just now: GET it later".into()),
    };
    // Just sent, and its transactions could not be read: not asked about at all.
    let status = if just_sent && txs.is_empty() {
        Ok(unread)
    } else {
        setup
            .transfers
            .status(
                &gw.store,
                &row.into(),
                &keygate_chain::adapter::tx_records(&txs),
            )
            .await
    };
    let state = match status {
        Ok(s) => s,
        // Just sent: say so, whatever the node answers now (a 5xx would read as "not done").
        Err(e) if just_sent => keygate_chain::transfer::Status::Pending {
            tx_hash: row.tx_hash.clone(),
            block: None,
            confirmations: 0,
            note: Some(format!(
                "sent; its state could not be read just now ({e}): GET it later"
            )),
        },
        Err(e @ keygate_chain::transfer::StatusError::Node(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_unavailable",
                format!("{e}; the transfer's state cannot be read now, retry later"),
                Some(row.decision_id),
            );
        }
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; retry later"),
                Some(row.decision_id),
            );
        }
    };
    let mut body = json!({
        "id": row.decision_id, "decision_id": row.decision_id, "venue": row.venue,
        "asset": row.asset, "amount": row.amount, "to": row.destination, "from": row.from_address,
        "client_ref": row.client_ref, "nonce": row.nonce,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(s))) =
        (body.as_object_mut(), serde_json::to_value(&state))
    {
        obj.extend(s);
    }
    answer(StatusCode::OK, body, Some(row.decision_id))
}

/// How long a retry waits for the first request of its `client_ref` (or hold) to record its
/// transfer.
const FIRST_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An answer found in the store (`Ok(None)`: nothing there), or the store could not be read:
/// never "nothing there", which would tell a client to send the transfer anew.
type Found = Result<Option<Response>, Box<Response>>;

fn unreadable(e: impl std::fmt::Display) -> Box<Response> {
    Box::new(refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!(
            "keygate could not read what this request did before ({e}); retry it as it is, with the same client_ref"
        ),
        None,
    ))
}

/// The transfer a client's `client_ref` named, answered as on its first request. A retry that
/// races the first request (allowed, not yet recorded as a transfer) waits for it a little.
async fn existing(gw: &Gateway, client: &str, venue: &str, client_ref: &str) -> Found {
    let Some(id) = gw
        .store
        .request_decision(client, venue, client_ref)
        .await
        .map_err(unreadable)?
    else {
        return Ok(None);
    };
    let outcome = gw
        .store
        .audit_entry(id)
        .await
        .map_err(unreadable)?
        .and_then(|e| {
            e.data()
                .get("outcome")
                .and_then(|o| o.as_str())
                .map(str::to_string)
        });
    let allowed = outcome.as_deref() == Some("allow");
    // A held transfer carried out later: its transfer is the carrying-out decision's.
    if let Some(r) = carried_out(gw, client, id, None).await? {
        return Ok(Some(r));
    }
    let deadline = tokio::time::Instant::now() + FIRST_REQUEST_WAIT;
    loop {
        if let Some(row) = gw.store.evm_transfer(id).await.map_err(unreadable)? {
            return Ok(Some(report(gw, &row, false).await));
        }
        if !allowed || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(Some(if outcome.as_deref() == Some("hold") {
        refuse(
            StatusCode::CONFLICT,
            "held",
            format!(
                "client_ref {client_ref:?} was held for approval as decision {id}: approvers run `keygate approve hold:{id}`; once a quorum has, send it again with the header x-keygate-hold: {id}"
            ),
            Some(id),
        )
    } else if allowed {
        refuse(
            StatusCode::CONFLICT,
            "in_progress",
            format!(
                "client_ref {client_ref:?} was allowed as decision {id}, whose transfer the first request is still signing; GET /v1/transfers/{id} in a moment, and do not send it with a new client_ref"
            ),
            Some(id),
        )
    } else {
        refuse(
            StatusCode::CONFLICT,
            "replayed",
            format!(
                "client_ref {client_ref:?} was used by decision {id}, which signed no transfer (it was denied or refused); use a new client_ref"
            ),
            Some(id),
        )
    }))
}

/// The transfer that carried out hold `hold` of `client`, if one did. With `body`, a transfer
/// of another payment is no answer to it: 409.
async fn carried_out(gw: &Gateway, client: &str, hold: i64, body: Option<&Body>) -> Found {
    let Some(by) = gw.store.hold_executed_by(hold).await.map_err(unreadable)? else {
        return Ok(None);
    };
    let Some(row) = gw.store.evm_transfer(by).await.map_err(unreadable)? else {
        return Ok(None);
    };
    if row.client != client {
        return Ok(None);
    }
    if let Some(b) = body {
        let to = keygate_chain::parse_address(&b.to).map(|a| keygate_chain::address_text(&a));
        let amount = b
            .amount
            .trim()
            .parse::<Decimal>()
            .ok()
            .map(|a| a.normalize().to_string());
        let same = row.venue == b.venue
            && row.asset == b.asset
            && row.client_ref == b.client_ref
            && to.as_deref() == Some(row.destination.as_str())
            && amount.as_deref() == Some(row.amount.as_str());
        if !same {
            return Ok(Some(refuse(
                StatusCode::CONFLICT,
                "hold_invalid",
                format!(
                    "hold {hold} was carried out by transfer {by}, of another payment; send exactly the transfer that was held"
                ),
                Some(by),
            )));
        }
    }
    Ok(Some(report(gw, &row, false).await))
}

/// The hold's transfer once the request carrying it out first has recorded it (a second
/// request carrying out the same hold at once waits for it a little).
async fn carried_out_soon(gw: &Gateway, client: &str, hold: i64, body: &Body) -> Found {
    let deadline = tokio::time::Instant::now() + FIRST_REQUEST_WAIT;
    loop {
        if let Some(r) = carried_out(gw, client, hold, Some(body)).await? {
            return Ok(Some(r));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A transfer that may be pending, answered from what the request has in hand (its body, its
/// plan, the transaction `(hash, nonce)`), without asking the store or the node.
fn in_hand(
    status: StatusCode,
    id: i64,
    b: &Body,
    planned: &keygate_chain::transfer::Planned,
    (hash, nonce): (&str, u64),
    note: String,
) -> Response {
    let body = json!({
        "id": id, "decision_id": id, "venue": b.venue, "asset": b.asset,
        "amount": planned.amount.normalize().to_string(),
        "to": keygate_chain::address_text(&planned.to), "client_ref": b.client_ref,
        "nonce": nonce, "status": "pending", "tx_hash": hash, "confirmations": 0, "note": note,
    });
    answer(status, body, Some(id))
}

/// `POST /v1/transfers`.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ip, p) = match caller(&gw, peer, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let b: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "the body must be JSON {{venue, asset, to, amount (a decimal string), client_ref}}: {e}"
                ),
                None,
            );
        }
    };
    let bad = |reason: String| refuse(StatusCode::BAD_REQUEST, "bad_request", reason, None);
    if b.client_ref.is_empty()
        || b.client_ref.len() > 64
        || !b.client_ref.bytes().all(|c| c.is_ascii_graphic())
    {
        return bad("client_ref must be 1-64 printable ASCII characters without spaces".into());
    }
    let Some(setup) = gw.chains.get(&b.venue) else {
        let mut names: Vec<&str> = gw.chains.keys().map(String::as_str).collect();
        names.sort();
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown_venue",
            format!(
                "venue {:?} is not an EVM venue of this keygate; the EVM venues are: {}",
                b.venue,
                names.join(", ")
            ),
            None,
        );
    };
    let Some(to) = keygate_chain::parse_address(&b.to) else {
        return bad(format!(
            "to {:?} is not an address (0x and 40 hex digits)",
            b.to
        ));
    };
    let amount: Decimal = match b.amount.trim().parse() {
        Ok(a) => a,
        Err(_) => return bad(format!("amount {:?} is not a decimal", b.amount)),
    };
    // A retry of a transfer already made answers with it, before the node is asked anything.
    let client = match check(&gw, &p, ip, Some(&b.venue), ("POST", "/v1/transfers")).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let hold = match crate::gateway::hold_header(&headers) {
        Ok(h) => h,
        Err(reason) => return bad(reason.into()),
    };
    // A retry answers with the transfer already made: by its client_ref, or, carrying out a
    // hold, by the hold (the held request's client_ref is the one it is sent again with).
    let made = match hold {
        Some(hid) => carried_out(&gw, &client, hid, Some(&b)).await,
        None => existing(&gw, &client, &b.venue, &b.client_ref).await,
    };
    match made {
        Ok(Some(r)) => return r,
        Ok(None) => {}
        Err(r) => return *r,
    }
    let credential = &setup.transfers.venue.credential;
    let key = match gw.credentials.get(credential).await.and_then(|s| {
        s.parts()
            .first()
            .and_then(|k| Key::from_hex(k.expose()).ok())
            .ok_or_else(|| format!("credential {credential} is not an evm-key"))
    }) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, venue = %b.venue, "a transfer's key could not be opened");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "keygate could not open the venue's key; nothing was decided or signed",
                None,
            );
        }
    };
    let planned = match setup
        .transfers
        .plan(key.address(), &b.asset, to, amount)
        .await
    {
        Ok(p) => p,
        Err(e @ (PlanError::UnknownAsset { .. } | PlanError::Amount(_))) => {
            return bad(e.to_string());
        }
        Err(e @ (PlanError::NodeDown(_) | PlanError::WrongChain(_))) => {
            tracing::warn!(venue = %b.venue, error = %e, "a transfer was refused: the node is not usable");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_unavailable",
                e.to_string(),
                None,
            );
        }
        Err(e @ PlanError::Refused(_)) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "node_refused",
                format!("{e}; nothing was decided or signed"),
                None,
            );
        }
    };
    // A dropped transaction of keygate's that cannot be sent again would hold this transfer
    // up behind it: refused before it costs a decision.
    if let Err(e) = setup
        .transfers
        .nonces
        .unblocked(
            &setup.transfers.rpc,
            &gw.store,
            key.address(),
            setup.transfers.venue.timeout,
        )
        .await
    {
        let code = match &e {
            keygate_chain::nonce::SendError::Blocked { .. } => "nonce_blocked",
            keygate_chain::nonce::SendError::Rpc(r) if r.unreachable() => "node_unavailable",
            _ => "unavailable",
        };
        tracing::warn!(venue = %b.venue, error = %e, "a transfer was refused before its decision");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            format!("{e}; nothing was decided or signed"),
            None,
        );
    }
    let intent = Intent {
        client: String::new(),
        venue: b.venue.clone(),
        action: Action::Transfer,
        asset: Some(b.asset.clone()),
        amount: Some(amount),
        destination: Some(keygate_chain::address_text(&to)),
        source_ip: None,
        token_id: None,
    };
    let answer = gw
        .decider
        .gateway(
            GatewayRequest {
                token: p,
                ip,
                venue: b.venue.clone(),
                method: "POST".into(),
                path: "/v1/transfers".into(),
                intent: Ok(intent),
                request_id: Some(b.client_ref.clone()),
                hold,
                native_id: false,
            },
            gw.store.clock().now(),
        )
        .await;
    let decision = match answer {
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "keygate could not record the decision ({e}); nothing was signed. Retry later"
                ),
                None,
            );
        }
        Ok(Answer::Refused { id, error }) => {
            gw.throttle.failed(ip);
            return refuse(
                StatusCode::UNAUTHORIZED,
                error.code(),
                error.to_string(),
                Some(id),
            );
        }
        Ok(Answer::Rejected { id, code, reason }) => {
            // Raced with another request of the same client_ref (or hold): answer with that one.
            let first = match hold {
                Some(hid) if code == Rejection::HoldInvalid => {
                    carried_out_soon(&gw, &client, hid, &b).await
                }
                None if code == Rejection::Replayed => {
                    existing(&gw, &client, &b.venue, &b.client_ref).await
                }
                _ => Ok(None),
            };
            match first {
                Ok(Some(r)) => return r,
                Ok(None) => {}
                Err(r) => return *r,
            }
            let status = if code == Rejection::HoldExpired {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::CONFLICT
            };
            return refuse(status, code.as_str(), reason, Some(id));
        }
        Ok(Answer::Decided(d)) => d,
    };
    let reason = decision.verdict.reasons.join("; ");
    match decision.verdict.outcome {
        Outcome::Allow => {}
        Outcome::Hold => {
            return (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "status": "held", "approval_id": decision.id, "decision_id": decision.id,
                    "reason": reason,
                    "next": format!("approvers run `keygate approve hold:{id}`; once a quorum has, send the same transfer again (same body and client_ref) with the header x-keygate-hold: {id}", id = decision.id),
                })),
            )
                .into_response();
        }
        Outcome::Deny => {
            let frozen = decision.verdict.stage == keygate_core::decide::Stage::Freeze;
            return refuse(
                StatusCode::FORBIDDEN,
                if frozen { "frozen" } else { "denied" },
                reason,
                Some(decision.id),
            );
        }
    }
    let sent = setup
        .transfers
        .execute(
            &gw.store,
            &key,
            decision.id,
            &client,
            &b.client_ref,
            &planned,
        )
        .await;
    drop(key);
    match sent {
        Ok(signed) => match gw.store.evm_transfer(decision.id).await {
            Ok(Some(row)) => report(&gw, &row, true).await,
            // Sent: said so from what is in hand, whatever the store answers now.
            _ => in_hand(
                StatusCode::OK,
                decision.id,
                &b,
                &planned,
                (&keygate_chain::hash_text(&signed.hash), signed.nonce),
                format!(
                    "sent; its record could not be read just now: GET /v1/transfers/{} later",
                    decision.id
                ),
            ),
        },
        Err(e) if e.maybe_out() => {
            tracing::error!(venue = %b.venue, decision_id = decision.id, error = %e, "an allowed transfer's send got no clear answer; it may be pending");
            in_hand(
                StatusCode::ACCEPTED,
                decision.id,
                &b,
                &planned,
                e.maybe_pending().unwrap_or_default(),
                format!(
                    "{e}. Do not send this transfer again: GET /v1/transfers/{} until it is confirmed or failed (failed is final, and means nothing was paid)",
                    decision.id
                ),
            )
        }
        Err(e) => {
            tracing::error!(venue = %b.venue, decision_id = decision.id, error = %e, "an allowed transfer was not sent");
            let (status, code) = match &e {
                keygate_chain::nonce::SendError::Rpc(r) if r.unreachable() => {
                    (StatusCode::SERVICE_UNAVAILABLE, "node_unavailable")
                }
                keygate_chain::nonce::SendError::Blocked { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "nonce_blocked")
                }
                _ => (StatusCode::BAD_GATEWAY, "not_sent"),
            };
            refuse(
                status,
                code,
                format!(
                    "the transfer was allowed but not sent: {e}. Nothing is pending; its limit debit stays (limits only over-count); send a new transfer with a new client_ref"
                ),
                Some(decision.id),
            )
        }
    }
}

/// `GET /v1/transfers/{id}`.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (ip, p) = match caller(&gw, peer, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(Path(id)) = id else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the transfer id is the decision id, a number",
            None,
        );
    };
    let not_found = || {
        refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no transfer {id} of this client"),
            None,
        )
    };
    // The token first: which ids exist is not told to a caller without a good one.
    let path = format!("/v1/transfers/{id}");
    if let Err(r) = check(&gw, &p, ip, None, ("GET", &path)).await {
        return *r;
    }
    let row = match gw.store.evm_transfer(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("keygate could not read the transfer ({e}); retry later"),
                None,
            );
        }
    };
    // Out of the token's scope is answered as not found: which ids exist is not told.
    match check(&gw, &p, ip, Some(&row.venue), ("GET", &path)).await {
        Ok(client) if client == row.client => report(&gw, &row, false).await,
        Err(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => *r,
        Ok(_) | Err(_) => not_found(),
    }
}

/// The treasury address of an EVM venue: its credential's key's address.
pub async fn treasury(gw: &Gateway, setup: &ChainSetup) -> Result<keygate_chain::Address, String> {
    let credential = &setup.transfers.venue.credential;
    let secret = gw.credentials.get(credential).await?;
    let key = secret
        .parts()
        .first()
        .and_then(|k| Key::from_hex(k.expose()).ok())
        .ok_or_else(|| format!("credential {credential} is not an evm-key"))?;
    Ok(key.address())
}

/// Starts one chain watcher per EVM venue, on its treasury address.
pub async fn spawn_watchers(gw: Arc<Gateway>) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut out = vec![];
    for setup in gw.chains.values() {
        let address = treasury(&gw, setup).await?;
        let w = keygate_chain::watcher::Watcher::new(
            setup.transfers.venue.clone(),
            gw.store.clone(),
            vec![address],
            setup.contain.clone(),
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(venue = %setup.transfers.venue.name, treasury = %keygate_chain::address_text(&address), "chain watcher started");
        out.push(tokio::spawn(w.run()));
    }
    Ok(out)
}
