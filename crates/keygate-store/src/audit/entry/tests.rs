//! Each kind's bytes from its typed value equal the bytes of the construction it replaced
//! (copied here as it was), and read back as the same value.

use super::*;
use keygate_core::detect::Response;
use keygate_core::freeze::Scope;
use keygate_core::limits::Cap;
use keygate_core::outflow::Outflow;
use rust_decimal::Decimal;
use serde_json::json;

fn intent() -> Intent {
    Intent {
        route: Default::default(),
        order: None,
        client: "bot-1".into(),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some("USDT".into()),
        amount: Some(Decimal::new(7250, 2)),
        destination: Some("0xabc".into()),
        source_ip: Some("10.0.0.7".parse().unwrap()),
        token_id: Some("kgt_0011223344556677".into()),
    }
}

fn limit() -> LimitCheck {
    LimitCheck {
        limit: "daily".into(),
        bucket: "bot-1/USDT".into(),
        window_ms: 86_400_000,
        used_usd_cents: 12_345,
        max_usd_cents: Some(1_000_000),
        used_amount: Decimal::new(1234, 1),
        max_amount: None,
        used_count: 3,
        max_count: Some(10),
        exceeded: Some(Cap::Usd),
        asked_usd_cents: 7_250,
        asked_amount: Decimal::new(7250, 2),
    }
}

fn signal() -> Signal {
    Signal {
        detector: Cow::Borrowed("size_jump"),
        score: 60,
        response: Response::Hold,
        reason: "3x the usual size".into(),
    }
}

/// The decision entry's data as decider/entries.rs serialised it before the typed entries.
#[derive(serde::Serialize)]
struct OldDecisionData<'a> {
    intent: &'a Intent,
    outcome: Outcome,
    stage: Stage,
    reasons: &'a [String],
    policies: &'a [String],
    limits: &'a [LimitCheck],
    usd_value_cents: Option<i64>,
    signals: &'a [String],
    approvals: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<OldRequestInfo<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    detections: &'a [Signal],
}

#[derive(serde::Serialize)]
struct OldRequestInfo<'a> {
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    venue_ref: Option<&'a str>,
}

/// The typed entry's bytes equal `old`'s, and they read back as the same entry.
fn same_bytes(entry: AuditEntry<'_>, kind: &str, old: &impl Serialize) {
    let new = NewEntry::new("a".into(), 1, &entry, None);
    assert_eq!(new.kind, kind);
    assert_eq!(
        new.data.get(),
        serde_json::to_string(old).unwrap(),
        "{kind}: the typed entry's bytes differ from the old construction's"
    );
    assert_eq!(AuditEntry::parse(kind, new.data.get()).unwrap(), entry);
}

#[test]
fn a_decision_entry_has_the_bytes_it_had() {
    let (i, l, s) = (intent(), [limit()], [signal()]);
    let reasons = ["over the daily limit".to_string()];
    let policies = ["p1".to_string(), "p2".to_string()];
    let signals = ["size_jump".to_string()];
    for (request, detections) in [
        (true, &s[..]),
        (false, &[][..]),
        (true, &[][..]),
        (false, &s[..]),
    ] {
        for (request_id, venue_ref) in [
            (Some("r-1"), Some("r-1")),
            (Some("r-2"), None),
            (None, None),
        ] {
            let old = OldDecisionData {
                intent: &i,
                outcome: Outcome::Hold,
                stage: Stage::Intent,
                reasons: &reasons,
                policies: &policies,
                limits: &l,
                usd_value_cents: Some(7_250),
                signals: &signals,
                approvals: 2,
                request: request.then_some(OldRequestInfo {
                    method: "POST",
                    path: "/sapi/v1/capital/withdraw/apply",
                    request_id,
                    venue_ref,
                }),
                detections,
            };
            let new = AuditEntry::Decision(DecisionEntry {
                intent: Cow::Borrowed(&i),
                outcome: Outcome::Hold,
                stage: Stage::Intent,
                reasons: Cow::Borrowed(&reasons),
                policies: Cow::Borrowed(&policies),
                limits: Cow::Borrowed(&l),
                usd_value_cents: Some(7_250),
                signals: Cow::Borrowed(&signals),
                approvals: 2,
                request: request.then_some(RequestInfo {
                    method: Cow::Borrowed("POST"),
                    path: Cow::Borrowed("/sapi/v1/capital/withdraw/apply"),
                    request_id: request_id.map(Cow::Borrowed),
                    venue_ref: venue_ref.map(Cow::Borrowed),
                    request_text: None,
                }),
                detections: Cow::Borrowed(detections),
            });
            same_bytes(new, "decision", &old);
        }
    }
    let mut bare = intent();
    (
        bare.asset,
        bare.amount,
        bare.destination,
        bare.source_ip,
        bare.token_id,
    ) = (None, None, None, None, None);
    let old = OldDecisionData {
        intent: &bare,
        outcome: Outcome::Deny,
        stage: Stage::Clock,
        reasons: &[],
        policies: &[],
        limits: &[],
        usd_value_cents: None,
        signals: &[],
        approvals: 0,
        request: None,
        detections: &[],
    };
    let new = AuditEntry::Decision(DecisionEntry {
        intent: Cow::Borrowed(&bare),
        outcome: Outcome::Deny,
        stage: Stage::Clock,
        reasons: Cow::Borrowed(&[]),
        policies: Cow::Borrowed(&[]),
        limits: Cow::Borrowed(&[]),
        usd_value_cents: None,
        signals: Cow::Borrowed(&[]),
        approvals: 0,
        request: None,
        detections: Cow::Borrowed(&[]),
    });
    same_bytes(new, "decision", &old);
}

