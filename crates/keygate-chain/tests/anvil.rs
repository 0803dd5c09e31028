//! keygate-chain against a real anvil node: transfers through keygate confirm and match,
//! leaked-key transfers (native, ERC-20, approvals) freeze on first sight, a reorg neither
//! misses nor double-counts an outflow, the watcher catches up after a restart, and the nonce
//! manager heals from dropped transactions and out-of-band nonces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use keygate_chain::adapter::tx_records;
use keygate_chain::persist::Reconciled;
use keygate_chain::testing::{
    Answer, Anvil, KEY0, KEY1, call, deploy_token, fake_node, first_send,
};
use keygate_chain::transfer::{Status, Transfers};
use keygate_chain::tx::{Key, sign};
use keygate_chain::watcher::{Event, Watcher};
use keygate_chain::{EvmVenue, Token, address_text};
use keygate_core::auth::ClientRecord;
use keygate_core::freeze::Scope;
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::time::{DAY, HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome};
use keygate_store::{Decider, DeciderOptions, OpenMode, Store};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

const VENUE: &str = "eth";
const DEST: &str = "0x00000000000000000000000000000000000000aa";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn engine() -> Arc<Engine> {
    Arc::new(Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "p.cedar".into(),
            text: "permit(principal, action, resource);".into(),
        }])
        .unwrap(),
        limits: vec![LimitSpec {
            name: "treasury-1h".into(),
            client: Selector::All,
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Transfer],
            window: HOUR,
            max_usd_cents: Some(100_000_000),
            max_amount: None,
            max_count: None,
        }],
        pinned: vec![
            ("USDT".into(), Decimal::ONE),
            ("ETH".into(), Decimal::from(3000)),
        ],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    })
}

struct Env {
    anvil: Anvil,
    store: Store,
    decider: Decider,
    transfers: Transfers,
    key: Key,
    token: Address,
    automine: bool,
    _dir: tempfile::TempDir,
}

async fn env(anvil_args: &[&str]) -> Env {
    env_on(anvil_args, false).await
}

/// The test environment, its store on the test PostgreSQL server when `postgres`.
async fn env_on(anvil_args: &[&str], postgres: bool) -> Env {
    let anvil = Anvil::start(anvil_args).await;
    let dir = tempfile::tempdir().unwrap();
    let url = if postgres {
        keygate_store::testing::fresh_postgres_url().await
    } else {
        format!("sqlite://{}/k.db", dir.path().display())
    };
    let store = Store::open(&url, OpenMode::Create).await.unwrap();
    store.migrate().await.unwrap();
    let t = now() - 2 * DAY;
    store
        .add_client(
            &ClientRecord {
                instruments: vec![],
                name: "mm".into(),
                venues: vec![VENUE.into()],
                actions: Action::ALL.to_vec(),
                tags: vec![],
                enabled: true,
            },
            "alice",
            t,
        )
        .await
        .unwrap();
    for asset in ["USDT", "ETH"] {
        let d = store
            .add_destination(VENUE, asset, DEST, "cold", HOUR, "alice", t)
            .await
            .unwrap();
        store.approve_destination(d.id, "bob", t + 1).await.unwrap();
    }
    let key = Key::from_hex(KEY0).unwrap();
    let rpc = anvil.rpc();
    // The token is deployed by another account, which funds the treasury: nothing leaves the
    // treasury before the test starts.
    let funder = Key::from_hex(KEY1).unwrap().address();
    let token = deploy_token(&rpc, funder, U256::from(1_000_000_000_000u64)).await;
    let (to, value, input) =
        keygate_chain::tx::call(Some(token), key.address(), U256::from(500_000_000_000u64));
    call(
        &rpc,
        "eth_sendTransaction",
        json!([{"from": funder, "to": to, "value": value, "input": input, "gas": "0x30000"}]),
    )
    .await;
    if anvil_args.contains(&"--no-mining") {
        call(&rpc, "evm_mine", json!([])).await;
    }
    let venue = EvmVenue {
        name: VENUE.into(),
        rpc_url: anvil.url.clone(),
        chain_id: 31337,
        credential: "eth".into(),
        confirmations: 2,
        poll: Duration::from_millis(20),
        reorg_depth: 16,
        tokens: BTreeMap::from([(
            "USDT".to_string(),
            Token {
                contract: token,
                decimals: 6,
            },
        )]),
        timeout: Duration::from_secs(5),
    };
    let decider = Decider::start(store.clone(), engine(), DeciderOptions::default());
    Env {
        transfers: Transfers::new(venue).unwrap(),
        anvil,
        store,
        decider,
        key,
        token,
        automine: !anvil_args.contains(&"--no-mining"),
        _dir: dir,
    }
}

impl Env {
    fn watcher(&self) -> (Watcher<Store>, UnboundedReceiver<Event>) {
        self.watcher_with(self.transfers.venue.clone())
    }

    /// A watcher of `venue` (the test venue with a field changed).
    /// A watcher that reaches the node at `url` (a fake node in front of anvil).
    fn watcher_at(&self, url: String) -> (Watcher<Store>, UnboundedReceiver<Event>) {
        let mut venue = self.transfers.venue.clone();
        venue.rpc_url = url;
        self.watcher_with(venue)
    }

    fn watcher_with(&self, venue: EvmVenue) -> (Watcher<Store>, UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Watcher::new(
            venue,
            self.store.clone(),
            vec![self.key.address()],
            Some(Scope::All),
        )
        .unwrap()
        .with_events(tx);
        (w, rx)
    }

    /// A transfer through keygate: plan, decide, sign and send. The decision id.
    async fn transfer(&self, asset: &str, amount: &str, client_ref: &str) -> i64 {
        let amount: Decimal = amount.parse().unwrap();
        let to: Address = DEST.parse().unwrap();
        let p = self
            .transfers
            .plan(self.key.address(), asset, to, amount)
            .await
            .unwrap();
        let d = self
            .decider
            .decide(
                Intent {
                    route: Default::default(),
                    order: None,
                    client: "mm".into(),
                    venue: VENUE.into(),
                    action: Action::Transfer,
                    asset: Some(asset.into()),
                    amount: Some(amount),
                    destination: Some(DEST.into()),
                    source_ip: None,
                    token_id: None,
                },
                self.store.clock().now(),
            )
            .await
            .unwrap();
        assert_eq!(d.verdict.outcome, Outcome::Allow, "{:?}", d.verdict.reasons);
        let s = self
            .transfers
            .execute(&self.store, &self.key, d.id, "mm", client_ref, &p)
            .await
            .unwrap();
        self.mined(&keygate_chain::hash_text(&s.hash)).await;
        d.id
    }

    /// A transfer signed with keygate's key outside keygate (the leaked-key case).
    async fn leak_native(&self, wei: u64) -> String {
        let rpc = self.anvil.rpc();
        let hash = call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": self.key.address(), "to": "0x00000000000000000000000000000000000000bb", "value": format!("{wei:#x}")}]),
        )
        .await;
        let hash = hash.as_str().unwrap().to_string();
        self.mined(&hash).await;
        hash
    }

    /// Waits until a transaction is in a block (anvil's automine answers before it is).
    async fn mined(&self, hash: &str) {
        if !self.automine {
            return;
        }
        let rpc = self.anvil.rpc();
        for _ in 0..500 {
            if rpc.receipt(&hash.parse().unwrap()).await.unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{hash} was not mined");
    }

    async fn leak_token(&self, units: u64) -> String {
        let rpc = self.anvil.rpc();
        let (to, value, input) = keygate_chain::tx::call(
            Some(self.token),
            "0x00000000000000000000000000000000000000bb"
                .parse()
                .unwrap(),
            U256::from(units),
        );
        let hash = call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": self.key.address(), "to": to, "value": value, "input": input, "gas": "0x30000"}]),
        )
        .await;
        let hash = hash.as_str().unwrap().to_string();
        self.mined(&hash).await;
        hash
    }

