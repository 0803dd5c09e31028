//! Admission of gateway requests in a decider batch, without a database: tokens, request ids
//! (from the store and earlier in the batch) and holds (unknown, for another request, carried
//! out, expired, pending, approved; bound to the exact request, so another request of the same
//! intent cannot carry one out).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::admit::{
    self, Admission, Batch, HoldRecord, Rejection, RequestFacts, RequestKey, RequestRef,
};
use keygate_core::auth::{
    AuthError, ClientRecord, Presented, TokenKind, TokenRecord, new_token, parse_token,
};
use keygate_core::book::Destination;
use keygate_core::decide::StateInputs;
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome, State};
use rust_decimal::Decimal;

const DEST: &str = "0x00000000000000000000000000000000000000aa";
const T0: i64 = 1_700_000_000_000;
/// The canonical request of the held withdrawal, as a venue adapter would give it (opaque here).
const HELD: &str = "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=ETH&address=0x00000000000000000000000000000000000000aa&amount=200000";
/// The same intent on another network: another request.
const SWAPPED: &str = "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=TRX&address=0x00000000000000000000000000000000000000aa&amount=200000";

const POLICIES: &str = r#"
@id("mm-withdraw")
permit(principal == Keygate::Client::"mm", action == Keygate::Action::"withdraw", resource);

@id("big-needs-approval")
@hold
forbid(principal, action == Keygate::Action::"withdraw", resource)
when { context.usd_value_cents > 10000000 }
unless { context.approvals >= 2 };
"#;

fn engine() -> Engine {
    Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "test.cedar".into(),
            text: POLICIES.into(),
        }])
        .unwrap(),
        limits: vec![],
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![("binance".into(), "USDT".into())],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    }
}

fn state(e: &Engine) -> State {
    State::new(
        e,
        StateInputs {
            trades: vec![],
            trades_complete_since: None,
            clients_since: vec![],
            clients: vec![ClientRecord {
                instruments: vec![],
                name: "mm".into(),
                venues: vec!["binance".into()],
                actions: Action::ALL.to_vec(),
                tags: vec![],
                enabled: true,
            }],
            destinations: vec![Destination {
                route: Default::default(),
                id: 1,
                venue: "binance".into(),
                asset: "USDT".into(),
                address: DEST.into(),
                label: "cold".into(),
                added_at: T0 - 48 * HOUR,
                added_by: "admin".into(),
                usable_from: T0 - 24 * HOUR,
                approved_at: Some(T0 - 30 * HOUR),
                approved_by: Some("admin".into()),
            }],
            prices: vec![],
            moves: vec![],
            clock: T0,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .unwrap()
}

fn token() -> (Presented, TokenRecord) {
    let t = new_token([1; 8], [7; 32]);
    let rec = TokenRecord {
        id: t.id.clone(),
        client: "mm".into(),
        kind: TokenKind::Bearer,
        secret_hash: t.secret_hash,
        venues: vec!["binance".into()],
        actions: Action::ALL.to_vec(),
        cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        issued_at: 0,
        expires_at: T0 + HOUR,
        revoked_at: None,
    };
    (parse_token(&t.text).unwrap(), rec)
}

fn withdraw(amount: i64) -> Intent {
    Intent {
        route: Default::default(),
        order: None,
        client: String::new(),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some("USDT".into()),
        amount: Some(Decimal::from(amount)),
        destination: Some(DEST.into()),
        source_ip: None,
        token_id: None,
    }
}

fn req<'a>(
    p: &'a Presented,
    intent: &'a Result<Intent, String>,
    rid: Option<&'a str>,
    hold: Option<i64>,
) -> RequestRef<'a> {
    RequestRef {
        token: p,
        ip: "10.0.0.5".parse().unwrap(),
        venue: "binance",
        intent,
        request_id: rid,
        hold,
        request_text: Some(HELD),
    }
}

fn key(rid: &str) -> RequestKey {
    RequestKey {
        client: "mm".into(),
        venue: "binance".into(),
        request_id: rid.into(),
    }
}

/// The rejection an admission came to, or its outcome when it was decided.
fn what(a: &Admission<'_>) -> Result<Outcome, Rejection> {
    match a {
        Admission::Decided(d) => Ok(d.watched.verdict.outcome),
        Admission::Rejected { rejection, .. } => Err(*rejection),
        Admission::Refused { error, .. } => panic!("refused: {error}"),
    }
}

