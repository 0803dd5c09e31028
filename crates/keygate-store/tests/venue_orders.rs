//! A venue's order history, judged in the store: an order keygate forwarded (an allowed trade
//! decision with its client id) is matched once; an order nothing forwarded is an unapproved
//! action, audited and frozen in the same transaction; an order is judged once. Every test runs
//! on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::borrow::Cow;

use keygate_core::decide::Stage;
use keygate_core::freeze::Scope;
use keygate_core::limits::Move;
use keygate_core::order::{Order, OrderKind, Side};
use keygate_core::venue_order::VenueOrder;
use keygate_core::{Action, Intent, Outcome};
use keygate_store::audit::{AuditEntry, DecisionEntry, NewEntry, ReconcileEvent, RequestInfo};
use keygate_store::reconcile::Reconciled;
use keygate_store::{Backend, Store, testing};
use rust_decimal::Decimal;

keygate_store::both_backends!(
    an_order_keygate_forwarded_is_matched_once_by_its_client_id,
    an_order_nothing_forwarded_is_unapproved_and_freezes_once,
);

/// An allowed trade decision for a buy of BTCUSDT on binance, recorded `at`; its client id is
/// the bot's `request_id` when given, else keygate's own `kg<seq>`.
async fn allow_trade(store: &Store, at: i64, request_id: Option<&str>) -> i64 {
    let intent = Intent {
        client: "bot".into(),
        venue: "binance".into(),
        action: Action::Trade,
        asset: Some("USDT".into()),
        amount: Some(Decimal::from(100)),
        destination: None,
        route: Default::default(),
        source_ip: None,
        token_id: None,
        order: Some(Order {
            symbol: "BTCUSDT".into(),
            base: "BTC".into(),
            quote: "USDT".into(),
            side: Side::Buy,
            kind: OrderKind::Market,
            venue_type: "MARKET".into(),
            price: None,
            quantity: None,
            quote_quantity: Some(Decimal::from(100)),
            reference: None,
        }),
    };
    let entry = AuditEntry::Decision(DecisionEntry {
        intent: Cow::Borrowed(&intent),
        outcome: Outcome::Allow,
        stage: Stage::Policy,
        reasons: Cow::Borrowed(&[]),
        policies: Cow::Borrowed(&[]),
        limits: Cow::Borrowed(&[]),
        usd_value_cents: Some(10_000),
        signals: Cow::Borrowed(&[]),
        approvals: 0,
        request: Some(RequestInfo {
            method: "POST".into(),
            path: "/api/v3/order".into(),
            request_id: request_id.map(Cow::Borrowed),
            venue_ref: request_id.map(Cow::Borrowed),
            request_text: None,
        }),
        detections: Cow::Borrowed(&[]),
    });
    let debit = Move {
        at,
        client: "bot".into(),
        venue: "binance".into(),
        asset: "USDT".into(),
        action: Action::Trade,
        amount: Decimal::from(100),
        usd_cents: 10_000,
    };
    let seqs = store
        .append_audit(vec![NewEntry::new("bot".into(), at, &entry, Some(debit))])
        .await
        .unwrap();
    seqs[0]
}

fn order(id: &str, client_id: Option<&str>, at: i64) -> VenueOrder {
    VenueOrder {
        venue: "binance".into(),
        id: id.into(),
        client_id: client_id.map(str::to_string),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        status: "FILLED".into(),
        filled_quote: Decimal::from(100),
        at,
    }
}

async fn an_order_keygate_forwarded_is_matched_once_by_its_client_id(b: Backend) {
    let (store, _dir) = testing::fresh_store(b).await;
    let at = store.clock().now() - 1_000;
    let kg = allow_trade(&store, at, None).await;
    let bot = allow_trade(&store, at, Some("bot-7")).await;
    let contain = Scope::Venue("binance".into());

    let r = store
        .reconcile_order(
            &order("1", Some(&format!("kg{kg}")), at + 10),
            Some(&contain),
        )
        .await
        .unwrap();
    assert!(
        matches!(r, Reconciled::Matched { decision_id, .. } if decision_id == kg),
        "{r:?}"
    );
    let r = store
        .reconcile_order(&order("2", Some("bot-7"), at + 20), Some(&contain))
        .await
        .unwrap();
    assert!(
        matches!(r, Reconciled::Matched { decision_id, .. } if decision_id == bot),
        "{r:?}"
    );
    // Seen again on the next (overlapping) read: nothing is written.
    let head = store.audit_head().await.unwrap().seq;
    assert_eq!(
        store
            .reconcile_order(
                &order("1", Some(&format!("kg{kg}")), at + 10),
                Some(&contain)
            )
            .await
            .unwrap(),
        Reconciled::Known
    );
    assert_eq!(store.audit_head().await.unwrap().seq, head);
    // A second order under a client id keygate used is not explained again: one decision
    // explains one order.
    let r = store
        .reconcile_order(&order("3", Some(&format!("kg{kg}")), at + 30), None)
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reconciled::Unapproved {
                freeze_id: None,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(store.freezes(false).await.unwrap().is_empty());
}

async fn an_order_nothing_forwarded_is_unapproved_and_freezes_once(b: Backend) {
    let (store, _dir) = testing::fresh_store(b).await;
    let at = store.clock().now() - 1_000;
    allow_trade(&store, at, None).await;
    let contain = Scope::Venue("binance".into());

    // No client id; a client id keygate never used; keygate's id but the wrong side.
    let mut sell = order("c", Some("kg1"), at);
    sell.side = Side::Sell;
    for o in [order("a", None, at), order("b", Some("x"), at), sell] {
        let r = store.reconcile_order(&o, Some(&contain)).await.unwrap();
        let Reconciled::Unapproved {
            audit_id,
            freeze_id: Some(freeze_id),
        } = r
        else {
            panic!("{} should be unapproved and freeze: {r:?}", o.id);
        };
        let row = store.audit_entry(audit_id).await.unwrap().unwrap();
        let AuditEntry::Reconcile(ReconcileEvent::OrderUnapproved { order, reason, .. }) =
            AuditEntry::from_canonical(&row.entry).unwrap()
        else {
            panic!("audit entry {audit_id} is {}", row.entry);
        };
        assert_eq!(order.id, o.id);
        assert!(
            reason.contains("no decision of keygate forwarded it"),
            "{reason}"
        );
        let freezes = store.freezes(false).await.unwrap();
        let f = freezes.iter().find(|f| f.freeze.id == freeze_id).unwrap();
        assert_eq!(f.freeze.scope, contain);
        assert_eq!(f.freeze.set_by, "reconcile:binance");
        assert_eq!(
            store.reconcile_order(&o, Some(&contain)).await.unwrap(),
            Reconciled::Known,
            "judged once"
        );
    }
    assert_eq!(store.freezes(false).await.unwrap().len(), 3);
}