    async fn freezes(&self) -> usize {
        self.store.freezes(false).await.unwrap().len()
    }

    /// The audited alarms (`alarm` entries) with this event.
    async fn alarms(&self, event: &str) -> Vec<serde_json::Value> {
        self.store
            .audit_tail(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "alarm")
            .map(|r| r.data())
            .filter(|d| d["event"] == event)
            .collect()
    }
}

/// A fake node in front of anvil that answers `eth_getLogs` with `answer()` while the flag it
/// returns is set, and passes everything else on. Its URL and the flag.
async fn logs_switch(
    e: &Env,
    answer: fn() -> Answer,
) -> (String, Arc<std::sync::atomic::AtomicBool>) {
    let on = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = on.clone();
    let url = fake_node(Some(e.anvil.url.clone()), move |method, _| {
        if method == "eth_getLogs" && flag.load(std::sync::atomic::Ordering::SeqCst) {
            answer()
        } else {
            Answer::Forward
        }
    })
    .await;
    (url, on)
}

fn drain(rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

async fn mine(e: &Env, n: u64) {
    for _ in 0..n {
        call(&e.anvil.rpc(), "evm_mine", json!([])).await;
    }
}

#[tokio::test]
async fn a_transfer_through_keygate_confirms_and_matches_without_an_alarm() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    let usdt = e.transfer("USDT", "72.5", "r1").await;
    let eth = e.transfer("ETH", "0.25", "r2").await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    assert_eq!(events.len(), 2, "{events:?}");
    let matched: Vec<i64> = events
        .iter()
        .map(|ev| match ev.result {
            Reconciled::Matched { decision_id, .. } => decision_id,
            ref other => panic!("not matched: {other:?} {:?}", ev.outflow),
        })
        .collect();
    assert_eq!(matched, vec![usdt, eth]);
    assert_eq!(events[0].outflow.amount, "72.5".parse::<Decimal>().unwrap());
    assert_eq!(e.freezes().await, 0);
    // The newest one is confirmed at depth 2 only once another block is on top.
    let row = e.store.evm_transfer(eth).await.unwrap().unwrap();
    let txs = e.store.evm_txs(eth).await.unwrap();
    let s = e
        .transfers
        .status(&e.store, &(&row).into(), &tx_records(&txs))
        .await
        .unwrap();
    assert!(
        matches!(
            s,
            Status::Pending {
                confirmations: 1..,
                ..
            }
        ),
        "{s:?}"
    );
    mine(&e, 1).await;
    let s = e
        .transfers
        .status(&e.store, &(&row).into(), &tx_records(&txs))
        .await
        .unwrap();
    assert!(matches!(s, Status::Confirmed { .. }), "{s:?}");
    let bal = e.anvil.rpc().balance(&DEST.parse().unwrap()).await.unwrap();
    assert_eq!(bal, U256::from(250_000_000_000_000_000u64));
}

#[tokio::test]
async fn leaked_key_transfers_and_approvals_freeze_on_first_sight() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    let native = e.leak_native(1_000).await;
    let token = e.leak_token(72_000_000).await;
    // An approval to a spender outside the address book, and one to the book's address.
    let rpc = e.anvil.rpc();
    for spender in ["0x00000000000000000000000000000000000000cc", DEST] {
        let input = format!(
            "0x095ea7b3{:0>64}{:064x}",
            spender.trim_start_matches("0x"),
            5u8
        );
        let h = call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": e.key.address(), "to": e.token, "input": input, "gas": "0x30000"}]),
        )
        .await;
        e.mined(h.as_str().unwrap()).await;
    }
    w.step().await.unwrap();
    let events = drain(&mut rx);
    let unapproved: Vec<(String, String)> = events
        .iter()
        .filter(|ev| {
            matches!(
                ev.result,
                Reconciled::Unapproved {
                    freeze_id: Some(_),
                    ..
                }
            )
        })
        .map(|ev| (ev.outflow.id.clone(), ev.outflow.asset.clone()))
        .collect();
    // The native transfer; the token transfer's tx (sent outside keygate) and its Transfer log;
    // each approval's tx; the approval to the unknown spender.
    assert!(
        unapproved.contains(&(native.clone(), "ETH".into())),
        "{unapproved:?}"
    );
    assert!(
        unapproved.contains(&(format!("{token}:0"), "USDT".into())),
        "{unapproved:?}"
    );
    assert!(
        unapproved.iter().any(|(_, a)| a == "allowance:USDT"),
        "{unapproved:?}"
    );
    assert_eq!(
        unapproved
            .iter()
            .filter(|(_, a)| a == "allowance:USDT")
            .count(),
        1,
        "an allowance to an address-book entry is no outflow: {unapproved:?}"
    );
    assert_eq!(unapproved.len(), events.len());
    assert!(e.freezes().await >= 1);
    // A freeze makes every decision deny.
    let d = e
        .decider
        .decide(
            Intent {
                route: Default::default(),
                order: None,
                client: "mm".into(),
                venue: VENUE.into(),
                action: Action::Transfer,
                asset: Some("USDT".into()),
                amount: Some(Decimal::ONE),
                destination: Some(DEST.into()),
                source_ip: None,
                token_id: None,
            },
            e.store.clock().now(),
        )
        .await
        .unwrap();
    assert_eq!(d.verdict.outcome, Outcome::Deny);
}

#[tokio::test]
async fn a_reorg_misses_no_outflow_and_counts_none_twice() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    let rpc = e.anvil.rpc();
    let snap = call(&rpc, "evm_snapshot", json!([])).await;
    // Branch A: a keygate transfer and a leaked one.
    let ours = e.transfer("USDT", "10", "a1").await;
    assert!(
        e.store
            .evm_transfer(ours)
            .await
            .unwrap()
            .unwrap()
            .tx_hash
            .is_some()
    );
    let leaked_a = e.leak_native(7).await;
    w.step().await.unwrap();
    let first = drain(&mut rx);
    assert_eq!(first.len(), 2, "{first:?}");
    // Revert to before both, then branch B: a new leaked transaction, and more blocks than
    // branch A had. (The same transaction re-included elsewhere: the next test.)
    call(&rpc, "evm_revert", json!([snap])).await;
    let leaked_b = e.leak_native(9).await;
    mine(&e, 3).await;
    w.step().await.unwrap();
    let second = drain(&mut rx);
    let ids: Vec<&str> = second.iter().map(|ev| ev.outflow.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![leaked_b.as_str()],
        "only the new outflow is judged: {second:?}"
    );
    let rows: i64 = sqlx_count(&e.store, "SELECT COUNT(*) FROM venue_withdrawals").await;
    assert_eq!(rows, 3, "ours, leaked_a, leaked_b each once");
    assert_ne!(leaked_a, leaked_b);
    // The watcher's view is the new branch.
    let head = rpc.latest().await.unwrap();
    assert_eq!(w.last().unwrap().1, head.hash);
}