fn hold_of(intent: &Intent, approved: bool) -> HoldRecord {
    let held = Intent {
        client: "mm".into(),
        ..intent.clone()
    };
    HoldRecord {
        id: 7,
        client: "mm".into(),
        venue: "binance".into(),
        digest: admit::hold_digest(&held, HELD),
        request_text: Some(HELD.into()),
        request_id: Some("r-held".into()),
        expires_ms: T0 + HOUR,
        approved_ms: approved.then_some(T0),
        executed_by: None,
        approvals: if approved { 2 } else { 0 },
    }
}

#[test]
fn rejection_codes_are_the_ones_bots_know() {
    let all = [
        (Rejection::Unclassified, "unclassified"),
        (Rejection::Replayed, "replayed"),
        (Rejection::HoldInvalid, "hold_invalid"),
        (Rejection::HoldPending, "hold_pending"),
        (Rejection::HoldExpired, "hold_expired"),
    ];
    for (r, code) in all {
        assert_eq!(r.as_str(), code);
        assert_eq!(r.event(), format!("request.{code}"));
    }
}

#[test]
fn a_refused_token_and_an_unclassified_request_are_not_decided() {
    let (e, s) = (engine(), state(&engine()));
    let (p, rec) = token();
    let intent = Ok(withdraw(72));
    let r = req(&p, &intent, None, None);
    assert!(matches!(
        admit::authenticate(&r, None, s.client("mm"), T0),
        Err(AuthError::Unknown { .. })
    ));
    let auth = admit::authenticate(&r, Some(&rec), s.client("mm"), T0);
    assert_eq!(auth, Ok("mm"));
    let unknown = Err("unknown endpoint".to_string());
    let r = req(&p, &unknown, None, None);
    let auth = admit::authenticate(&r, Some(&rec), s.client("mm"), T0);
    let facts = RequestFacts::default();
    let mut batch = Batch::new(&[], T0);
    match admit::admit(&e, &s, &mut batch, &r, auth, &facts, T0) {
        Admission::Rejected {
            client,
            rejection,
            reason,
        } => {
            assert_eq!((client, rejection), ("mm", Rejection::Unclassified));
            assert_eq!(reason, "unknown endpoint");
        }
        other => panic!("{other:?}"),
    }
    let refused = admit::admit(
        &e,
        &s,
        &mut batch,
        &r,
        Err(AuthError::Malformed),
        &facts,
        T0,
    );
    assert!(matches!(
        refused,
        Admission::Refused {
            error: AuthError::Malformed,
            action: None
        }
    ));
}

#[test]
fn a_request_id_is_used_once_unless_denied() {
    let (e, s) = (engine(), state(&engine()));
    let (p, _) = token();
    let small = Ok(withdraw(72));
    let r = req(&p, &small, Some("r1"), None);
    let mut batch = Batch::new(&[], T0);
    // Used before, by the store's audit entry 12.
    let stored = RequestFacts {
        key: Some(key("r1")),
        first_use: Some(12),
    };
    match admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &stored, T0) {
        Admission::Rejected {
            rejection, reason, ..
        } => {
            assert_eq!(rejection, Rejection::Replayed);
            assert!(reason.contains("audit entry 12"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // New: allowed, and then used for the rest of the batch.
    let fresh = RequestFacts {
        key: Some(key("r2")),
        first_use: None,
    };
    let a = admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &fresh, T0);
    assert_eq!(what(&a), Ok(Outcome::Allow));
    let Admission::Decided(d) = a else { panic!() };
    assert_eq!(d.uses_id, Some(&key("r2")));
    assert_eq!(d.intent.client, "mm");
    assert_eq!(d.intent.token_id.as_deref(), Some(p.id.as_str()));
    let again = RequestFacts {
        key: Some(key("r2")),
        first_use: None,
    };
    assert_eq!(
        what(&admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &again, T0)),
        Err(Rejection::Replayed)
    );
    // A denied request leaves its id unused.
    let stale = Ok(Intent {
        asset: Some("DOGE".into()),
        ..withdraw(1)
    });
    let r = req(&p, &stale, Some("r3"), None);
    let denied = RequestFacts {
        key: Some(key("r3")),
        first_use: None,
    };
    let a = admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &denied, T0);
    assert_eq!(what(&a), Ok(Outcome::Deny));
    let Admission::Decided(d) = a else { panic!() };
    assert_eq!(d.uses_id, None);
    let r = req(&p, &small, Some("r3"), None);
    assert_eq!(
        what(&admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &denied, T0)),
        Ok(Outcome::Allow)
    );
}

