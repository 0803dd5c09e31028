//! The gateway's pure steps, without a store or a venue.

use axum::http::HeaderValue;
use keygate_core::Action;
use keygate_core::auth::AuthError;
use keygate_core::decide::{Stage, Verdict};
use keygate_store::Decision;
use keygate_venues::{Adapter, AdapterOptions, VenueKind};

use super::*;

fn decided(outcome: Outcome, stage: Stage) -> Answer {
    Answer::Decided(Decision {
        id: 5,
        verdict: Verdict {
            outcome,
            at: 0,
            stage,
            reasons: vec!["a".into(), "b".into()],
            policies: vec![],
            limits: vec![],
            usd_value_cents: None,
            debit: None,
        },
    })
}

fn classified() -> Classified {
    Adapter::new(VenueKind::Binance, AdapterOptions::default())
        .classify(&Request {
            method: "GET",
            path: "/api/v3/account",
            query: "",
            body: b"",
        })
        .unwrap()
}

fn code(r: Result<Judged, Refusal>) -> (&'static str, Option<i64>) {
    let r = r.unwrap_err();
    (r.error.code(), r.decision_id)
}

#[test]
fn the_deciders_answer_is_judged() {
    let ok = || Ok(classified());
    assert!(matches!(
        judge(decided(Outcome::Allow, Stage::Policy), ok(), false),
        Ok(Judged::Allowed { id: 5, .. })
    ));
    match judge(decided(Outcome::Hold, Stage::Policy), ok(), false) {
        Ok(Judged::Held { id: 5, reasons }) => assert_eq!(reasons, "a; b"),
        other => panic!("{other:?}"),
    }
    // A native request's hold is answered in the venue's format, as a refusal.
    let held = judge(decided(Outcome::Hold, Stage::Policy), ok(), true).unwrap_err();
    assert_eq!(
        (held.error.code(), held.error.status()),
        ("held", StatusCode::ACCEPTED)
    );
    assert_eq!(
        code(judge(decided(Outcome::Deny, Stage::Limit), ok(), false)),
        ("denied", Some(5))
    );
    assert_eq!(
        code(judge(decided(Outcome::Deny, Stage::Freeze), ok(), false)),
        ("frozen", Some(5))
    );
    let refused = Answer::Refused {
        id: 6,
        error: AuthError::Revoked { id: "t".into() },
    };
    assert_eq!(code(judge(refused, ok(), false)), ("revoked", Some(6)));
    let rejected = || Answer::Rejected {
        id: 7,
        code: keygate_store::decider::Rejection::HoldPending,
        reason: "wait".into(),
    };
    assert_eq!(
        code(judge(rejected(), ok(), false)),
        ("hold_pending", Some(7))
    );
    // Unclassified: refused for what its classification found, with the decider's entry.
    let unknown = Err(GatewayError::UnknownEndpoint(
        ClassifyError::UnknownEndpoint {
            venue: "binance",
            method: "GET".into(),
            path: "/x".into(),
        },
    ));
    assert_eq!(
        code(judge(rejected(), unknown, false)),
        ("unknown_endpoint", Some(7))
    );
    let allowed_unclassified = Err(GatewayError::BadRequest(BadRequest::RequestId));
    assert_eq!(
        code(judge(
            decided(Outcome::Allow, Stage::Policy),
            allowed_unclassified,
            false
        )),
        ("internal", Some(5))
    );
}

#[test]
fn an_intent_is_the_classification_or_why_there_is_none() {
    let i = intent("binance", &Ok(classified())).unwrap();
    assert_eq!((i.venue.as_str(), i.action), ("binance", Action::Read));
    let e = intent("binance", &Err(GatewayError::BodyTooLarge)).unwrap_err();
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn request_id_and_hold_headers_are_checked() {
    let mut h = HeaderMap::new();
    assert_eq!(request_id_header(&h).unwrap(), None);
    assert_eq!(hold_header(&h).unwrap(), None);
    h.insert("x-keygate-request-id", HeaderValue::from_static("r-1"));
    h.insert("x-keygate-hold", HeaderValue::from_static(" 12 "));
    assert_eq!(request_id_header(&h).unwrap().as_deref(), Some("r-1"));
    assert_eq!(hold_header(&h).unwrap(), Some(12));
    h.insert("x-keygate-request-id", HeaderValue::from_static("a b"));
    h.insert("x-keygate-hold", HeaderValue::from_static("0"));
    assert_eq!(request_id_header(&h).unwrap_err().code(), "bad_request");
    assert!(matches!(hold_header(&h), Err(BadRequest::Hold)));
}

#[test]
fn a_request_presents_itself_by_its_headers() {
    let setup = |anonymous_public| VenueSetup {
        name: "binance".into(),
        adapter: Adapter::new(VenueKind::Binance, AdapterOptions::default()),
        base_url: "http://127.0.0.1:1".into(),
        credential: "c".into(),
        timeout: std::time::Duration::from_secs(1),
        reconcile_every: None,
        reconcile_lookback: std::time::Duration::from_secs(1),
        contain: None,
        anonymous_public,
        anonymous_rate: 1,
    };
    let (open, closed) = (setup(true), setup(false));
    let mut h = HeaderMap::new();
    let kind = VenueKind::Binance;
    assert_eq!(Presentation::of(&h, None), Presentation::Bearer);
    assert_eq!(Presentation::of(&h, Some(&closed)), Presentation::Bearer);
    assert_eq!(
        Presentation::of(&h, Some(&open)),
        Presentation::Anonymous { kind }
    );
    h.insert("x-mbx-apikey", HeaderValue::from_static("k"));
    assert_eq!(
        Presentation::of(&h, Some(&closed)),
        Presentation::Native { kind, key: "k" }
    );
    assert_eq!(
        Presentation::of(&h, Some(&closed)).style(),
        Some(Style { kind, action: None })
    );
    // A bearer token wins.
    h.insert("authorization", HeaderValue::from_static("Bearer x"));
    assert_eq!(Presentation::of(&h, Some(&open)), Presentation::Bearer);
    assert_eq!(Presentation::Bearer.style(), None);
}
