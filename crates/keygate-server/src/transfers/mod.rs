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
//! approvals. Refusals are [`GatewayError`]s, answered `{error, reason, decision_id}` like the
//! gateway's.
//!
//! `create` is a sequence of typed steps: the caller ([`caller`]) → the order ([`order`]) →
//! the token's check ([`check`]) → a retry's answer ([`retry`]) → the key, the plan and the
//! nonce ([`open_key`], [`plan`], [`unblocked`]) → the decision ([`decide`]) → the send
//! ([`send`]).
//!
//! Must not know: how the decider decides, or how a transaction is built and signed (the chain
//! crate's).

mod report;
pub mod rescue;
mod retry;

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_chain::nonce::SendError;
use keygate_chain::transfer::{PlanError, Planned, Transfers};
use keygate_chain::tx::Key;
use keygate_core::auth::{self, Presented};
use keygate_core::{Action, Intent, Outcome};
use keygate_store::{Answer, GatewayRequest};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::gateway::{bearer_token, hold_header};
use crate::refusal::{
    BadRequest, GatewayError, Internal, NodeUnavailable, NotFound, Refusal, Throttled, Unavailable,
    UnknownVenue, Unsent, from_rejection,
};
use report::{in_hand, report};
use retry::{carried_out, carried_out_soon, existing};

/// One EVM venue as the transfer API and the watcher reach it.
#[derive(Debug)]
pub struct ChainSetup {
    pub transfers: Transfers,
    /// What an unapproved outflow at this venue freezes (None: nothing, only the alarm).
    pub contain: Option<keygate_core::freeze::Scope>,
    /// Where a rescue sweeps the treasury when its key is used outside keygate (None: no
    /// rescue at this venue).
    pub rescue: Option<keygate_chain::rescue::RescueSetup>,
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

/// A transfer asked for, read and checked against the venue's set-up (not yet the node).
struct Order<'g> {
    body: Body,
    setup: &'g ChainSetup,
    to: keygate_chain::Address,
    amount: Decimal,
}

/// Counts a refused or missing token against the caller's address.
fn note(gw: &Gateway, ip: IpAddr, error: &GatewayError) {
    if error.counts_against_caller() {
        gw.throttle.failed(ip);
    }
}

/// The caller's token, before anything else: an address with too many refused tokens this
/// minute is answered 429.
fn caller(gw: &Gateway, ip: IpAddr, headers: &HeaderMap) -> Result<Presented, GatewayError> {
    if gw.throttle.blocked(ip) {
        return Err(GatewayError::TooManyFailures(Throttled::Transfers));
    }
    bearer_token(headers)
}

/// Checks a token for a transfer on `venue` without deciding anything: the same check the
/// decider makes (with no venue, the token alone: known, its proof, address, time, client),
/// and a refusal is audited like the decider's. The token's client.
async fn check(
    gw: &Gateway,
    p: &Presented,
    ip: IpAddr,
    venue: Option<&str>,
    request: (&str, &str),
) -> Result<String, Refusal> {
    let (token, client) = gw
        .store
        .token_with_client(&p.id)
        .await
        .map_err(|e| GatewayError::Unavailable(Unavailable::Token(e)))?;
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
    if let Err(e) = checked {
        let entry = keygate_store::decider::auth_failure_entry(
            &e,
            ip,
            venue.unwrap_or("-"),
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
        return Err(Refusal {
            error: GatewayError::Token(e),
            decision_id: id,
        });
    }
    Ok(token.map(|t| t.client).unwrap_or_default())
}

/// `POST /v1/transfers`.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(crate::Peer(peer)): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = peer.ip().to_canonical();
    match transfer(&gw, ip, &headers, &body).await {
        Ok(r) => r,
        Err(refusal) => {
            note(&gw, ip, &refusal.error);
            refusal.into_response()
        }
    }
}

/// The steps of `POST /v1/transfers`, in order.
async fn transfer(
    gw: &Gateway,
    ip: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let p = caller(gw, ip, headers)?;
    let order = order(gw, body)?;
    let b = &order.body;
    // A retry of a transfer already made answers with it, before the node is asked anything.
    let client = check(gw, &p, ip, Some(&b.venue), ("POST", "/v1/transfers")).await?;
    let hold = hold_header(headers).map_err(GatewayError::BadRequest)?;
    // A retry answers with the transfer already made: by its client_ref, or, carrying out a
    // hold, by the hold (the held request's client_ref is the one it is sent again with).
    let made = match hold {
        Some(hid) => carried_out(gw, &client, hid, Some(b)).await?,
        None => existing(gw, &client, &b.venue, &b.client_ref).await?,
    };
    if let Some(r) = made {
        return Ok(r);
    }
    let key = open_key(order.setup, gw).await?;
    let planned = plan(&order, &key).await?;
    unblocked(gw, order.setup, &key).await?;
    let answer = decide(gw, ip, p, &order, hold).await?;
    let id = match decided(gw, answer, &client, &order, hold).await? {
        Decided::Allowed(id) => id,
        Decided::Answered(r) => return Ok(r),
    };
    send(gw, &order, key, id, &client, &planned).await
}

