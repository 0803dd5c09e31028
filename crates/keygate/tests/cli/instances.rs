//! Several instances (issue 21, item 4): three `keygate serve` processes on one PostgreSQL, in
//! front of one venue simulator (a sub-account under a master) and one anvil node.
//! - Withdrawals sent at a per-client cap from all three at once: the allowed sum never exceeds
//!   the cap, in the audit log or at the venue, and the boundary is reached.
//! - Every venue withdrawal is judged by reconciliation exactly once between the three.
//! - One instance is killed (SIGKILL); the other two carry on: a withdrawal made around keygate
//!   with the leaked key is judged once and freezes everything, containment locks the key and
//!   sweeps the sub-account once, a transaction signed around keygate with the wallet key is
//!   judged once by the watchers, and both alarms reach the webhook.

use std::time::{Duration, Instant};

use keygate_chain::testing::{Anvil, KEY0, call};
use keygate_chain::tx::Key;
use rust_decimal::Decimal;
use serde_json::json;

use crate::containment::{safe_master, start};
use crate::drills::{CAP_USD, Drill, drill_at, try_http};
use crate::gateway::{COLD, Serve, edit_config, webhook};
use crate::util::{Kg, assert_no_leak, canary};

const INSTANCES: usize = 3;
const WITHDRAW: &str = "/venues/binance-main/sapi/v1/capital/withdraw/apply";
const IP_RESTRICT: &str = "/sapi/v2/sub-account/subAccountApi/ipRestriction";
/// Each withdrawal at the cap boundary, in USDT (USD one for one).
const EACH: i64 = 900;
const THIEF: &str = "0xa77ac6e700000000000000000000000000000bad";

/// Polls until `done`, at most 40 s (an alert lease of a killed instance runs out in 10 s).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(kg: &mut Kg, what: &str) -> usize {
    kg.ok(&["audit", "tail", "-n", "100000", "--json"], None)
        .matches(what)
        .count()
}

/// The drill's data directory on `url`, with reconciliation every 200 ms, containment at the
/// venue (the master's key), an EVM venue on `anvil` whose treasury is KEY0, and a webhook.
fn setup(url: &str, anvil: &Anvil, hook: std::net::SocketAddr) -> Drill {
    let secrets = (canary("ISUB"), canary("IMASTER"));
    let (sim, sim_addr) = start(safe_master(), (&secrets.0, &secrets.1));
    let mut d = drill_at(
        Some(url),
        sim,
        sim_addr,
        &secrets.0,
        "reconcile_every = \"200ms\"\ncontainment_credential = \"binance-master\"\nsub_account = \"trading1@example.com\"\n",
    );
    edit_config(&d.kg, |c| {
        let c = c.replace(
            "unapproved_outflow = \"all\"\n",
            "unapproved_outflow = \"all\"\negress_ip = [\"127.0.0.1\"]\nevery = \"100ms\"\nlease_ttl = \"1s\"\nretry_min = \"100ms\"\nretry_max = \"200ms\"\n",
        );
        assert!(
            c.contains("lease_ttl = \"1s\""),
            "the containment table moved"
        );
        format!(
            "{c}\n[venues.eth]\nkind = \"evm\"\nrpc_url = \"{}\"\nchain_id = 31337\nconfirmations = 2\npoll = \"50ms\"\n\n[[alerts.webhooks]]\nname = \"siem\"\nurl = \"http://{hook}/hook\"\nsecret_env = \"E2E_HOOK_SECRET\"\nmax_backoff = \"1s\"\n",
            anvil.url
        )
    });
    for (id, venue, kind, stdin) in [
        (
            "binance-master",
            "binance-main",
            "binance-hmac",
            format!("master\n{}\n", secrets.1),
        ),
        ("eth", "eth", "evm-key", format!("{KEY0}\n")),
    ] {
        d.kg.credential(id, venue, kind, &stdin);
    }
    d
}

