//! Rescue on anvil: with interval mining, keygate sees a thief's drain pending and replaces it
//! (the drain is never mined, the rescue address holds the funds); with automine, a thief
//! draining in a loop loses keygate nothing after its first transfer (the sweep lands after
//! it); a restart between signing the sweep and its inclusion neither loses nor duplicates it;
//! an approval or an EIP-7702 delegation the watcher flags starts the same sweep.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use keygate_chain::persist::RescueTxState;
use keygate_chain::race::{self, RESCUE_TO, THIEF, funding, set_balance};
use keygate_chain::rescue::{Progress, RescueSetup, Rescuer, Trigger};
use keygate_chain::testing::{Anvil, KEY0, KEY1, call, deploy_token};
use keygate_chain::tx::{Key, Plan, sign, token_balance};
use keygate_chain::watcher::Watcher;
use keygate_chain::{Token, address_text};
use keygate_store::audit::{AuditEntry, RescueEvent};
use serde_json::json;
use tokio::sync::mpsc::unbounded_channel;

fn setup() -> RescueSetup {
    RescueSetup {
        to: RESCUE_TO.parse().unwrap(),
        endpoints: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_interval_mining_the_thiefs_pending_drain_is_replaced_and_never_mined() {
    let block = Duration::from_secs(2);
    let mut r = race::Race::start(2, Duration::from_millis(20)).await;
    let mut won = 0;
    let trials = 3;
    for i in 0..trials {
        // Early in the block interval: keygate has the rest of it to answer.
        let t = r
            .trial(race::offset(i, block).min(Duration::from_millis(800)))
            .await;
        assert!(t.replaced_after.is_some(), "trial {i}: no replacement sent");
        eprintln!("trial {i}: {t:?}");
        won += usize::from(t.won);
    }
    assert_eq!(won, trials, "keygate lost a race it had over a second for");
    // Every step is in the audit log, and each drain was alarmed as pending.
    let entries = r.store.audit_after(0, 100_000).await.unwrap();
    let count =
        |f: &dyn Fn(&AuditEntry) -> bool| entries.iter().filter(|e| f(&e.entry().unwrap())).count();
    let started = count(&|e| matches!(e, AuditEntry::Rescue(RescueEvent::Started { .. })));
    let done = count(&|e| matches!(e, AuditEntry::Rescue(RescueEvent::Done { .. })));
    let alarms =
        count(&|e| matches!(e, AuditEntry::Alarm(a) if a.event == "chain.pending_unapproved"));
    assert_eq!((started, done, alarms), (trials, trials, trials));
}

/// An automine anvil with the treasury ([`KEY0`]) holding 10 ETH and `tokens` units of a token.
async fn funded(args: &[&str], tokens: u64) -> (Anvil, Token) {
    let anvil = Anvil::start(args).await;
    let rpc = anvil.rpc();
    let funder = Key::from_hex(KEY1).unwrap().address();
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let contract = deploy_token(&rpc, funder, U256::from(1_000_000_000_000u64)).await;
    let (to, value, input) = keygate_chain::tx::call(Some(contract), treasury, U256::from(tokens));
    call(
        &rpc,
        "eth_sendTransaction",
        json!([{"from": funder, "to": to, "value": value, "input": input, "gas": "0x30000"}]),
    )
    .await;
    if args.contains(&"--no-mining") {
        call(&rpc, "evm_mine", json!([])).await;
    }
    set_balance(&rpc, treasury, funding()).await;
    (
        anvil,
        Token {
            contract,
            decimals: 6,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_automine_a_thief_draining_in_a_loop_loses_keygate_nothing_after_the_sweep() {
    let (anvil, token) = funded(&[], 0).await;
    let rpc = anvil.rpc();
    let dir = tempfile::tempdir().unwrap();
    let store = race::store(dir.path()).await;
    let poll = Duration::from_millis(20);
    let venue = race::venue(&anvil, BTreeMap::from([("USDT".to_string(), token)]), poll);
    let key = Key::from_hex(KEY0).unwrap();
    let (events_tx, mut events) = unbounded_channel();
    let watcher = Watcher::new(venue.clone(), store.clone(), vec![key.address()], None)
        .unwrap()
        .with_events(events_tx);
    let watching = tokio::spawn(watcher.run());
    let (triggers, rx) = unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Some(t) = Trigger::of(&e) {
                let _ = triggers.send(t);
            }
        }
    });
    let rescuer = Rescuer::new(
        venue,
        store.clone(),
        Key::from_hex(KEY0).unwrap(),
        &setup(),
        None,
    )
    .unwrap();
    let rescuing = tokio::spawn(rescuer.run(rx, poll, || async { true }));
    // Let the watcher take the chain's head first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The thief: 20 transfers of 0.4 ETH, one every 100 ms, each at the mined nonce.
    let each = funding() / U256::from(25u8);
    let mut mined = vec![];
    for _ in 0..20 {
        let nonce = rpc.nonce(&key.address(), "latest").await.unwrap();
        let (base, tip) = rpc.fees().await.unwrap();
        let plan = Plan {
            chain_id: 31337,
            from: key.address(),
            to: THIEF.parse().unwrap(),
            value: each,
            input: Default::default(),
            gas_limit: 21_000,
            max_fee_per_gas: base * 2 + tip,
            max_priority_fee_per_gas: tip,
        };
        let s = sign(&key, &plan, nonce).unwrap();
        if rpc.send_raw(&s.raw).await.is_ok() {
            mined.push(s.hash);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Wait for the rescue to finish.
    let start = Instant::now();
    loop {
        let rescues = store.rescues(Some("eth"), true).await.unwrap();
        if rescues.iter().any(|r| r.done_ms.is_some())
            && store.rescue_open("eth").await.unwrap().is_none()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no rescue finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.abort();
    forward.abort();
    rescuing.abort();

    let thief: Address = THIEF.parse().unwrap();
    let lost = rpc.balance(&thief).await.unwrap();
    // The blocks the thief's transfers were mined in, and the sweep's.
    let mut thief_blocks = vec![];
    for h in &mined {
        if let Some(r) = rpc.receipt(h).await.unwrap()
            && r.status.to::<u64>() == 1
        {
            thief_blocks.push(r.block_number.to::<u64>());
        }
    }
    let rescue = store.rescues(Some("eth"), true).await.unwrap();
    let mut sweep_blocks = vec![];
    for r in &rescue {
        for t in r.txs.iter().filter(|t| t.state == "mined") {
            let r = rpc
                .receipt(&t.tx_hash.parse().unwrap())
                .await
                .unwrap()
                .unwrap();
            sweep_blocks.push(r.block_number.to::<u64>());
        }
    }
    let sweep = *sweep_blocks
        .iter()
        .min()
        .expect("a sweep transaction was mined");
    // Value lost = the thief's transfers mined, every one of them before the sweep.
    assert!(!thief_blocks.is_empty());
    assert!(
        thief_blocks.iter().all(|b| *b < sweep),
        "{thief_blocks:?} vs sweep at {sweep}"
    );
    assert_eq!(lost, each * U256::from(thief_blocks.len()));
    // The first transfer, and at most what was mined before keygate's answer (with a 20 ms
    // watcher and 100 ms between the thief's transfers, one or two).
    assert!(
        thief_blocks.len() <= 3,
        "the thief got {} transfers out",
        thief_blocks.len()
    );
    let to: Address = RESCUE_TO.parse().unwrap();
    let rescued = rpc.balance(&to).await.unwrap();
    eprintln!(
        "thief transfers mined: {} (blocks {thief_blocks:?}), sweep at block {sweep}; lost {lost} wei, rescued {rescued} wei",
        thief_blocks.len()
    );
    assert!(
        rescued + lost + U256::from(10u64).pow(U256::from(16u8)) >= funding(),
        "rescued {rescued}, lost {lost}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_signing_the_sweep_and_its_inclusion_neither_loses_nor_duplicates_it() {
    let (anvil, token) = funded(&["--no-mining"], 700_000_000).await;
    let rpc = anvil.rpc();
    call(&rpc, "evm_mine", json!([])).await;
    let dir = tempfile::tempdir().unwrap();
    let store = race::store(dir.path()).await;
    let venue = race::venue(
        &anvil,
        BTreeMap::from([("USDT".to_string(), token.clone())]),
        Duration::from_millis(20),
    );
    let key = Key::from_hex(KEY0).unwrap();
    let first = Rescuer::new(
        venue.clone(),
        store.clone(),
        Key::from_hex(KEY0).unwrap(),
        &setup(),
        None,
    )
    .unwrap();
    first.start(&Trigger::Freeze(7)).await.unwrap();
    assert_eq!(first.drive().await.unwrap(), Progress::Signed(2));
    let signed: Vec<String> = store
        .rescue_open("eth")
        .await
        .unwrap()
        .unwrap()
        .txs
        .iter()
        .map(|t| t.tx_hash.clone())
        .collect();
    assert_eq!(signed.len(), 2);
    drop(first);
    // keygate stops; the node loses what it was sent.
    call(&rpc, "anvil_dropAllTransactions", json!([])).await;
    let pending = rpc.nonce(&key.address(), "pending").await.unwrap();
    assert_eq!(pending, rpc.nonce(&key.address(), "latest").await.unwrap());

    // Another instance (or the same one restarted) carries on: the same bytes, nothing new.
    let second = Rescuer::new(
        venue,
        store.clone(),
        Key::from_hex(KEY0).unwrap(),
        &setup(),
        None,
    )
    .unwrap();
    second.start(&Trigger::Freeze(8)).await.unwrap();
    assert_eq!(second.drive().await.unwrap(), Progress::Waiting);
    let open = store.rescue_open("eth").await.unwrap().unwrap();
    let again: Vec<String> = open.txs.iter().map(|t| t.tx_hash.clone()).collect();
    assert_eq!(again, signed, "a restart signed something new");
    assert_eq!(
        rpc.nonce(&key.address(), "pending").await.unwrap(),
        pending + 2
    );
    call(&rpc, "evm_mine", json!([])).await;
    // Drive until done (a second round may sweep the ETH the first reserved for gas).
    let mut steps = 0;
    while second.drive().await.unwrap() != Progress::Done {
        call(&rpc, "evm_mine", json!([])).await;
        steps += 1;
        assert!(steps < 10, "the rescue did not finish");
    }
    let to: Address = RESCUE_TO.parse().unwrap();
    assert_eq!(
        token_balance(&rpc, token.contract, to).await.unwrap(),
        U256::from(700_000_000u64)
    );
    assert!(
        token_balance(&rpc, token.contract, key.address())
            .await
            .unwrap()
            .is_zero()
    );
    let done = store.rescues(Some("eth"), true).await.unwrap();
    assert_eq!(
        done.len(),
        1,
        "one rescue, whatever the restarts and triggers"
    );
    let txs = &done[0].txs;
    // Each nonce mined exactly once, by one of keygate's rescue transactions.
    let mut nonces: Vec<i64> = txs.iter().map(|t| t.nonce).collect();
    nonces.dedup();
    for n in &nonces {
        let mined = txs
            .iter()
            .filter(|t| t.nonce == *n && t.state == RescueTxState::Mined.as_str())
            .count();
        assert_eq!(mined, 1, "nonce {n}: {txs:?}");
    }
    let left = rpc.balance(&key.address()).await.unwrap();
    assert!(
        left < U256::from(10u64).pow(U256::from(16u8)),
        "{left} wei left in {}",
        address_text(&key.address())
    );
}

/// Funds the treasury (10 ETH, `tokens` USDT) on an automine anvil, lets the watcher take the
/// head, does `act`, and hands the watcher's judgements whose asset is `asset` (and only those)
/// to a rescuer, driven until done. Returns the anvil, the token and the rescue's reason.
async fn sweep_on_flag<F, Fut>(asset: &str, tokens: u64, act: F) -> (Anvil, Token, String)
where
    F: FnOnce(keygate_chain::rpc::Rpc, Address, Address) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (anvil, token) = funded(&[], tokens).await;
    let dir = tempfile::tempdir().unwrap();
    let store = race::store(dir.path()).await;
    let venue = race::venue(
        &anvil,
        BTreeMap::from([("USDT".to_string(), token.clone())]),
        Duration::from_millis(20),
    );
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let (events_tx, mut events) = unbounded_channel();
    let mut watcher = Watcher::new(venue.clone(), store.clone(), vec![treasury], None)
        .unwrap()
        .with_events(events_tx);
    watcher.step().await.unwrap();
    while events.try_recv().is_ok() {}
    act(anvil.rpc(), treasury, token.contract).await;
    watcher.step().await.unwrap();
    let mut flagged = vec![];
    while let Ok(e) = events.try_recv() {
        if e.outflow.asset == asset {
            flagged.push(e);
        }
    }
    assert_eq!(flagged.len(), 1, "the watcher flagged no single {asset}");
    let trigger = Trigger::of(&flagged[0]).expect("an unapproved outflow is a trigger");
    let rescuer = Rescuer::new(
        venue,
        store.clone(),
        Key::from_hex(KEY0).unwrap(),
        &setup(),
        None,
    )
    .unwrap();
    rescuer.start(&trigger).await.unwrap();
    let mut steps = 0;
    while rescuer.drive().await.unwrap() != Progress::Done {
        steps += 1;
        assert!(steps < 10, "the rescue did not finish");
    }
    let done = store.rescues(Some("eth"), true).await.unwrap();
    assert_eq!(done.len(), 1);
    (anvil, token, done[0].reason.clone())
}

/// What is left at the treasury and what the rescue address holds, after a rescue of
/// `tokens` USDT and 10 ETH: everything swept but gas.
async fn assert_swept(anvil: &Anvil, token: &Token, tokens: u64) {
    let rpc = anvil.rpc();
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let to: Address = RESCUE_TO.parse().unwrap();
    assert_eq!(
        token_balance(&rpc, token.contract, to).await.unwrap(),
        U256::from(tokens)
    );
    assert!(
        token_balance(&rpc, token.contract, treasury)
            .await
            .unwrap()
            .is_zero()
    );
    let cent = U256::from(10u64).pow(U256::from(16u8));
    assert!(rpc.balance(&treasury).await.unwrap() < cent);
    assert!(rpc.balance(&to).await.unwrap() + cent >= funding());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_the_watcher_flags_sweeps_what_the_spender_could_take() {
    let spender = "0x00000000000000000000000000000000000000ee";
    let (anvil, token, reason) = sweep_on_flag(
        "allowance:USDT",
        500_000_000,
        |rpc, from, contract| async move {
            // approve(spender, 5e8): the leaked key lets a spender outside the address book take
            // the treasury's tokens.
            let input = format!("0x095ea7b3{:0>64}{:064x}", &spender[2..], 500_000_000u64);
            let h = call(
                &rpc,
                "eth_sendTransaction",
                json!([{"from": from, "to": contract, "input": input, "gas": "0x30000"}]),
            )
            .await;
            // anvil's automine answers before the block is out.
            let h = h.as_str().unwrap().parse().unwrap();
            for _ in 0..500 {
                if rpc.receipt(&h).await.unwrap().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the approval was not mined");
        },
    )
    .await;
    assert!(reason.contains("(allowance:USDT)"), "{reason}");
    assert_swept(&anvil, &token, 500_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eip_7702_delegation_the_watcher_flags_sweeps_the_treasury() {
    let (anvil, token, reason) = sweep_on_flag("code", 300_000_000, |rpc, from, _| async move {
        // What an authorization signed by the leaked key leaves at the treasury (anvil's
        // setCode stands in for the type-4 transaction the delegate's sender would send): no
        // transaction of the treasury's to replace.
        call(
            &rpc,
            "anvil_setCode",
            json!([from, "0xef010000000000000000000000000000000000000bad01"]),
        )
        .await;
        call(&rpc, "evm_mine", json!([])).await;
    })
    .await;
    assert!(reason.contains("(code)"), "{reason}");
    assert_swept(&anvil, &token, 300_000_000).await;
}