/// The body of a transfer, checked: its `client_ref`, its venue (an EVM venue of this
/// keygate), address and amount.
fn order<'g>(gw: &'g Gateway, body: &[u8]) -> Result<Order<'g>, GatewayError> {
    let bad = GatewayError::BadRequest;
    let b: Body = serde_json::from_slice(body).map_err(|e| bad(BadRequest::TransferBody(e)))?;
    if b.client_ref.is_empty()
        || b.client_ref.len() > 64
        || !b.client_ref.bytes().all(|c| c.is_ascii_graphic())
    {
        return Err(bad(BadRequest::ClientRef));
    }
    let Some(setup) = gw.chains.get(&b.venue) else {
        let mut names: Vec<&str> = gw.chains.keys().map(String::as_str).collect();
        names.sort();
        return Err(GatewayError::UnknownVenue(UnknownVenue::NotEvm {
            venue: b.venue,
            known: names.join(", "),
        }));
    };
    let Some(to) = keygate_chain::parse_address(&b.to) else {
        return Err(bad(BadRequest::Address(b.to)));
    };
    let Ok(amount) = b.amount.trim().parse::<Decimal>() else {
        return Err(bad(BadRequest::Amount(b.amount)));
    };
    Ok(Order {
        body: b,
        setup,
        to,
        amount,
    })
}

/// The venue's signing key (its `evm-key` credential), opened.
async fn open_key(setup: &ChainSetup, gw: &Gateway) -> Result<Key, GatewayError> {
    let credential = &setup.transfers.venue.credential;
    gw.credentials
        .get(credential)
        .await
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.parts()
                .first()
                .and_then(|k| Key::from_hex(k.expose()).ok())
                .ok_or_else(|| format!("credential {credential} is not an evm-key"))
        })
        .map_err(|e| {
            tracing::error!(error = %e, venue = %setup.transfers.venue.name, "a transfer's key could not be opened");
            GatewayError::Internal(Internal::TransferKey)
        })
}

/// The transfer priced and checked with the node.
async fn plan(order: &Order<'_>, key: &Key) -> Result<Planned, GatewayError> {
    let b = &order.body;
    order
        .setup
        .transfers
        .plan(key.address(), &b.asset, order.to, order.amount)
        .await
        .map_err(|e| match e {
            PlanError::UnknownAsset { .. } | PlanError::Amount(_) => {
                GatewayError::BadRequest(BadRequest::Plan(e))
            }
            PlanError::NodeDown(_) | PlanError::WrongChain(_) => {
                tracing::warn!(venue = %b.venue, error = %e, "a transfer was refused: the node is not usable");
                GatewayError::NodeUnavailable(NodeUnavailable::Plan(e))
            }
            PlanError::Refused(_) => GatewayError::NodeRefused(e),
        })
}

/// A dropped transaction of keygate's that cannot be sent again would hold this transfer up
/// behind it: refused before it costs a decision.
async fn unblocked(gw: &Gateway, setup: &ChainSetup, key: &Key) -> Result<(), GatewayError> {
    let t = &setup.transfers;
    t.nonces
        .unblocked(&t.rpc, &gw.store, key.address(), t.venue.timeout)
        .await
        .map_err(|e| {
            tracing::warn!(venue = %t.venue.name, error = %e, "a transfer was refused before its decision");
            before_decision(e)
        })
}

/// A nonce check's failure before the decision, as a refusal.
fn before_decision(e: SendError) -> GatewayError {
    let blocked = matches!(e, SendError::Blocked { .. });
    let unreachable = matches!(&e, SendError::Rpc(r) if r.unreachable());
    if blocked {
        GatewayError::NonceBlocked(Unsent::BeforeDecision(e))
    } else if unreachable {
        GatewayError::NodeUnavailable(NodeUnavailable::Send(Unsent::BeforeDecision(e)))
    } else {
        GatewayError::Unavailable(Unavailable::Nonce(e))
    }
}