#[test]
fn a_big_withdrawal_is_held_then_carried_out_once_with_its_approvals() {
    let (e, s) = (engine(), state(&engine()));
    let (p, _) = token();
    let big = Ok(withdraw(200_000));
    let none = RequestFacts::default();
    let mut empty = Batch::new(&[], T0);
    let r = req(&p, &big, Some("r-held"), None);
    assert_eq!(
        what(&admit::admit(&e, &s, &mut empty, &r, Ok("mm"), &none, T0)),
        Ok(Outcome::Hold)
    );
    let Ok(intent) = &big else { panic!() };
    let approved = [hold_of(intent, true)];
    // The held request's own id is not looked up again.
    let r = req(&p, &big, Some("r-held"), Some(7));
    assert_eq!(admit::request_key(&r, "mm", approved.first()), None);
    assert_eq!(admit::request_key(&r, "mm", None), Some(key("r-held")));
    let mut batch = Batch::new(&approved, T0);
    let a = admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &none, T0);
    assert_eq!(what(&a), Ok(Outcome::Allow));
    let Admission::Decided(d) = a else { panic!() };
    assert_eq!(d.carried_out, Some(7));
    assert_eq!((d.extra.approvals, d.extra.approved), (2, true));
    // Spent for the rest of the batch.
    match admit::admit(&e, &s, &mut batch, &r, Ok("mm"), &none, T0) {
        Admission::Rejected {
            rejection, reason, ..
        } => {
            assert_eq!(rejection, Rejection::HoldInvalid);
            assert_eq!(reason, "hold 7 was already carried out");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_unusable_hold_has_its_own_rejection() {
    let Ok(intent) = Ok::<_, String>(Intent {
        client: "mm".into(),
        ..withdraw(200_000)
    }) else {
        panic!()
    };
    let ok = hold_of(&intent, true);
    let check = |h: Option<&HoldRecord>, intent: &Intent, now| {
        let held = admit::HeldRequest {
            venue: "binance",
            intent,
            request_text: Some(HELD),
        };
        admit::check_hold(7, h, &held, now).map_err(|(r, _)| r)
    };
    assert_eq!(
        check(Some(&ok), &intent, T0),
        Ok(admit::UsableHold {
            id: 7,
            approvals: 2
        })
    );
    assert_eq!(check(None, &intent, T0), Err(Rejection::HoldInvalid));
    let other = Intent {
        amount: Some(Decimal::from(1)),
        ..intent.clone()
    };
    assert_eq!(check(Some(&ok), &other, T0), Err(Rejection::HoldInvalid));
    let done = HoldRecord {
        executed_by: Some(9),
        ..ok.clone()
    };
    assert_eq!(check(Some(&done), &intent, T0), Err(Rejection::HoldInvalid));
    assert_eq!(
        check(Some(&ok), &intent, T0 + HOUR),
        Err(Rejection::HoldExpired)
    );
    let pending = hold_of(&intent, false);
    assert_eq!(
        check(Some(&pending), &intent, T0),
        Err(Rejection::HoldPending)
    );
    // Another token or source address is the same request.
    let other_token = Intent {
        token_id: Some("abc".into()),
        source_ip: Some("10.9.9.9".parse().unwrap()),
        ..intent.clone()
    };
    assert!(check(Some(&ok), &other_token, T0).is_ok());
}

#[test]
fn a_hold_is_bound_to_its_exact_request() {
    let intent = Intent {
        client: "mm".into(),
        ..withdraw(200_000)
    };
    let ok = hold_of(&intent, true);
    let check = |h: &HoldRecord, venue: &str, text: Option<&str>| {
        let held = admit::HeldRequest {
            venue,
            intent: &intent,
            request_text: text,
        };
        admit::check_hold(7, Some(h), &held, T0)
    };
    assert!(check(&ok, "binance", Some(HELD)).is_ok());
    // The same intent in another request (another network here): refused.
    let (rejection, reason) = check(&ok, "binance", Some(SWAPPED)).unwrap_err();
    assert_eq!(rejection, Rejection::HoldInvalid);
    assert!(reason.contains("another request"), "{reason}");
    assert_eq!(
        check(&ok, "binance", None).map_err(|(r, _)| r),
        Err(Rejection::HoldInvalid)
    );
    assert_eq!(
        check(&ok, "okx", Some(HELD)).map_err(|(r, _)| r),
        Err(Rejection::HoldInvalid)
    );
    // A record whose text was changed without its digest (or the reverse) is refused too.
    let text_changed = HoldRecord {
        request_text: Some(SWAPPED.into()),
        ..ok.clone()
    };
    assert!(check(&text_changed, "binance", Some(SWAPPED)).is_err());
    let digest_changed = HoldRecord {
        digest: admit::hold_digest(&intent, SWAPPED),
        ..ok.clone()
    };
    assert!(check(&digest_changed, "binance", Some(HELD)).is_err());
    // A hold from before holds were bound to requests binds none: it cannot be carried out,
    // and the bot is told to send the request again for a new hold.
    let old = HoldRecord {
        request_text: None,
        ..ok.clone()
    };
    let (rejection, reason) = check(&old, "binance", Some(HELD)).unwrap_err();
    assert_eq!(rejection, Rejection::HoldInvalid);
    assert!(
        reason.contains("without x-keygate-hold for a new hold"),
        "{reason}"
    );
}

#[test]
fn the_hold_digest_covers_the_intent_and_the_request_but_not_token_or_address() {
    let intent = Intent {
        client: "mm".into(),
        ..withdraw(200_000)
    };
    let d = admit::hold_digest(&intent, HELD);
    assert_eq!(d.len(), 64);
    assert_ne!(d, admit::hold_digest(&intent, SWAPPED));
    assert_ne!(d, admit::hold_digest(&intent, ""));
    let more = Intent {
        amount: Some(Decimal::from(200_001)),
        ..intent.clone()
    };
    assert_ne!(d, admit::hold_digest(&more, HELD));
    let elsewhere = Intent {
        token_id: Some("t2".into()),
        source_ip: Some("10.1.1.1".parse().unwrap()),
        ..intent.clone()
    };
    assert_eq!(d, admit::hold_digest(&elsewhere, HELD));
}

#[test]
fn carrying_out_a_hold_with_another_request_of_the_same_intent_is_refused_and_spends_nothing() {
    let (e, s) = (engine(), state(&engine()));
    let (p, _) = token();
    let big = Ok(withdraw(200_000));
    let Ok(intent) = &big else { panic!() };
    let approved = [hold_of(intent, true)];
    let none = RequestFacts::default();
    let mut batch = Batch::new(&approved, T0);
    let swapped = RequestRef {
        request_text: Some(SWAPPED),
        ..req(&p, &big, Some("r-held"), Some(7))
    };
    match admit::admit(&e, &s, &mut batch, &swapped, Ok("mm"), &none, T0) {
        Admission::Rejected {
            rejection, reason, ..
        } => {
            assert_eq!(rejection, Rejection::HoldInvalid);
            assert!(reason.contains("hold 7 is for another request"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The held request itself still carries it out.
    let held = req(&p, &big, Some("r-held"), Some(7));
    let a = admit::admit(&e, &s, &mut batch, &held, Ok("mm"), &none, T0);
    assert_eq!(what(&a), Ok(Outcome::Allow));
    let Admission::Decided(d) = a else { panic!() };
    assert_eq!(d.carried_out, Some(7));
}

#[test]
fn a_held_order_is_the_same_hold_at_another_market_price() {
    use keygate_core::admit::hold_digest;
    use keygate_core::order::{Order, OrderKind, Reference, Side};
    let order = |at: i64, price: &str| Order {
        symbol: "BTCUSDT".into(),
        base: "BTC".into(),
        quote: "USDT".into(),
        side: Side::Buy,
        kind: OrderKind::Limit,
        venue_type: "LIMIT".into(),
        price: Some("40000".parse().unwrap()),
        quantity: Some("1".parse().unwrap()),
        quote_quantity: None,
        reference: Some(Reference {
            price: price.parse().unwrap(),
            at,
        }),
    };
    let intent = |o: Order| keygate_core::Intent {
        route: Default::default(),
        client: "mm".into(),
        venue: "binance".into(),
        action: keygate_core::Action::Trade,
        asset: Some("USDT".into()),
        amount: Some("40000".parse().unwrap()),
        destination: None,
        source_ip: None,
        token_id: None,
        order: Some(o),
    };
    let text = "POST /api/v3/order\nsymbol=BTCUSDT";
    let held = hold_digest(&intent(order(1, "39990")), text);
    assert_eq!(held, hold_digest(&intent(order(99, "40010")), text));
    let mut other = order(1, "39990");
    other.quantity = Some("2".parse().unwrap());
    assert_ne!(held, hold_digest(&intent(other), text));
}
