//! Retries of the transfer API: a request whose `client_ref` (or hold) was used before is
//! answered with what the first request did, read from the store.
//!
//! Never "nothing there" when the store cannot be read: that would tell a client to send the
//! transfer anew. Must not know: how a transfer is decided or sent.

use axum::response::Response;
use keygate_core::Outcome;
use keygate_store::audit::AuditEntry;
use rust_decimal::Decimal;

use super::Body;
use super::report::report;
use crate::Gateway;
use crate::refusal::{GatewayError, HoldInvalid, Refusal, Replayed, Unavailable};

/// How long a retry waits for the first request of its `client_ref` (or hold) to record its
/// transfer.
const FIRST_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the store says of an earlier request: its answer, nothing (`Ok(None)`), or a refusal
/// (among them: the store could not be read).
pub(super) type Found = Result<Option<Response>, Refusal>;

fn unreadable(e: keygate_store::StoreError) -> Refusal {
    GatewayError::Unavailable(Unavailable::Before(e)).into()
}

/// The transfer a client's `client_ref` named, answered as on its first request. A retry that
/// races the first request (allowed, not yet recorded as a transfer) waits for it a little.
pub(super) async fn existing(gw: &Gateway, client: &str, venue: &str, client_ref: &str) -> Found {
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
        .and_then(|e| match e.entry() {
            Ok(AuditEntry::Decision(d)) => Some(d.outcome),
            _ => None,
        });
    let allowed = outcome == Some(Outcome::Allow);
    // A held transfer carried out later: its transfer is the carrying-out decision's.
    if let Some(r) = carried_out(gw, client, id, None).await? {
        return Ok(Some(r));
    }
    let deadline = tokio::time::Instant::now() + FIRST_REQUEST_WAIT;
    loop {
        if let Some(row) = gw.store.evm_transfer(id).await.map_err(unreadable)? {
            return report(gw, &row, false).await.map(Some);
        }
        if !allowed || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let client_ref = client_ref.to_string();
    let error = if outcome == Some(Outcome::Hold) {
        GatewayError::HeldBefore { client_ref, id }
    } else if allowed {
        GatewayError::InProgress { client_ref, id }
    } else {
        GatewayError::Replayed(Replayed::ClientRef { client_ref, id })
    };
    Err(error.with_decision(id))
}

/// The transfer that carried out hold `hold` of `client`, if one did. With `body`, a transfer
/// of another payment is no answer to it: 409.
pub(super) async fn carried_out(
    gw: &Gateway,
    client: &str,
    hold: i64,
    body: Option<&Body>,
) -> Found {
    let Some(by) = gw.store.hold_executed_by(hold).await.map_err(unreadable)? else {
        return Ok(None);
    };
    let Some(row) = gw.store.evm_transfer(by).await.map_err(unreadable)? else {
        return Ok(None);
    };
    if row.client != client {
        return Ok(None);
    }
    if let Some(b) = body
        && !same_payment(&row, b)
    {
        return Err(
            GatewayError::HoldInvalid(HoldInvalid::OtherPayment { hold, by }).with_decision(by),
        );
    }
    report(gw, &row, false).await.map(Some)
}

/// Whether the recorded transfer `row` is the payment `b` asks for.
fn same_payment(row: &keygate_store::EvmTransferRow, b: &Body) -> bool {
    let to = keygate_chain::parse_address(&b.to).map(|a| keygate_chain::address_text(&a));
    let amount = b
        .amount
        .trim()
        .parse::<Decimal>()
        .ok()
        .map(|a| a.normalize().to_string());
    row.venue == b.venue
        && row.asset == b.asset
        && row.client_ref == b.client_ref
        && to.as_deref() == Some(row.destination.as_str())
        && amount.as_deref() == Some(row.amount.as_str())
}

/// The hold's transfer once the request carrying it out first has recorded it (a second
/// request carrying out the same hold at once waits for it a little).
pub(super) async fn carried_out_soon(gw: &Gateway, client: &str, hold: i64, body: &Body) -> Found {
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