/// An allowed transfer's send failure (one that surely sent nothing), as a refusal.
fn not_sent(e: SendError) -> GatewayError {
    let blocked = matches!(e, SendError::Blocked { .. });
    let unreachable = matches!(&e, SendError::Rpc(r) if r.unreachable());
    if unreachable {
        GatewayError::NodeUnavailable(NodeUnavailable::Send(Unsent::Allowed(e)))
    } else if blocked {
        GatewayError::NonceBlocked(Unsent::Allowed(e))
    } else {
        GatewayError::NotSent(Unsent::Allowed(e))
    }
}

/// Has the decider authenticate, decide and record the transfer (its `client_ref` the
/// request id).
async fn decide(
    gw: &Gateway,
    ip: IpAddr,
    token: Presented,
    order: &Order<'_>,
    hold: Option<i64>,
) -> Result<Answer, GatewayError> {
    let b = &order.body;
    let intent = Intent {
        route: Default::default(),
        order: None,
        client: String::new(),
        venue: b.venue.clone(),
        action: Action::Transfer,
        asset: Some(b.asset.clone()),
        amount: Some(order.amount),
        destination: Some(keygate_chain::address_text(&order.to)),
        source_ip: None,
        token_id: None,
    };
    let request = GatewayRequest {
        token,
        ip,
        venue: b.venue.clone(),
        method: "POST".into(),
        path: "/v1/transfers".into(),
        intent: Ok(intent),
        request_id: Some(b.client_ref.clone()),
        hold,
        native_id: false,
        request_text: Some(request_text(order)),
    };
    gw.decider
        .gateway(request, gw.store.clock().now())
        .await
        .map_err(|e| GatewayError::Unavailable(Unavailable::TransferNotRecorded(e)))
}

/// The transfer as keygate will carry it out, which a hold binds: the request line and a
/// compact JSON body of its fields as read (the address and amount as parsed), in a fixed order.
fn request_text(order: &Order<'_>) -> String {
    let b = &order.body;
    let body = json!({
        "venue": b.venue,
        "asset": b.asset,
        "to": keygate_chain::address_text(&order.to),
        "amount": order.amount.to_string(),
        "client_ref": b.client_ref,
    });
    format!("POST /v1/transfers\n{body}")
}

/// What a decided transfer goes on to.
enum Decided {
    /// Allowed and durably recorded: sign and send it.
    Allowed(i64),
    /// Answered without a send: held, or a retry that raced the first request.
    Answered(Response),
}

/// What the decider's answer means for the transfer.
async fn decided(
    gw: &Gateway,
    answer: Answer,
    client: &str,
    order: &Order<'_>,
    hold: Option<i64>,
) -> Result<Decided, Refusal> {
    let b = &order.body;
    let decision = match answer {
        Answer::Refused { id, error } => {
            return Err(GatewayError::TokenAfterCheck(error).with_decision(id));
        }
        Answer::Rejected { id, code, reason } => {
            let error = from_rejection(code, reason);
            // Raced with another request of the same client_ref (or hold): answer with that one.
            let first = match (hold, &error) {
                (Some(hid), GatewayError::HoldInvalid(_)) => {
                    carried_out_soon(gw, client, hid, b).await?
                }
                (None, GatewayError::Replayed(_)) => {
                    existing(gw, client, &b.venue, &b.client_ref).await?
                }
                _ => None,
            };
            return match first {
                Some(r) => Ok(Decided::Answered(r)),
                None => Err(error.with_decision(id)),
            };
        }
        Answer::Decided(d) => d,
    };
    let id = decision.id;
    match decision.verdict.outcome {
        Outcome::Allow => Ok(Decided::Allowed(id)),
        Outcome::Hold => Ok(Decided::Answered(held(
            id,
            &decision.verdict.reasons.join("; "),
        ))),
        Outcome::Deny => {
            let reasons = decision.verdict.reasons.join("; ");
            let error = if decision.verdict.stage == keygate_core::decide::Stage::Freeze {
                GatewayError::Frozen(reasons)
            } else {
                GatewayError::Denied(reasons)
            };
            Err(error.with_decision(id))
        }
    }
}

/// The answer to a transfer held for approval.
fn held(id: i64, reasons: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "status": "held", "approval_id": id, "decision_id": id,
            "reason": reasons,
            "next": format!("approvers run `keygate approve hold:{id}`; once a quorum has, send the same transfer again (same body and client_ref) with the header x-keygate-hold: {id}"),
        })),
    )
        .into_response()
}

