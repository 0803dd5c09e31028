//! The audit entries the decider writes: a decision (with the request it came from), a refused
//! token, a request refused before a decision, each built as its typed
//! [`AuditEntry`](crate::audit::AuditEntry) with borrowed fields (nothing is copied). Their
//! serialised form is what the audit chain hashes: see `audit::entry`.

use std::borrow::Cow;
use std::net::IpAddr;

use keygate_core::auth::AuthError;
use keygate_core::decide::{Extra, Watched};
use keygate_core::{Intent, Millis};

use super::GatewayRequest;
use crate::audit::{
    AuditEntry, AuthEvent, DecisionEntry, NewEntry, RequestInfo, RequestRefused, TokenRefused,
};

/// The audit entry of a decision.
pub(super) fn decision_entry(
    intent: &Intent,
    w: &Watched,
    extra: &Extra,
    request: Option<RequestInfo<'_>>,
) -> NewEntry {
    let verdict = &w.verdict;
    let entry = AuditEntry::Decision(DecisionEntry {
        intent: Cow::Borrowed(intent),
        outcome: verdict.outcome,
        stage: verdict.stage,
        reasons: Cow::Borrowed(&verdict.reasons),
        policies: Cow::Borrowed(&verdict.policies),
        limits: Cow::Borrowed(&verdict.limits),
        usd_value_cents: verdict.usd_value_cents,
        signals: Cow::Borrowed(&extra.signals),
        approvals: extra.approvals,
        request,
        detections: Cow::Borrowed(&w.signals),
    });
    NewEntry::new(
        format!("client:{}", intent.client),
        verdict.at,
        &entry,
        verdict.debit.clone(),
    )
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
    let entry = AuditEntry::Auth(AuthEvent::TokenRefused(TokenRefused {
        error: Cow::Borrowed(error.code()),
        detail: Cow::Borrowed(error),
        message: error.to_string(),
        venue: Cow::Borrowed(venue),
        action,
        source_ip: ip,
        method: method.map(Cow::Borrowed),
        path: path.map(Cow::Borrowed),
    }));
    NewEntry::new(format!("ip:{ip}"), now, &entry, None)
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
    let entry = AuditEntry::Request(RequestRefused {
        event: Cow::Borrowed(event),
        reason: Cow::Borrowed(reason),
        venue: Cow::Borrowed(&req.venue),
        method: Cow::Borrowed(&req.method),
        path: Cow::Borrowed(&req.path),
        request_id: req.request_id.as_deref().map(Cow::Borrowed),
        token_id: Cow::Borrowed(&req.token.id),
        source_ip: req.ip,
    });
    NewEntry::new(format!("client:{client}"), now, &entry, None)
}