#[test]
fn a_refused_token_entry_has_the_bytes_it_had() {
    let errors = [
        AuthError::Malformed,
        AuthError::Stale {
            id: "kgt_1".into(),
            detail: "12 s old".into(),
        },
        AuthError::WrongAddress {
            id: "kgt_1".into(),
            ip: "10.0.0.9".parse().unwrap(),
            allowed: "10.0.0.0/24".into(),
        },
        AuthError::OutOfScope {
            id: "kgt_1".into(),
            venue: "okx".into(),
            action: Action::Trade,
            scope: "binance".into(),
        },
    ];
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    for error in &errors {
        for (action, request) in [
            (
                Some(Action::Withdraw),
                Some(("POST", "/api/v5/asset/withdrawal")),
            ),
            (None, None),
        ] {
            let (method, path) = request.unzip();
            let old = json!({
                "event": "token.refused", "error": error.code(), "detail": error, "message": error.to_string(),
                "venue": "okx", "action": action, "source_ip": ip, "method": method, "path": path,
            });
            let new = AuditEntry::Auth(AuthEvent::TokenRefused(TokenRefused {
                error: Cow::Borrowed(error.code()),
                detail: Cow::Borrowed(error),
                message: error.to_string(),
                venue: Cow::Borrowed("okx"),
                action,
                source_ip: ip,
                method: method.map(Cow::Borrowed),
                path: path.map(Cow::Borrowed),
            }));
            same_bytes(new, "auth", &old);
        }
    }
}

#[test]
fn a_refused_request_entry_has_the_bytes_it_had() {
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    for request_id in [Some("r-1"), None] {
        let old = json!({
            "event": "request.replayed", "reason": "request id r-1 was used before", "venue": "binance",
            "method": "POST", "path": "/api/v3/order", "request_id": request_id, "token_id": "kgt_1",
            "source_ip": ip,
        });
        let new = AuditEntry::Request(RequestRefused {
            event: Cow::Borrowed("request.replayed"),
            reason: Cow::Borrowed("request id r-1 was used before"),
            venue: Cow::Borrowed("binance"),
            method: Cow::Borrowed("POST"),
            path: Cow::Borrowed("/api/v3/order"),
            request_id: request_id.map(Cow::Borrowed),
            token_id: Cow::Borrowed("kgt_1"),
            source_ip: ip,
        });
        same_bytes(new, "request", &old);
    }
}

#[test]
fn an_untyped_kind_reads_back_as_stored() {
    let data = r#"{"action":"token.revoke","token":"kgt_1"}"#;
    let e = AuditEntry::parse("admin", data).unwrap();
    assert_eq!(e.kind(), "admin");
    assert_eq!(e.data().unwrap().get(), data);
}