/// A Binance withdrawal made straight at the simulator with the sub-account's leaked key.
fn leaked_withdrawal(d: &Drill, to: &str, amount: &str) {
    let now = keygate_server::now_ms();
    let payload = format!(
        "coin=USDT&network=ETH&address={to}&amount={amount}&recvWindow=5000&timestamp={now}"
    );
    let sig = keygate_venues::binance::signature(&d.secret, &payload);
    let addr = d.sim_addr;
    let a = crate::gateway::http(
        addr,
        "POST",
        "/sapi/v1/capital/withdraw/apply",
        &[
            ("X-MBX-APIKEY", "bkey"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("{payload}&signature={sig}").as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

/// Withdrawals of [`EACH`] USDT from two bots per instance, all at once, `per_bot` each.
fn press_the_cap(d: &Drill, serves: &[Serve], per_bot: usize) -> Vec<u16> {
    let mut threads = Vec::new();
    for (i, s) in serves.iter().enumerate() {
        for bot in 0..2 {
            let (addr, token) = (s.addr, d.treasurer.clone());
            threads.push(std::thread::spawn(move || {
                (0..per_bot)
                    .map(|n| {
                        let body = format!(
                            "coin=USDT&network=ETH&address={COLD}&amount={EACH}&withdrawOrderId=inst{i}-b{bot}-w{n}"
                        );
                        try_http(addr, "POST", WITHDRAW, &token, &body).unwrap_or(0)
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn three_instances_on_one_postgres_keep_the_cap_judge_once_and_carry_on_when_one_dies() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(keygate_store::testing::fresh_postgres_url());
    let anvil = rt.block_on(Anvil::start(&[]));
    let (hook, alerts) = webhook();
    let mut d = setup(&url, &anvil, hook);
    let secret = canary("IHOOK");
    let mut serves: Vec<Serve> = (0..INSTANCES)
        .map(|_| Serve::start_with(&d.kg, &[("E2E_HOOK_SECRET", &secret)]))
        .collect();

    // The cap, pressed from all three at once: 60 withdrawals of 900 against 20,000.
    let answers = press_the_cap(&d, &serves, 10);
    let allowed = answers.iter().filter(|a| **a == 200).count();
    let at_venue: Decimal = d.sim.withdrawals().iter().map(|w| w.amount).sum();
    let cap = Decimal::from(CAP_USD);
    assert!(
        at_venue <= cap,
        "{at_venue} USD left the venue against a cap of {cap}: {answers:?}"
    );
    assert!(
        at_venue > cap - Decimal::from(EACH),
        "the cap was not reached ({at_venue} of {cap}): the boundary was not pressed: {answers:?}"
    );
    assert_eq!(d.sim.withdrawals().len(), allowed, "{answers:?}");
    assert!(
        answers.iter().all(|a| matches!(a, 200 | 403)),
        "every withdrawal is allowed or refused by the limit: {answers:?}"
    );

    // Reconciliation: each of them judged once between the three instances.
    let n = d.sim.withdrawals().len();
    wait_for("every withdrawal matched", || {
        count(&mut d.kg, "outflow.matched") >= n
    });
    std::thread::sleep(Duration::from_millis(1500)); // several passes of every instance
    assert_eq!(
        count(&mut d.kg, "outflow.matched"),
        n,
        "a withdrawal was judged more than once"
    );
    assert_eq!(count(&mut d.kg, "outflow.unapproved"), 0);

    // The first instance (the likeliest to hold the leases) dies.
    serves[0].kill9();

    // The leaked key, used around keygate: judged once, everything frozen, the key locked and
    // the sub-account swept, once, by the two left.
    leaked_withdrawal(&d, THIEF, "5000");
    wait_for("the unapproved withdrawal", || {
        count(&mut d.kg, "outflow.unapproved") >= 1
    });
    assert!(d.kg.ok(&["freeze", "list"], None).contains("all"));
    let sim = d.sim.clone();
    wait_for("the sweep", || {
        sim.balance("bkey", "USDT") == Some(Decimal::ZERO)
            && sim.balance("bkey", "BTC") == Some(Decimal::ZERO)
    });
    assert!(
        d.sim
            .key_restrictions("bkey")
            .is_some_and(|r| r.ip_restrict),
        "the leaked key is locked"
    );
    // The wallet key, used around keygate: judged once by the watchers left.
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let leaked_tx = rt.block_on(async {
        let h = call(
            &anvil.rpc(),
            "eth_sendTransaction",
            json!([{"from": treasury, "to": THIEF, "value": "0x2386f26fc10000"}]),
        )
        .await;
        for _ in 0..3 {
            call(&anvil.rpc(), "evm_mine", json!([])).await;
        }
        h.as_str().unwrap().to_string()
    });
    wait_for("the unapproved transaction", || {
        count(&mut d.kg, "outflow.unapproved") >= 2
    });
    // Both alarms reach the webhook, from whichever instance holds it now.
    wait_for("both alarms at the webhook", || {
        alerts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, k)| k == "unapproved_outflow")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let tail = d.kg.ok(&["audit", "tail", "-n", "100000", "--json"], None);
    assert_eq!(
        tail.matches("outflow.unapproved").count(),
        2,
        "an unapproved outflow was judged more than once"
    );
    assert!(tail.contains(&leaked_tx), "the alarm names the transaction");
    assert_eq!(
        d.sim.sub_calls(IP_RESTRICT),
        1,
        "the key was locked more than once between the instances"
    );
    let got = alerts.lock().unwrap().clone();
    // Both came after the kill, so none was in flight in the dead instance: each exactly once.
    let ids: Vec<i64> = got
        .iter()
        .filter(|(_, k)| k == "unapproved_outflow")
        .map(|(id, _)| *id)
        .collect();
    assert!(
        ids.len() == 2 && ids[0] < ids[1],
        "each alarm delivered once, in order: {got:?}"
    );
    d.kg.ok(&["audit", "verify"], None);
    let secrets = vec![
        d.secret.as_bytes().to_vec(),
        KEY0.as_bytes().to_vec(),
        secret.as_bytes().to_vec(),
    ];
    for s in &serves {
        assert_no_leak("serve output", &s.output(), &secrets);
    }
    assert_no_leak("audit", tail.as_bytes(), &secrets);
    eprintln!(
        "instances: {INSTANCES} on one PostgreSQL, {allowed} of {} withdrawals allowed at the cap ({at_venue} USD of {cap}), {n} judged once each, one instance killed, 2 unapproved outflows judged once and contained by the others, {} alerts delivered",
        answers.len(),
        got.len()
    );
    serves.clear();
}