async fn sqlx_count(store: &Store, sql: &'static str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test]
async fn the_same_transaction_in_a_replacing_block_is_judged_once() {
    // Automine off: the leaked transaction is mined in block N, the chain reverts, and the very
    // same signed transaction is mined again in a different block N'.
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    let rpc = e.anvil.rpc();
    let leaker = Key::from_hex(KEY0).unwrap();
    let nonce = rpc.nonce(&leaker.address(), "pending").await.unwrap();
    let (base, tip) = rpc.fees().await.unwrap();
    let plan = keygate_chain::tx::Plan {
        chain_id: 31337,
        from: leaker.address(),
        to: "0x00000000000000000000000000000000000000bb"
            .parse()
            .unwrap(),
        value: U256::from(5u8),
        input: Default::default(),
        gas_limit: 21_000,
        max_fee_per_gas: base * 3 + tip,
        max_priority_fee_per_gas: tip,
    };
    let signed = sign(&leaker, &plan, nonce).unwrap();
    let snap = call(&rpc, "evm_snapshot", json!([])).await;
    rpc.send_raw(&signed.raw).await.unwrap();
    e.mined(&keygate_chain::hash_text(&signed.hash)).await;
    w.step().await.unwrap();
    let block_a = w.last().unwrap();
    call(&rpc, "evm_revert", json!([snap])).await;
    mine(&e, 1).await; // a different block at the same height
    rpc.send_raw(&signed.raw).await.unwrap();
    e.mined(&keygate_chain::hash_text(&signed.hash)).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_ne!(w.last().unwrap().1, block_a.1);
    let receipt = rpc.receipt(&signed.hash).await.unwrap().unwrap();
    assert!(receipt.block_number.to::<u64>() > block_a.0);
    assert_eq!(
        sqlx_count(&e.store, "SELECT COUNT(*) FROM venue_withdrawals").await,
        1
    );
}

#[tokio::test]
async fn the_watcher_catches_up_from_its_checkpoint_after_a_restart() {
    let e = env(&[]).await;
    {
        let (mut w, _rx) = e.watcher();
        w.step().await.unwrap();
    }
    // keygate is down while blocks are mined, some with leaked transfers.
    let mut leaked = vec![];
    for i in 0..3 {
        leaked.push(e.leak_native(100 + i).await);
        mine(&e, 2).await;
    }
    let (mut w, mut rx) = e.watcher();
    let n = w.step().await.unwrap();
    assert!(n >= 9, "judged {n} blocks");
    let ids: Vec<String> = drain(&mut rx).into_iter().map(|ev| ev.outflow.id).collect();
    assert_eq!(ids, leaked);
    // A second restart judges nothing again.
    let (mut w, mut rx) = e.watcher();
    assert_eq!(w.step().await.unwrap(), 0);
    assert!(drain(&mut rx).is_empty());
}

impl Env {
    async fn status(&self, id: i64) -> Status {
        self.status_with(&self.transfers, id).await
    }

    async fn status_with(&self, transfers: &Transfers, id: i64) -> Status {
        let row = self.store.evm_transfer(id).await.unwrap().unwrap();
        let txs = self.store.evm_txs(id).await.unwrap();
        transfers
            .status(&self.store, &(&row).into(), &tx_records(&txs))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_dropped_transaction_is_sent_again_byte_for_byte_and_its_nonce_is_never_reused() {
    let e = env(&["--no-mining"]).await;
    let rpc = e.anvil.rpc();
    // A first transfer stays pending; the node then drops it (as after a restart or eviction).
    let first = e.transfer("USDT", "1", "n1").await;
    let row = e.store.evm_transfer(first).await.unwrap().unwrap();
    assert_eq!(row.nonce, Some(0));
    let first_hash: alloy::primitives::B256 = row.tx_hash.clone().unwrap().parse().unwrap();
    call(&rpc, "anvil_dropAllTransactions", json!([])).await;
    assert!(rpc.transaction(&first_hash).await.unwrap().is_none());
    // The next transfer takes the next nonce, not the dropped one's: the dropped transaction
    // may still be in some pool, and two transfers at one nonce could both be wanted but only
    // one paid, or (signed anew) both paid. The dropped one's bytes are sent again first.
    let second = e.transfer("USDT", "2", "n2").await;
    let row2 = e.store.evm_transfer(second).await.unwrap().unwrap();
    assert_eq!(row2.nonce, Some(1));
    assert!(
        rpc.transaction(&first_hash).await.unwrap().is_some(),
        "the dropped transaction was sent again"
    );
    assert_eq!(
        e.store.evm_txs(first).await.unwrap().len(),
        1,
        "nothing new was signed for the dropped transfer"
    );
    mine(&e, 2).await;
    for id in [first, second] {
        let s = e.status(id).await;
        assert!(matches!(s, Status::Confirmed { .. }), "{id}: {s:?}");
    }
    // Dropped again after it was asked about: a status read sends it again too.
    let third = e.transfer("USDT", "3", "n3").await;
    call(&rpc, "anvil_dropAllTransactions", json!([])).await;
    let s = e.status(third).await;
    assert!(
        matches!(&s, Status::Pending { note: Some(n), .. } if n.contains("sent the same transaction again")),
        "{s:?}"
    );
    mine(&e, 2).await;
    assert!(matches!(e.status(third).await, Status::Confirmed { .. }));
    // The same key used outside keygate takes the next nonces; keygate follows the node.
    for _ in 0..2 {
        e.leak_native(1).await;
    }
    mine(&e, 1).await;
    let fourth = e.transfer("USDT", "4", "n4").await;
    mine(&e, 2).await;
    let row4 = e.store.evm_transfer(fourth).await.unwrap().unwrap();
    assert_eq!(row4.nonce, Some(5));
    assert!(matches!(e.status(fourth).await, Status::Confirmed { .. }));
}

#[tokio::test]
async fn a_node_that_is_down_refuses_before_any_decision() {
    let mut e = env(&[]).await;
    e.anvil.stop();
    let err = e
        .transfers
        .plan(e.key.address(), "USDT", DEST.parse().unwrap(), Decimal::ONE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, keygate_chain::transfer::PlanError::NodeDown(_)),
        "{err}"
    );
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    let (mut w, _rx) = e.watcher();
    assert!(w.step().await.is_err());
    let _ = address_text(&e.key.address());
}

#[tokio::test]
async fn a_transfer_mined_an_hour_after_its_decision_still_matches() {
    let e = env(&["--no-mining"]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    let id = e.transfer("USDT", "5", "late-1").await;
    // The transaction waits in the pool; the block that finally includes it is an hour later.
    call(&e.anvil.rpc(), "evm_increaseTime", json!([3600])).await;
    mine(&e, 1).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0].result, Reconciled::Matched { decision_id, .. } if decision_id == id),
        "{events:?}"
    );
    assert_eq!(e.freezes().await, 0);
}

/// A proxy in front of anvil that, on the first `eth_sendRawTransaction`, first spends the
/// treasury's next nonce with a transaction of its own (the key used elsewhere at that very
/// moment) and mines it, so anvil itself answers "nonce too low" to keygate's transaction.
async fn racing_proxy(upstream: String, treasury: Address) -> String {
    let spend = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
        "params": [{"from": treasury, "to": "0x00000000000000000000000000000000000000bb", "value": "0x1"}]});
    let mine = json!({"jsonrpc": "2.0", "id": 2, "method": "evm_mine", "params": []});
    fake_node(
        Some(upstream),
        first_send(move || Answer::After(vec![spend.clone(), mine.clone()])),
    )
    .await
}

/// A proxy's error that says nothing about whether the transaction went out.
fn unclear() -> Answer {
    Answer::Error(-32603, "upstream request timeout".into())
}