#[test]
fn freeze_entries_have_the_bytes_they_had() {
    let approvers = ["alice".to_string(), "bob".to_string()];
    for scope in [
        Scope::All,
        Scope::Client("bot-1".into()),
        Scope::Venue("okx".into()),
        Scope::Credential("kgt_1".into()),
    ] {
        let (id, reason) = (7_i64, "test then drain");
        let old = json!({
            "event": "freeze.set", "freeze_id": id, "scope": &scope, "reason": reason,
        });
        let new = AuditEntry::Freeze(FreezeEvent::Set {
            freeze_id: id,
            scope: Cow::Borrowed(&scope),
            reason: Cow::Borrowed(reason),
        });
        same_bytes(new, "freeze", &old);
        let (id, valid) = (&id, &approvers[..]);
        let old =
            json!({"event": "freeze.lifted", "freeze_id": id, "scope": &scope, "approvers": valid});
        let new = AuditEntry::Freeze(FreezeEvent::Lifted {
            freeze_id: *id,
            scope: Cow::Borrowed(&scope),
            approvers: Cow::Borrowed(valid),
        });
        same_bytes(new, "freeze", &old);
    }
}

#[test]
fn an_alarm_entry_has_the_bytes_it_had() {
    let (event, reason) = ("chain.lost", "the node is 40 blocks behind");
    let details =
        json!({"chain": "ethereum", "behind": 40, "node": {"url": "http://n", "ok": false}});
    let old = json!({
        "event": event, "severity": "critical", "reason": reason, "details": details.clone(),
    });
    let new = AuditEntry::Alarm(Alarm {
        event: Cow::Borrowed(event),
        severity: Cow::Borrowed("critical"),
        reason: Cow::Borrowed(reason),
        details,
    });
    same_bytes(new, "alarm", &old);
}

#[test]
fn reconcile_entries_have_the_bytes_they_had() {
    for reference in [Some("kg12".to_string()), None] {
        let o = Outflow {
            venue: "binance".into(),
            id: "w-99".into(),
            asset: "USDT".into(),
            amount: Decimal::new(725_000, 4),
            destination: "0xabc:memo".into(),
            at: 1_700_000_000_123,
            reference,
        };
        let id = 12_i64;
        let old = json!({"event": "outflow.matched", "outflow": &o, "decision_id": id});
        let new = AuditEntry::Reconcile(ReconcileEvent::Matched {
            outflow: Cow::Borrowed(&o),
            decision_id: id,
        });
        same_bytes(new, "reconcile", &old);
        let reason = format!("{} {} left {}", o.amount, o.asset, o.venue);
        let old = json!({
            "event": "outflow.unapproved", "severity": "critical", "outflow": &o,
            "reason": reason.clone(),
        });
        let new = AuditEntry::Reconcile(ReconcileEvent::Unapproved {
            severity: Cow::Borrowed("critical"),
            outflow: Cow::Borrowed(&o),
            reason,
        });
        same_bytes(new, "reconcile", &old);
    }
}

#[test]
fn a_held_decision_records_its_request_text_and_others_read_without_one() {
    let i = intent();
    let text =
        "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=ETH&address=0xabc&amount=72.50";
    let entry = |request_text: Option<&'static str>| {
        AuditEntry::Decision(DecisionEntry {
            intent: Cow::Borrowed(&i),
            outcome: Outcome::Hold,
            stage: Stage::Policy,
            reasons: Cow::Borrowed(&[]),
            policies: Cow::Borrowed(&[]),
            limits: Cow::Borrowed(&[]),
            usd_value_cents: Some(7_250),
            signals: Cow::Borrowed(&[]),
            approvals: 0,
            request: Some(RequestInfo {
                method: Cow::Borrowed("POST"),
                path: Cow::Borrowed("/sapi/v1/capital/withdraw/apply"),
                request_id: None,
                venue_ref: None,
                request_text: request_text.map(Cow::Borrowed),
            }),
            detections: Cow::Borrowed(&[]),
        })
    };
    let held = NewEntry::new("a".into(), 1, &entry(Some(text)), None);
    let data: serde_json::Value = serde_json::from_str(held.data.get()).unwrap();
    assert_eq!(data["request"]["request_text"], text);
    let back = AuditEntry::parse("decision", held.data.get()).unwrap();
    assert_eq!(back, entry(Some(text)));
    // Without one, the entry has no such field (its bytes are as before) and reads back None.
    let plain = NewEntry::new("a".into(), 1, &entry(None), None);
    assert!(!plain.data.get().contains("request_text"));
    assert_eq!(
        AuditEntry::parse("decision", plain.data.get()).unwrap(),
        entry(None)
    );
}
