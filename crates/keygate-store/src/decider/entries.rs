//! The audit entries the decider writes: a decision (with the request it came from), a refused
//! token, a request refused before a decision. Their serialised form is what the audit chain
//! hashes: a field's name, order or presence must not change.

use std::net::IpAddr;

use keygate_core::auth::AuthError;
use keygate_core::decide::{Extra, Watched};
use keygate_core::{Intent, Millis};

use super::GatewayRequest;
use crate::audit::NewEntry;

/// What a decision's audit entry records (besides its debit).
#[derive(serde::Serialize)]
struct DecisionData<'a> {
    intent: &'a Intent,
    outcome: keygate_core::Outcome,
    stage: keygate_core::decide::Stage,
    reasons: &'a [String],
    policies: &'a [String],
    limits: &'a [keygate_core::LimitCheck],
    usd_value_cents: Option<i64>,
    signals: &'a [String],
    approvals: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestInfo<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    detections: &'a [keygate_core::detect::Signal],
}

/// The HTTP request a gateway decision came from.
#[derive(serde::Serialize)]
pub(super) struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// The client id the venue will report for this request, when it is the request id (else
    /// a withdrawal carries keygate's own, `kg` and the decision's number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue_ref: Option<&'a str>,
}

/// The audit entry of a decision.
pub(super) fn decision_entry(
    intent: &Intent,
    w: &Watched,
    extra: &Extra,
    request: Option<RequestInfo<'_>>,
) -> NewEntry {
    let verdict = &w.verdict;
    NewEntry {
        kind: "decision",
        actor: format!("client:{}", intent.client),
        at_ms: verdict.at,
        data: NewEntry::data(&DecisionData {
            intent,
            outcome: verdict.outcome,
            stage: verdict.stage,
            reasons: &verdict.reasons,
            policies: &verdict.policies,
            limits: &verdict.limits,
            usd_value_cents: verdict.usd_value_cents,
            signals: &extra.signals,
            approvals: extra.approvals,
            request,
            detections: &w.signals,
        }),
        debit: verdict.debit.clone(),
    }
}

/// The audit entry of a refused token.
pub fn auth_failure_entry(
    error: &AuthError,
    ip: IpAddr,
    venue: &str,
    action: Option<keygate_core::Action>,
    request: Option<(&str, &str)>,
    now: Millis,
) -> NewEntry {
    let (method, path) = request.unzip();
    NewEntry {
        kind: "auth",
        actor: format!("ip:{ip}"),
        at_ms: now,
        data: NewEntry::data(&serde_json::json!({
            "event": "token.refused", "error": error.code(), "detail": error, "message": error.to_string(),
            "venue": venue, "action": action, "source_ip": ip, "method": method, "path": path,
        })),
        debit: None,
    }
}

pub(super) fn refused_entry(
    req: &GatewayRequest,
    action: Option<keygate_core::Action>,
    error: &AuthError,
    now: Millis,
) -> NewEntry {
    auth_failure_entry(
        error,
        req.ip,
        &req.venue,
        action,
        Some((&req.method, &req.path)),
        now,
    )
}

pub(super) fn rejected_entry(
    req: &GatewayRequest,
    client: &str,
    event: &str,
    reason: &str,
    now: Millis,
) -> NewEntry {
    NewEntry {
        kind: "request",
        actor: format!("client:{client}"),
        at_ms: now,
        data: NewEntry::data(&serde_json::json!({
            "event": event, "reason": reason, "venue": req.venue, "method": req.method, "path": req.path,
            "request_id": req.request_id, "token_id": req.token.id, "source_ip": req.ip,
        })),
        debit: None,
    }
}