#[tokio::test]
async fn a_nonce_used_elsewhere_at_the_send_is_never_signed_again_and_fails_once_confirmed() {
    // The key is used outside keygate at the very moment keygate sends: anvil answers "nonce
    // too low". keygate's transaction may be the one that used it (sent meanwhile by another
    // instance), so the transfer is never signed again: the chain decides it.
    let e = env(&[]).await;
    let transfers = through(&e, racing_proxy(e.anvil.url.clone(), e.key.address()).await);
    let (id, r) = send_with(&e, &transfers, "1", "race-1").await;
    let err = r.unwrap_err();
    assert_eq!(err.maybe_pending().map(|p| p.1), Some(0), "{err}");
    let txs = e.store.evm_txs(id).await.unwrap();
    assert_eq!(txs.len(), 1, "signed once");
    assert_eq!(txs[0].outcome, "unknown");
    assert_eq!(
        e.store.evm_transfer(id).await.unwrap().unwrap().state,
        "unknown"
    );
    // The block that used the nonce is confirmed (the proxy mined one on top): failed for
    // good, nothing paid. (Before it is confirmed, it is pending: see
    // a_lost_send_whose_nonce_is_used_elsewhere_fails_for_good_and_paid_nothing.)
    let s = e.status(id).await;
    assert!(
        matches!(&s, Status::Failed { reason, .. } if reason.contains("nothing was paid")),
        "{s:?}"
    );
}

#[tokio::test]
async fn two_transfers_of_the_same_payment_never_share_bytes() {
    // A is refused outright (the node is out of funds for it); B, the same payment an instant
    // later at the same nonce and fees, would have A's very bytes: it pays one wei more tip.
    let e = env(&["--no-mining"]).await;
    let refusing = first_send_through(&e, || {
        Answer::Error(-32000, "insufficient funds for gas * price + value".into())
    })
    .await;
    let (a, r) = send_with(&e, &refusing, "9", "same-a").await;
    assert!(!r.unwrap_err().maybe_out());
    let (b, r) = send_with(&e, &refusing, "9", "same-b").await;
    let sent = r.unwrap();
    assert_eq!(sent.nonce, 0, "A gave its nonce back");
    let (ta, tb) = (
        e.store.evm_txs(a).await.unwrap(),
        e.store.evm_txs(b).await.unwrap(),
    );
    assert_eq!((ta.len(), tb.len()), (1, 1));
    assert_ne!(ta[0].tx_hash, tb[0].tx_hash);
    assert_eq!(ta[0].outcome, "refused");
    mine(&e, 2).await;
    assert!(matches!(e.status(b).await, Status::Confirmed { .. }));
    let s = e.status(a).await;
    assert!(matches!(s, Status::Failed { .. }), "{s:?}");
}

