//! Order reconciliation against keygate-sim: the orders keygate forwarded (stamped `kg<decision
//! id>`, or with the bot's own client id) are matched to their decisions; an order placed
//! straight at the venue with the same key is an unapproved action: a critical alarm, the
//! freeze `[containment] unapproved_outflow` names, and judged once.

use axum::http::StatusCode;
use keygate_core::freeze::Scope;
use keygate_server::reconcile_orders;
use keygate_store::audit::{AuditEntry, ReconcileEvent};

use crate::setup::{SIM_KEY, SIM_SECRET, call, env};

const ORDER: &str = "/venues/binance/api/v3/order";
/// A buy below the market: it rests on the book.
const BTC_BUY: &str =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=35000";

/// A market buy of 10,000 USDT of BTC, signed with the venue key and sent straight to the venue.
async fn around_keygate(venue_url: &str) -> serde_json::Value {
    let query = format!(
        "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=10000&timestamp={}",
        keygate_server::now_ms()
    );
    let sig = keygate_venues::binance::signature(SIM_SECRET, &query);
    let r = reqwest::Client::new()
        .post(format!("{venue_url}/api/v3/order?{query}&signature={sig}"))
        .header("X-MBX-APIKEY", SIM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_keygate_forwarded_match_and_one_placed_around_it_freezes_the_venue() {
    let e = env().await;
    let auth = format!("Bearer {}", e.token);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let stamped = call(&e.app, "POST", ORDER, &h, BTC_BUY).await;
    assert_eq!(stamped.status, StatusCode::OK, "{}", stamped.json);
    let kg = stamped.decision().unwrap();
    assert_eq!(stamped.json["clientOrderId"], format!("kg{kg}"));
    let own = call(
        &e.app,
        "POST",
        ORDER,
        &h,
        format!("{BTC_BUY}&newClientOrderId=bot-1"),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.json);

    let mut setup = e.gw.venues["binance"].clone();
    setup.contain = Some(Scope::Venue("binance".into()));
    let p = reconcile_orders::pass(&e.gw, &setup).await.unwrap();
    assert_eq!((p.seen, p.matched), (2, 2), "{p:?}");
    assert!(p.unapproved.is_empty());
    assert!(e.store.freezes(false).await.unwrap().is_empty());

    // The same key, used straight at the venue.
    let placed = around_keygate(&e.venue_url).await;
    let p = reconcile_orders::pass(&e.gw, &setup).await.unwrap();
    assert_eq!((p.seen, p.matched, p.unapproved.len()), (1, 0, 1), "{p:?}");
    let row = e.store.audit_entry(p.unapproved[0]).await.unwrap().unwrap();
    let AuditEntry::Reconcile(ReconcileEvent::OrderUnapproved { order, .. }) =
        AuditEntry::from_canonical(&row.entry).unwrap()
    else {
        panic!("{}", row.entry);
    };
    assert_eq!(order.id, placed["orderId"].to_string());
    assert_eq!(
        order.filled_quote.to_string(),
        placed["cummulativeQuoteQty"].as_str().unwrap(),
        "what its fills paid"
    );
    let alert = keygate_server::alerts::alert_of(&row).unwrap();
    assert_eq!(alert["kind"], "unapproved_order", "{alert}");
    let freezes = e.store.freezes(false).await.unwrap();
    assert_eq!(freezes.len(), 1);
    assert_eq!(freezes[0].freeze.scope, Scope::Venue("binance".into()));
    assert_eq!(freezes[0].freeze.set_by, "reconcile:binance");

    // The next pass reads the same history again (it overlaps) and judges nothing twice.
    let p = reconcile_orders::pass(&e.gw, &setup).await.unwrap();
    assert_eq!(p, Default::default());
    assert_eq!(e.store.freezes(false).await.unwrap().len(), 1);
    // And keygate itself forwards nothing more to the frozen venue.
    let refused = call(&e.app, "POST", ORDER, &h, BTC_BUY).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.json);
}