/// Signs and sends the allowed transfer `id`; its answer.
async fn send(
    gw: &Gateway,
    order: &Order<'_>,
    key: Key,
    id: i64,
    client: &str,
    planned: &Planned,
) -> Result<Response, Refusal> {
    let b = &order.body;
    let sent = order
        .setup
        .transfers
        .execute(&gw.store, &key, id, client, &b.client_ref, planned)
        .await;
    drop(key);
    match sent {
        Ok(signed) => match gw.store.evm_transfer(id).await {
            Ok(Some(row)) => report(gw, &row, true).await,
            // Sent: said so from what is in hand, whatever the store answers now.
            _ => Ok(in_hand(
                StatusCode::OK,
                id,
                b,
                planned,
                (&keygate_chain::hash_text(&signed.hash), signed.nonce),
                format!(
                    "sent; its record could not be read just now: GET /v1/transfers/{id} later"
                ),
            )),
        },
        Err(e) if e.maybe_out() => {
            tracing::error!(venue = %b.venue, decision_id = id, error = %e, "an allowed transfer's send got no clear answer; it may be pending");
            Ok(in_hand(
                StatusCode::ACCEPTED,
                id,
                b,
                planned,
                e.maybe_pending().unwrap_or_default(),
                format!(
                    "{e}. Do not send this transfer again: GET /v1/transfers/{id} until it is confirmed or failed (failed is final, and means nothing was paid)"
                ),
            ))
        }
        Err(e) => {
            tracing::error!(venue = %b.venue, decision_id = id, error = %e, "an allowed transfer was not sent");
            Err(not_sent(e).with_decision(id))
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
    let ip = peer.ip().to_canonical();
    let id = id.map(|Path(id)| id).ok();
    match look_up(&gw, ip, id, &headers).await {
        Ok(r) => r,
        Err(refusal) => {
            note(&gw, ip, &refusal.error);
            refusal.into_response()
        }
    }
}

/// The steps of `GET /v1/transfers/{id}` (`id` None: not a number).
async fn look_up(
    gw: &Gateway,
    ip: IpAddr,
    id: Option<i64>,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let p = caller(gw, ip, headers)?;
    let id = id.ok_or(GatewayError::BadRequest(BadRequest::TransferId))?;
    let not_found = || Refusal::from(GatewayError::NotFound(NotFound::Transfer(id)));
    // The token first: which ids exist is not told to a caller without a good one.
    let path = format!("/v1/transfers/{id}");
    check(gw, &p, ip, None, ("GET", &path)).await?;
    let row = gw
        .store
        .evm_transfer(id)
        .await
        .map_err(|e| GatewayError::Unavailable(Unavailable::Transfer(e)))?
        .ok_or_else(not_found)?;
    // Out of the token's scope is answered as not found: which ids exist is not told.
    match check(gw, &p, ip, Some(&row.venue), ("GET", &path)).await {
        Ok(client) if client == row.client => report(gw, &row, false).await,
        Ok(_) => Err(not_found()),
        Err(r) if matches!(r.error, GatewayError::Unavailable(_)) => Err(r),
        Err(r) => {
            note(gw, ip, &r.error);
            Err(not_found())
        }
    }
}

/// The venue's signing key (its credential's `evm-key`), opened.
pub(crate) async fn key(gw: &Gateway, setup: &ChainSetup) -> Result<Key, String> {
    let credential = &setup.transfers.venue.credential;
    let secret = gw
        .credentials
        .get(credential)
        .await
        .map_err(|e| e.to_string())?;
    secret
        .parts()
        .first()
        .and_then(|k| Key::from_hex(k.expose()).ok())
        .ok_or_else(|| format!("credential {credential} is not an evm-key"))
}

/// The treasury address of an EVM venue: its credential's key's address.
pub async fn treasury(gw: &Gateway, setup: &ChainSetup) -> Result<keygate_chain::Address, String> {
    Ok(key(gw, setup).await?.address())
}

/// Starts one chain watcher per EVM venue, on its treasury address, and its rescue where the
/// venue has a `rescue_to` (fed by the watcher's judgements).
pub async fn spawn_watchers(gw: Arc<Gateway>) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut out = vec![];
    for setup in gw.chains.values() {
        let address = treasury(&gw, setup).await?;
        let mut w = keygate_chain::watcher::Watcher::new(
            setup.transfers.venue.clone(),
            gw.store.clone(),
            vec![address],
            setup.contain.clone(),
        )
        .map_err(|e| e.to_string())?;
        if let Some(r) = &setup.rescue {
            let (task, events) = rescue::spawn(gw.clone(), setup.clone(), r).await?;
            w = w.with_events(events);
            out.push(task);
        }
        tracing::info!(venue = %setup.transfers.venue.name, treasury = %keygate_chain::address_text(&address), "chain watcher started");
        out.push(tokio::spawn(w.run()));
    }
    Ok(out)
}