#[tokio::test]
async fn a_dropped_transaction_the_node_refuses_again_gives_its_nonce_back() {
    // A is in the pool, then dropped; sent again, the node refuses it outright (its fee is now
    // below the base fee). Its nonce is given back so nothing jams behind it: B takes it, and
    // A, never signed again, fails once B's block is confirmed.
    let e = env(&["--no-mining"]).await;
    let a = e.transfer("USDT", "4", "jam-a").await;
    call(&e.anvil.rpc(), "anvil_dropAllTransactions", json!([])).await;
    let refusing = first_send_through(&e, || {
        Answer::Error(-32000, "max fee per gas less than block base fee".into())
    })
    .await;
    let (b, r) = send_with(&e, &refusing, "5", "jam-b").await;
    assert_eq!(r.unwrap().nonce, 0, "B took A's nonce");
    mine(&e, 2).await;
    assert!(matches!(e.status(b).await, Status::Confirmed { .. }));
    let s = e.status(a).await;
    assert!(
        matches!(&s, Status::Failed { reason, .. } if reason.contains("nothing was paid")),
        "{s:?}"
    );
    assert_eq!(e.store.evm_txs(a).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_dropped_transaction_that_cannot_be_sent_again_holds_new_sends_instead_of_a_gap() {
    // Sent again, A gets an error keygate does not know (a proxy's?): A keeps its nonce, and
    // B is refused with nothing signed rather than signed above a gap it would wait behind.
    let e = env(&["--no-mining"]).await;
    let a = e.transfer("USDT", "4", "gap-a").await;
    call(&e.anvil.rpc(), "anvil_dropAllTransactions", json!([])).await;
    let odd = first_send_through(&e, || {
        Answer::Error(-32000, "something no node says".into())
    })
    .await;
    let (b, r) = send_with(&e, &odd, "5", "gap-b").await;
    assert!(
        matches!(
            r,
            Err(keygate_chain::nonce::SendError::Blocked { nonce: 0 })
        ),
        "{r:?}"
    );
    assert!(
        e.store.evm_txs(b).await.unwrap().is_empty(),
        "nothing signed"
    );
    // The node takes A's bytes again: the next transfer goes out behind it, and both confirm.
    let (c, r) = send_with(&e, &odd, "6", "gap-c").await;
    assert_eq!(r.unwrap().nonce, 1);
    mine(&e, 2).await;
    assert!(matches!(e.status(a).await, Status::Confirmed { .. }));
    assert!(matches!(e.status(c).await, Status::Confirmed { .. }));
    assert_eq!(e.store.evm_txs(a).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_transfer_left_signing_is_given_up_only_if_no_send_took_a_nonce_since() {
    let e = env(&[]).await;
    let old = e.store.clock().now() - 10 * MINUTE;
    for id in [900_001, 900_002] {
        e.store
            .evm_transfer_begin(&keygate_store::NewEvmTransfer {
                decision_id: id,
                venue: VENUE,
                client: "mm",
                client_ref: &format!("left-{id}"),
                asset: "USDT",
                amount: "1",
                destination: DEST,
                from_address: &address_text(&e.key.address()),
                at_ms: old,
            })
            .await
            .unwrap();
    }
    // Given up: a late sender then sends nothing.
    let s = e.status(900_001).await;
    assert!(
        matches!(&s, Status::Failed { reason, .. } if reason.contains("gave the transfer up")),
        "{s:?}"
    );
    let p = e
        .transfers
        .plan(e.key.address(), "USDT", DEST.parse().unwrap(), Decimal::ONE)
        .await
        .unwrap();
    let late = e
        .transfers
        .nonces
        .send(
            &e.transfers.rpc,
            &e.store,
            &e.key,
            &p.plan,
            900_001,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(late, Err(keygate_chain::nonce::SendError::Abandoned)),
        "{late:?}"
    );
    assert!(e.store.evm_txs(900_001).await.unwrap().is_empty());
    // A read that saw the transfer before a send took a nonce cannot give it up after.
    let seen = e.store.evm_transfer(900_002).await.unwrap().unwrap();
    e.transfers
        .nonces
        .send(
            &e.transfers.rpc,
            &e.store,
            &e.key,
            &p.plan,
            900_002,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(
        !e.store
            .evm_transfer_abandon(900_002, seen.attempts, "x")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_zero_transfer_from_the_treasury_by_anyone_freezes_nothing() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    let rpc = e.anvil.rpc();
    let accounts = call(&rpc, "eth_accounts", json!([])).await;
    let stranger = accounts[1].as_str().unwrap().to_string();
    // transferFrom(treasury, stranger, 0): allowed for anyone on common tokens, and it emits
    // Transfer(treasury, stranger, 0), the address-poisoning trick.
    let treasury = format!("{:?}", e.key.address());
    let input = format!(
        "0x23b872dd{:0>64}{:0>64}{:064x}",
        treasury.trim_start_matches("0x"),
        stranger.trim_start_matches("0x"),
        0u8
    );
    let h = call(
        &rpc,
        "eth_sendTransaction",
        json!([{"from": stranger, "to": e.token, "input": input, "gas": "0x30000"}]),
    )
    .await;
    e.mined(h.as_str().unwrap()).await;
    // It did succeed, and did log a Transfer from the treasury (else this test proves nothing).
    let receipt = call(&rpc, "eth_getTransactionReceipt", json!([h])).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let logs = receipt["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{receipt}");
    assert!(
        logs[0]["topics"][1]
            .as_str()
            .unwrap()
            .ends_with(&treasury.trim_start_matches("0x").to_lowercase()),
        "{receipt}"
    );
    w.step().await.unwrap();
    let events = drain(&mut rx);
    assert!(
        events.is_empty(),
        "{:?}",
        events.iter().map(|e| &e.outflow).collect::<Vec<_>>()
    );
    assert_eq!(e.freezes().await, 0, "anyone could freeze the firm");
}

#[tokio::test]
async fn code_at_the_treasury_a_7702_delegation_freezes_on_first_sight() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    let rpc = e.anvil.rpc();
    // What an EIP-7702 authorization signed by a leaked key leaves at the treasury: a delegation
    // designator to the thief's contract (set directly: anvil's setCode stands in for the
    // type-4 transaction someone else would send).
    let delegate = "00000000000000000000000000000000000bad01";
    call(
        &rpc,
        "anvil_setCode",
        json!([e.key.address(), format!("0xef0100{delegate}")]),
    )
    .await;
    call(&rpc, "evm_mine", json!([])).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    let code: Vec<&Event> = events
        .iter()
        .filter(|ev| ev.outflow.asset == "code")
        .collect();
    assert_eq!(
        code.len(),
        1,
        "{:?}",
        events.iter().map(|e| &e.outflow).collect::<Vec<_>>()
    );
    assert_eq!(code[0].outflow.destination, format!("0x{delegate}"));
    assert!(matches!(
        code[0].result,
        Reconciled::Unapproved {
            freeze_id: Some(_),
            ..
        }
    ));
    assert!(e.freezes().await >= 1);
    // Judged once: the next blocks with the same code add nothing.
    call(&rpc, "evm_mine", json!([])).await;
    w.step().await.unwrap();
    assert!(drain(&mut rx).iter().all(|ev| ev.outflow.asset != "code"));
}

/// Plans, decides and executes one USDT transfer with `transfers` (not waiting for a block).
async fn send_with(
    e: &Env,
    transfers: &Transfers,
    amount: &str,
    client_ref: &str,
) -> (
    i64,
    Result<keygate_chain::tx::Signed, keygate_chain::nonce::SendError>,
) {
    let amount: Decimal = amount.parse().unwrap();
    let p = transfers
        .plan(e.key.address(), "USDT", DEST.parse().unwrap(), amount)
        .await
        .unwrap();
    let intent = Intent {
        route: Default::default(),
        order: None,
        client: "mm".into(),
        venue: VENUE.into(),
        action: Action::Transfer,
        asset: Some("USDT".into()),
        amount: Some(amount),
        destination: Some(DEST.into()),
        source_ip: None,
        token_id: None,
    };
    let d = e
        .decider
        .decide(intent, e.store.clock().now())
        .await
        .unwrap();
    assert_eq!(d.verdict.outcome, Outcome::Allow);
    let r = transfers
        .execute(&e.store, &e.key, d.id, "mm", client_ref, &p)
        .await;
    (d.id, r)
}

/// Transfers through a fake node in front of anvil that answers the first
/// `eth_sendRawTransaction` with `then()`.
async fn first_send_through(
    e: &Env,
    then: impl Fn() -> Answer + Send + Sync + 'static,
) -> Transfers {
    through(
        e,
        fake_node(Some(e.anvil.url.clone()), first_send(then)).await,
    )
}

fn through(e: &Env, url: String) -> Transfers {
    let mut venue = e.transfers.venue.clone();
    venue.rpc_url = url;
    Transfers::new(venue).unwrap()
}

#[tokio::test]
async fn a_send_with_no_clear_answer_is_pending_and_never_signed_again() {
    // The node took the transaction but the answer was lost: the transfer is unknown, not
    // failed, and it confirms without a second transaction.
    let e = env(&["--no-mining"]).await;
    let transfers = first_send_through(&e, || Answer::ForwardThen(Box::new(unclear()))).await;
    let (id, r) = send_with(&e, &transfers, "5", "lost-answer").await;
    let err = r.unwrap_err();
    assert!(err.maybe_out(), "{err}");
    let row = e.store.evm_transfer(id).await.unwrap().unwrap();
    assert_eq!(row.state, "unknown");
    assert_eq!(
        row.nonce,
        Some(0),
        "the transaction that may be pending is recorded"
    );
    assert!(row.tx_hash.is_some());
    let s = e.status_with(&transfers, id).await;
    assert!(matches!(s, Status::Pending { .. }), "{s:?}");
    // The next transfer does not take its nonce.
    let (next, r) = send_with(&e, &transfers, "6", "after-lost").await;
    assert_eq!(r.unwrap().nonce, 1);
    mine(&e, 2).await;
    assert!(matches!(e.status(id).await, Status::Confirmed { .. }));
    assert!(matches!(e.status(next).await, Status::Confirmed { .. }));
    assert_eq!(e.store.evm_txs(id).await.unwrap().len(), 1);

    // The send never reached the node and the answer was lost: a status read sends the same
    // bytes, and it confirms.
    let transfers = first_send_through(&e, unclear).await;
    let (id, r) = send_with(&e, &transfers, "7", "swallowed").await;
    assert!(r.unwrap_err().maybe_out());
    let s = e.status(id).await;
    assert!(
        matches!(&s, Status::Pending { note: Some(n), .. } if n.contains("sent the same transaction again")),
        "{s:?}"
    );
    mine(&e, 2).await;
    assert!(matches!(e.status(id).await, Status::Confirmed { .. }));
    assert_eq!(e.store.evm_txs(id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_lost_send_whose_nonce_is_used_elsewhere_fails_for_good_and_paid_nothing() {
    let e = env(&["--no-mining"]).await;
    let transfers = first_send_through(&e, unclear).await;
    let (id, r) = send_with(&e, &transfers, "8", "used-elsewhere").await;
    assert_eq!(r.unwrap_err().maybe_pending().map(|p| p.1), Some(0));
    // The key, used outside keygate, takes nonce 0 before keygate's transaction is mined.
    e.leak_native(1).await;
    mine(&e, 1).await;
    // Not final before the block using the nonce is confirmed (a reorg could undo it)...
    let row = e.store.evm_transfer(id).await.unwrap().unwrap();
    let txs = e.store.evm_txs(id).await.unwrap();
    let early = e
        .transfers
        .status(&e.store, &(&row).into(), &tx_records(&txs))
        .await
        .unwrap();
    assert!(!matches!(early, Status::Failed { .. }), "{early:?}");
    mine(&e, 1).await;
    let s = e.status(id).await;
    assert!(
        matches!(&s, Status::Failed { reason, .. } if reason.contains("nothing was paid")),
        "{s:?}"
    );
    let rpc = e.anvil.rpc();
    let bal = rpc.balance(&DEST.parse().unwrap()).await.unwrap();
    assert_eq!(bal, U256::ZERO, "the destination got no ETH");
    assert_eq!(
        e.store.evm_txs(id).await.unwrap().len(),
        1,
        "never signed again"
    );
}

#[tokio::test]
async fn two_instances_sharing_a_key_never_sign_two_transfers_at_one_nonce() {
    two_instances(false, false).await;
}

#[tokio::test]
async fn two_instances_sharing_a_key_and_a_postgres_store_never_sign_two_transfers_at_one_nonce() {
    two_instances(true, false).await;
}

#[tokio::test]
async fn two_instances_sharing_a_key_on_a_chain_that_mines_at_once_pay_each_transfer_once() {
    two_instances(false, true).await;
}

async fn two_instances(postgres: bool, automine: bool) {
    let e = env_on(if automine { &[] } else { &["--no-mining"] }, postgres).await;
    // Instance B reaches the node through a lagging backend: its pending nonce is always 0.
    let lagging = |method: &str, params: &serde_json::Value| {
        if method == "eth_getTransactionCount" && params[1] == "pending" {
            Answer::Result(json!("0x0"))
        } else {
            Answer::Forward
        }
    };
    let a = through(&e, e.anvil.url.clone());
    let b = through(&e, fake_node(Some(e.anvil.url.clone()), lagging).await);
    let mut ids = vec![];
    for round in 0..4 {
        let (ra, rb) = (format!("a{round}"), format!("b{round}"));
        let (x, y) = tokio::join!(send_with(&e, &a, "1", &ra), send_with(&e, &b, "1", &rb));
        for (id, r) in [x, y] {
            r.unwrap();
            ids.push(id);
        }
    }
    let mut nonces = vec![];
    for id in &ids {
        nonces.push(
            e.store
                .evm_transfer(*id)
                .await
                .unwrap()
                .unwrap()
                .nonce
                .unwrap(),
        );
    }
    nonces.sort();
    assert_eq!(nonces, (0..8).collect::<Vec<i64>>());
    mine(&e, 2).await;
    for id in ids {
        let s = e.status(id).await;
        assert!(matches!(s, Status::Confirmed { .. }), "{id}: {s:?}");
    }
    assert_eq!(
        token_balance(&e, DEST).await,
        U256::from(8_000_000u64),
        "each transfer paid once"
    );
}

/// The test token's balance of `who`.
async fn token_balance(e: &Env, who: &str) -> U256 {
    let input = format!("0x70a08231{:0>64}", who.trim_start_matches("0x"));
    let v = call(
        &e.anvil.rpc(),
        "eth_call",
        json!([{"to": e.token, "input": input}, "latest"]),
    )
    .await;
    U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test]
async fn an_approval_to_a_book_entry_of_another_asset_or_venue_freezes() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    drain(&mut rx);
    // Active address-book entries, but not for this venue's USDT: one for ETH at this venue,
    // one for USDT at another venue.
    let t = now() - 2 * DAY;
    let eth_only = "0x00000000000000000000000000000000000000e1";
    let other_venue = "0x00000000000000000000000000000000000000e2";
    for (venue, asset, address) in [(VENUE, "ETH", eth_only), ("other", "USDT", other_venue)] {
        let d = e
            .store
            .add_destination(venue, asset, address, "elsewhere", HOUR, "alice", t)
            .await
            .unwrap();
        e.store
            .approve_destination(d.id, "bob", t + 1)
            .await
            .unwrap();
    }
    let rpc = e.anvil.rpc();
    for spender in [eth_only, other_venue] {
        let input = format!(
            "0x095ea7b3{:0>64}{:064x}",
            spender.trim_start_matches("0x"),
            5u8
        );
        let h = call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": e.key.address(), "to": e.token, "input": input, "gas": "0x30000"}]),
        )
        .await;
        e.mined(h.as_str().unwrap()).await;
    }
    w.step().await.unwrap();
    let allowances: Vec<String> = drain(&mut rx)
        .into_iter()
        .filter(|ev| ev.outflow.asset == "allowance:USDT")
        .filter(|ev| matches!(ev.result, Reconciled::Unapproved { .. }))
        .map(|ev| ev.outflow.destination)
        .collect();
    assert_eq!(
        allowances,
        vec![eth_only.to_string(), other_venue.to_string()],
        "an entry for ETH, or for another venue, does not vouch for a USDT spender"
    );
}

#[tokio::test]
async fn a_reorg_deeper_than_reorg_depth_re_judges_the_new_branch_from_the_fork() {
    let e = env(&[]).await;
    let mut venue = e.transfers.venue.clone();
    venue.reorg_depth = 3;
    let (mut w, mut rx) = e.watcher_with(venue);
    w.step().await.unwrap();
    let rpc = e.anvil.rpc();
    let snap = call(&rpc, "evm_snapshot", json!([])).await;
    // Branch A: ten empty blocks, all judged; the watcher keeps only the last three densely.
    mine(&e, 10).await;
    w.step().await.unwrap();
    assert!(drain(&mut rx).is_empty());
    // Branch B, longer: a leaked transfer in its third block, far below the kept window.
    call(&rpc, "evm_revert", json!([snap])).await;
    mine(&e, 2).await;
    let leaked = e.leak_native(11).await;
    mine(&e, 10).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    let judged: Vec<&str> = events
        .iter()
        .filter(|ev| matches!(ev.result, Reconciled::Unapproved { .. }))
        .map(|ev| ev.outflow.id.as_str())
        .collect();
    assert_eq!(judged, vec![leaked.as_str()], "{events:?}");
    assert!(e.freezes().await >= 1);
    // The fork was within what the watcher can re-check: no alarm about a gap.
    assert!(e.alarms("chain.reorg_beyond_history").await.is_empty());
    assert_eq!(w.last().unwrap().1, rpc.latest().await.unwrap().hash);
}

#[tokio::test]
async fn a_reorg_below_everything_the_watcher_kept_is_an_alarm_and_freezes() {
    let e = env(&[]).await;
    let rpc = e.anvil.rpc();
    let snap = call(&rpc, "evm_snapshot", json!([])).await;
    mine(&e, 2).await;
    // The watcher's first block is above the snapshot: a fork below it cannot be re-checked.
    let mut venue = e.transfers.venue.clone();
    venue.reorg_depth = 3;
    let (mut w, mut rx) = e.watcher_with(venue);
    w.step().await.unwrap();
    mine(&e, 5).await;
    w.step().await.unwrap();
    assert!(drain(&mut rx).is_empty());
    assert_eq!(e.freezes().await, 0);
    call(&rpc, "evm_revert", json!([snap])).await;
    mine(&e, 2).await;
    let leaked = e.leak_native(13).await;
    mine(&e, 10).await;
    w.step().await.unwrap();
    let alarms = e.alarms("chain.reorg_beyond_history").await;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["severity"], "critical");
    assert!(e.freezes().await >= 1, "the containment freeze is set");
    // What it can still see of the new branch is judged.
    let ids: Vec<String> = drain(&mut rx).into_iter().map(|ev| ev.outflow.id).collect();
    assert!(ids.contains(&leaked), "{ids:?}");
    // Once: the next steps raise nothing more.
    mine(&e, 1).await;
    w.step().await.unwrap();
    assert_eq!(e.alarms("chain.reorg_beyond_history").await.len(), 1);
}

#[tokio::test]
async fn logs_a_lagging_backend_leaves_out_are_an_error_not_an_empty_block() {
    use std::sync::atomic::Ordering;
    let e = env(&[]).await;
    // A load-balanced node: while `lagging`, the backend that answers eth_getLogs does not have
    // the block yet and answers [] (as such backends do), everything else is current.
    let (url, lagging) = logs_switch(&e, || Answer::Result(json!([]))).await;
    let (mut w, mut rx) = e.watcher_at(url);
    w.step().await.unwrap();
    // Tokens arriving at the treasury: its address is in the block's bloom, yet no log is from
    // it. That is no error (else every deposit would stall the watcher).
    let rpc = e.anvil.rpc();
    let funder = Key::from_hex(KEY1).unwrap().address();
    let (to, value, input) =
        keygate_chain::tx::call(Some(e.token), e.key.address(), U256::from(1_000u64));
    let h = call(
        &rpc,
        "eth_sendTransaction",
        json!([{"from": funder, "to": to, "value": value, "input": input, "gas": "0x30000"}]),
    )
    .await;
    e.mined(h.as_str().unwrap()).await;
    assert_eq!(w.step().await.unwrap(), 1);
    assert!(drain(&mut rx).is_empty());
    // A leaked token transfer while the logs backend lags: the block's bloom says a Transfer
    // from the treasury may be there, the logs say none: an error, and the block is not
    // checkpointed.
    let before = w.last().unwrap();
    lagging.store(true, Ordering::SeqCst);
    let leaked = e.leak_token(5_000_000).await;
    let err = w.step().await.unwrap_err();
    assert!(err.to_string().contains("logsBloom"), "{err}");
    assert_eq!(w.last().unwrap(), before);
    // The backend catches up: the next poll judges the block, its Transfer log included.
    lagging.store(false, Ordering::SeqCst);
    w.step().await.unwrap();
    let ids: Vec<String> = drain(&mut rx).into_iter().map(|ev| ev.outflow.id).collect();
    assert!(ids.contains(&format!("{leaked}:0")), "{ids:?}");
}

#[tokio::test]
async fn a_treasury_nonce_its_transactions_do_not_explain_freezes_once() {
    let e = env(&[]).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    // keygate's own transfer and a leaked one: their nonces are explained by the block.
    e.transfer("USDT", "1", "nonce-1").await;
    e.leak_native(3).await;
    w.step().await.unwrap();
    assert!(
        drain(&mut rx).iter().all(|ev| ev.outflow.asset != "nonce"),
        "each nonce step is a treasury transaction of its block"
    );
    // The treasury's nonce moves with no transaction of its own in the block: what an EIP-7702
    // authorization the treasury signed (in someone else's transaction) does, or what a
    // backend that left a transaction out of the block would show.
    let rpc = e.anvil.rpc();
    let n = rpc.nonce(&e.key.address(), "latest").await.unwrap();
    call(
        &rpc,
        "anvil_setNonce",
        json!([e.key.address(), format!("{:#x}", n + 1)]),
    )
    .await;
    mine(&e, 1).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    let nonce: Vec<&Event> = events
        .iter()
        .filter(|ev| ev.outflow.asset == "nonce")
        .collect();
    assert_eq!(
        nonce.len(),
        1,
        "{:?}",
        events.iter().map(|e| &e.outflow).collect::<Vec<_>>()
    );
    assert!(matches!(
        nonce[0].result,
        Reconciled::Unapproved {
            freeze_id: Some(_),
            ..
        }
    ));
    assert_eq!(nonce[0].outflow.amount, Decimal::ONE);
    // Judged once; later blocks (the nonce standing still) add nothing.
    mine(&e, 2).await;
    w.step().await.unwrap();
    assert!(drain(&mut rx).iter().all(|ev| ev.outflow.asset != "nonce"));
}

#[tokio::test]
async fn a_stuck_watcher_shows_its_lag_alarms_once_and_catches_up() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let e = env(&[]).await;
    // A node whose newest block is visible but whose blocks cannot be read while `broken`.
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let url = fake_node(Some(e.anvil.url.clone()), move |method, params| {
        if flag.load(Ordering::SeqCst)
            && method == "eth_getBlockByNumber"
            && params[1] == json!(true)
        {
            Answer::Raw(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec())
        } else {
            Answer::Forward
        }
    })
    .await;
    let (w, mut rx) = e.watcher_at(url);
    let mut w = w.with_stall_alarm_after(Duration::from_millis(300));
    let health = w.health();
    w.poll().await.unwrap();
    assert_eq!(health.lag_blocks(), 0);
    broken.store(true, Ordering::SeqCst);
    let leaked = e.leak_native(21).await;
    mine(&e, 2).await;
    // Well past twice the threshold, polling all the while.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        assert!(w.poll().await.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health.lag_blocks(), 3, "the three blocks it could not read");
    assert!(health.failing_for() >= Duration::from_millis(700));
    assert!(health.stalled());
    let alarms = e.alarms("chain.watcher_stalled").await;
    assert_eq!(alarms.len(), 1, "one alarm per failure: {alarms:?}");
    assert_eq!(alarms[0]["severity"], "critical");
    assert_eq!(e.freezes().await, 0, "a stall alarms, it does not freeze");
    // The node recovers: nothing was skipped.
    broken.store(false, Ordering::SeqCst);
    assert_eq!(w.poll().await.unwrap(), 3);
    assert_eq!(health.lag_blocks(), 0);
    assert_eq!(health.failing_for(), Duration::ZERO);
    assert!(!health.stalled());
    let ids: Vec<String> = drain(&mut rx).into_iter().map(|ev| ev.outflow.id).collect();
    assert_eq!(ids, vec![leaked]);
    assert_eq!(e.alarms("chain.watcher_stalled").await.len(), 1);
}

#[tokio::test]
async fn the_nonce_comparison_survives_a_node_without_old_state() {
    // anvil restarted from its --state file keeps the blocks but not their state: like a
    // pruned node after keygate was down longer than the node keeps state.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("anvil.json").display().to_string();
    let mut e = env(&["--state", &state]).await;
    {
        let (mut w, _rx) = e.watcher();
        w.step().await.unwrap();
        mine(&e, 3).await;
        w.step().await.unwrap();
    }
    // keygate is down; blocks are mined, the node restarts (old state gone), more blocks, one
    // of them moving the treasury's nonce with no transaction of its own.
    mine(&e, 2).await;
    e.anvil.stop();
    e.anvil.restart().await;
    let rpc = e.anvil.rpc();
    let old = rpc.block_number().await.unwrap() - 1;
    let old_hash = rpc.header(old).await.unwrap().unwrap().hash;
    assert!(
        rpc.nonce_at(&e.key.address(), &old_hash).await.is_err(),
        "the restarted node still has old state: this test proves nothing"
    );
    let leaked = e.leak_native(17).await;
    let n = rpc.nonce(&e.key.address(), "latest").await.unwrap();
    call(
        &rpc,
        "anvil_setNonce",
        json!([e.key.address(), format!("{:#x}", n + 2)]),
    )
    .await;
    mine(&e, 2).await;
    let (mut w, mut rx) = e.watcher();
    w.step().await.unwrap();
    let events = drain(&mut rx);
    let ids: Vec<(&str, &str)> = events
        .iter()
        .map(|ev| (ev.outflow.id.as_str(), ev.outflow.asset.as_str()))
        .collect();
    assert!(ids.contains(&(leaked.as_str(), "ETH")), "{ids:?}");
    // The blocks without state are compared as one span, once a block with state comes.
    let nonce: Vec<&Event> = events
        .iter()
        .filter(|ev| ev.outflow.asset == "nonce")
        .collect();
    assert_eq!(nonce.len(), 1, "{ids:?}");
    assert_eq!(nonce[0].outflow.amount, Decimal::from(2));
}

#[tokio::test]
async fn logs_that_stay_unverifiable_freeze_once_and_the_watcher_goes_on() {
    use std::sync::atomic::Ordering;
    let e = env(&[]).await;
    // A backend that leaves the treasury's logs out for good, and will not give the block's
    // full logs either (as when a block is stuffed past what can be read).
    let (url, lagging) = logs_switch(&e, || Answer::Result(json!([]))).await;
    let (w, _rx) = e.watcher_at(url);
    let mut w = w.with_stall_alarm_after(Duration::ZERO);
    w.poll().await.unwrap();
    lagging.store(true, Ordering::SeqCst);
    e.leak_token(5_000_000).await;
    let stuck = w.last().unwrap();
    // The block cannot be verified: at the threshold (zero here) an alarm and the freeze.
    assert!(w.poll().await.is_err());
    assert_eq!(w.last().unwrap(), stuck, "not checkpointed past");
    assert_eq!(e.alarms("chain.block_unverifiable").await.len(), 1);
    assert_eq!(e.freezes().await, 1);
    // Then the watcher goes on past it (frozen), judging the blocks after it.
    w.poll().await.unwrap();
    assert!(w.last().unwrap().0 > stuck.0);
    mine(&e, 1).await;
    w.poll().await.unwrap();
    assert_eq!(
        e.alarms("chain.block_unverifiable").await.len(),
        1,
        "once per block"
    );
}

#[tokio::test]
async fn a_step_that_fails_after_a_reorg_of_the_first_block_skips_nothing_and_alarms_nothing() {
    use std::sync::atomic::Ordering;
    let e = env(&[]).await;
    let (url, failing) = logs_switch(&e, || {
        Answer::Error(-32603, "upstream request timeout".into())
    })
    .await;
    let rpc = e.anvil.rpc();
    let snap = call(&rpc, "evm_snapshot", json!([])).await;
    mine(&e, 1).await;
    let (mut w, mut rx) = e.watcher_at(url);
    // The watcher's first block is the newest; then the chain changes at that very block, and
    // the new block carries a leak.
    w.poll().await.unwrap();
    let (first, _) = w.last().unwrap();
    call(&rpc, "evm_revert", json!([snap])).await;
    let leaked = e.leak_native(7).await;
    mine(&e, 1).await;
    // Judging the new block fails once (after the old one was dropped for the reorg)...
    failing.store(true, Ordering::SeqCst);
    assert!(w.poll().await.is_err());
    // ...and the next poll starts from the checkpoint again, not from the node's newest block.
    failing.store(false, Ordering::SeqCst);
    w.poll().await.unwrap();
    assert!(w.last().unwrap().0 > first);
    let events = drain(&mut rx);
    assert!(
        events.iter().any(|ev| ev.outflow.id == leaked
            && matches!(ev.result, Reconciled::Unapproved { .. })),
        "the leak in the new first block was judged: {events:?}"
    );
    // Below the first block judged nothing was the watcher's: a fork there is no alarm.
    assert_eq!(e.alarms("chain.reorg_beyond_history").await.len(), 0);
}

#[tokio::test]
async fn a_node_whose_newest_block_stops_moving_is_an_alarm_once() {
    // A node that stopped syncing answers without error: only the age of its newest block
    // shows it.
    let e = env(&["--no-mining"]).await;
    let (w, _rx) = e.watcher();
    let mut w = w.with_stale_head_after(Duration::from_millis(200));
    w.poll().await.unwrap();
    assert_eq!(e.alarms("chain.head_stale").await.len(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.poll().await.unwrap();
    assert_eq!(e.alarms("chain.head_stale").await.len(), 1);
    w.poll().await.unwrap();
    assert_eq!(
        e.alarms("chain.head_stale").await.len(),
        1,
        "once while it stays"
    );
    // A new block: the count starts again.
    mine(&e, 1).await;
    w.poll().await.unwrap();
    w.poll().await.unwrap();
    assert_eq!(e.alarms("chain.head_stale").await.len(), 1);
    assert_eq!(e.freezes().await, 0, "an alarm, not a freeze");
}

#[tokio::test]
async fn a_refusal_and_a_copy_sent_from_elsewhere_exclude_each_other() {
    exclude_each_other(false).await;
}

#[tokio::test]
async fn a_refusal_and_a_copy_sent_from_elsewhere_exclude_each_other_on_postgres() {
    exclude_each_other(true).await;
}

async fn exclude_each_other(postgres: bool) {
    let e = env_on(&[], postgres).await;
    let from = address_text(&e.key.address());
    let take = |hash: &'static str, nonce: u64, id: i64| {
        let store = e.store.clone();
        let from = from.clone();
        async move {
            store
                .evm_transfer_begin(&keygate_store::NewEvmTransfer {
                    decision_id: id,
                    venue: VENUE,
                    client: "mm",
                    client_ref: &format!("x-{id}"),
                    asset: "USDT",
                    amount: "1",
                    destination: DEST,
                    from_address: &from,
                    at_ms: store.clock().now(),
                })
                .await
                .unwrap();
            let took = store
                .evm_nonce_take(
                    &from,
                    nonce,
                    &keygate_store::NewEvmTx {
                        decision_id: id,
                        tx_hash: hash,
                        raw: "02",
                    },
                )
                .await
                .unwrap();
            assert_eq!(took, keygate_store::Took::Taken);
        }
    };
    let h1 = "0x1111111111111111111111111111111111111111111111111111111111111111";
    let h2 = "0x2222222222222222222222222222222222222222222222222222222222222222";
    take(h1, 50, 800_001).await;
    take(h2, 51, 800_002).await;
    // A copy claimed for sending again: the sender's refusal no longer stands.
    assert!(e.store.evm_tx_claim(h1, "signed", 0).await.unwrap());
    assert!(
        !e.store
            .evm_tx_refused(&from, 50, 800_001, h1)
            .await
            .unwrap()
    );
    // The sender's refusal first: the copy is not claimed (not sent).
    assert!(
        e.store
            .evm_tx_refused(&from, 51, 800_002, h2)
            .await
            .unwrap()
    );
    assert!(!e.store.evm_tx_claim(h2, "signed", 0).await.unwrap());
    // A refusal stands against a later outcome.
    e.store
        .evm_tx_outcome(h2, keygate_store::TxOutcome::Accepted)
        .await
        .unwrap();
    assert_eq!(
        e.store.evm_txs(800_002).await.unwrap()[0].outcome,
        "refused"
    );
    // After a failed take: a hash that never landed is written refused (nothing can send it);
    // one a node took meanwhile is not.
    let h3 = "0x3333333333333333333333333333333333333333333333333333333333333333";
    assert!(
        e.store
            .evm_tx_tombstone(&from, 52, 800_003, h3)
            .await
            .unwrap()
    );
    assert_eq!(
        e.store.evm_txs(800_003).await.unwrap()[0].outcome,
        "refused"
    );
    e.store
        .evm_tx_outcome(h1, keygate_store::TxOutcome::Accepted)
        .await
        .unwrap();
    assert!(
        !e.store
            .evm_tx_tombstone(&from, 50, 800_001, h1)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_bloom_that_wrongly_rules_out_the_treasurys_logs_hides_no_token_outflow() {
    // A node (or a chain) that serves every block with an empty logsBloom, as some do: the
    // logs are asked for anyway, and a leaked token transfer freezes.
    let e = env(&[]).await;
    let url = fake_node(Some(e.anvil.url.clone()), |method, _| {
        if method == "eth_getBlockByNumber" {
            Answer::ForwardChanged(|v| {
                if let Some(block) = v.get_mut("result").and_then(|r| r.as_object_mut()) {
                    block.insert("logsBloom".into(), json!(format!("0x{}", "0".repeat(512))));
                }
            })
        } else {
            Answer::Forward
        }
    })
    .await;
    let (mut w, mut rx) = e.watcher_at(url);
    w.step().await.unwrap();
    let leaked = e.leak_token(2_000_000).await;
    w.step().await.unwrap();
    let events = drain(&mut rx);
    assert!(
        events
            .iter()
            .any(|ev| ev.outflow.id == format!("{leaked}:0")
                && matches!(ev.result, Reconciled::Unapproved { .. })),
        "{events:?}"
    );
    assert!(e.freezes().await >= 1);
}
