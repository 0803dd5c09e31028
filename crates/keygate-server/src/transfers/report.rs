//! A transfer's answer: a recorded transfer with its state on chain ([`report`]), or one just
//! sent answered from what the request has in hand ([`in_hand`]).
//!
//! Must not know: how the transfer was decided.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keygate_chain::transfer::{Status, StatusError};
use keygate_store::EvmTransferRow;
use serde_json::json;

use super::Body;
use crate::Gateway;
use crate::refusal::{
    GatewayError, NodeUnavailable, Refusal, Unavailable, UnknownVenue, with_decision,
};

/// A recorded transfer and its state on chain. `just_sent`: its state is pending, whatever can
/// be read now.
pub(super) async fn report(
    gw: &Gateway,
    row: &EvmTransferRow,
    just_sent: bool,
) -> Result<Response, Refusal> {
    let id = row.decision_id;
    let Some(setup) = gw.chains.get(&row.venue) else {
        return Err(
            GatewayError::UnknownVenue(UnknownVenue::Gone(row.venue.clone())).with_decision(id),
        );
    };
    let txs = match gw.store.evm_txs(id).await {
        Ok(h) => h,
        // Just sent: its state is pending, whatever can be read now.
        Err(_) if just_sent => vec![],
        Err(e) => return Err(GatewayError::Unavailable(Unavailable::Transfer(e)).with_decision(id)),
    };
    // Just sent, and its transactions could not be read: not asked about at all.
    let status = if just_sent && txs.is_empty() {
        Ok(unread(
            row,
            "sent; its state could not be read just now: GET it later".into(),
        ))
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
    let state = state(row, status, just_sent).map_err(|e| e.with_decision(id))?;
    let mut body = json!({
        "id": id, "decision_id": id, "venue": row.venue,
        "asset": row.asset, "amount": row.amount, "to": row.destination, "from": row.from_address,
        "client_ref": row.client_ref, "nonce": row.nonce,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(s))) =
        (body.as_object_mut(), serde_json::to_value(&state))
    {
        obj.extend(s);
    }
    Ok(with_decision(
        (StatusCode::OK, axum::Json(body)).into_response(),
        Some(id),
    ))
}

/// A pending state, not read from the node.
fn unread(row: &EvmTransferRow, note: String) -> Status {
    Status::Pending {
        tx_hash: row.tx_hash.clone(),
        block: None,
        confirmations: 0,
        note: Some(note),
    }
}

/// The state to report from what the node answered.
fn state(
    row: &EvmTransferRow,
    status: Result<Status, StatusError>,
    just_sent: bool,
) -> Result<Status, GatewayError> {
    match status {
        Ok(s) => Ok(s),
        // Just sent: say so, whatever the node answers now (a 5xx would read as "not done").
        Err(e) if just_sent => Ok(unread(
            row,
            format!("sent; its state could not be read just now ({e}): GET it later"),
        )),
        Err(e @ StatusError::Node(_)) => {
            Err(GatewayError::NodeUnavailable(NodeUnavailable::Status(e)))
        }
        Err(e) => Err(GatewayError::Unavailable(Unavailable::Status(e))),
    }
}

/// A transfer that may be pending, answered from what the request has in hand (its body, its
/// plan, the transaction `(hash, nonce)`), without asking the store or the node.
pub(super) fn in_hand(
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
    with_decision((status, axum::Json(body)).into_response(), Some(id))
}
