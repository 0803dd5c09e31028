//! EVM end to end: `keygate serve` as a process in front of a real anvil node (installed by
//! scripts/anvil-env) with the 6-decimals test token deployed. A transfer through keygate
//! confirms and matches; a retry with the same client_ref answers the same transfer; with the
//! node down a transfer is refused with a clear 503 and nothing decided or signed; a transfer
//! signed with the same key outside keygate while keygate was down is caught from the checkpoint
//! on restart, and freezes everything. Behind a proxy that loses the node's answer, a transfer
//! is pending (never failed, never signed twice); a held transfer is carried out once after a
//! quorum; a refused token is audited. `keygate doctor` says there is no rescue without an
//! active `rescue_to`, and `keygate serve` refuses one not in the address book.

use std::time::{Duration, Instant};

use keygate_chain::testing::{
    self as chain_testing, Anvil, KEY0, KEY1, call, deploy_token, fake_node, first_send,
};
use keygate_chain::tx::Key;
use keygate_chain::{Address, U256};
use serde_json::json;

use crate::gateway::{Answer, Serve, approver_keys, http};
use crate::util::{Kg, assert_no_leak};

const DEST: &str = "0x00000000000000000000000000000000c01d0001";

fn wait_audit(kg: &mut Kg, what: &str, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tail = kg.ok(&["audit", "tail", "-n", "500", "--json"], None);
        let n = tail.matches(what).count();
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A data directory with an EVM venue `eth` (the test token as USDT) whose node is reached at
/// `rpc_url`, a client `treasurer` allowed to transfer to the approved DEST, and its token.
fn chain_kg(anvil: &Anvil, rt: &tokio::runtime::Runtime, rpc_url: &str) -> (Kg, String, Address) {
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let funder = Key::from_hex(KEY1).unwrap().address();
    let token = rt.block_on(async {
        let rpc = anvil.rpc();
        let token = deploy_token(&rpc, funder, U256::from(10_000_000_000u64)).await;
        let (to, value, input) =
            keygate_chain::tx::call(Some(token), treasury, U256::from(1_000_000_000u64));
        call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": funder, "to": to, "value": value, "input": input, "gas": "0x30000"}]),
        )
        .await;
        token
    });
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    let cfg_path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("cooldown = \"24h\"", "cooldown = \"1s\"");
    let cfg = format!(
        "{cfg}\n[venues.eth]\nkind = \"evm\"\nrpc_url = \"{rpc_url}\"\nchain_id = 31337\nconfirmations = 2\npoll = \"50ms\"\n\n[venues.eth.tokens]\nUSDT = {{ contract = \"{}\", decimals = 6 }}\n",
        keygate_chain::address_text(&token)
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::write(
        kg.data.join("policies/transfer.cedar"),
        r#"@id("treasury-transfers")
permit (principal == Keygate::Client::"treasurer", action == Keygate::Action::"transfer", resource);
"#,
    )
    .unwrap();
    kg.credential("eth", "eth", "evm-key", &format!("{KEY0}\n"));
    kg.client("treasurer", &["eth"], &["transfer"], &[]);
    kg.cold_wallet(DEST, &["eth"]);
    let token_text = kg
        .ok(&["token", "issue", "treasurer"], None)
        .trim()
        .to_string();
    (kg, token_text, token)
}

/// `POST /v1/transfers` of `amount` USDT to DEST.
fn post(addr: std::net::SocketAddr, bearer: &str, amount: &str, client_ref: &str) -> Answer {
    let auth = format!("Bearer {bearer}");
    let body = json!({"venue": "eth", "asset": "USDT", "to": DEST, "amount": amount, "client_ref": client_ref});
    http(
        addr,
        "POST",
        "/v1/transfers",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// `GET /v1/transfers/{id}`.
fn get(addr: std::net::SocketAddr, bearer: &str, id: i64) -> Answer {
    let auth = format!("Bearer {bearer}");
    http(
        addr,
        "GET",
        &format!("/v1/transfers/{id}"),
        &[("Authorization", auth.as_str())],
        b"",
    )
}

/// Polls a transfer until its status is `want`.
fn wait_status(addr: std::net::SocketAddr, bearer: &str, id: i64, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = get(addr, bearer, id);
        assert_eq!(g.status, 200, "{}", g.body);
        if g.json()["status"] == want {
            return g.json();
        }
        assert!(Instant::now() < deadline, "never {want}: {}", g.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn transfers_confirm_and_a_leaked_key_is_caught_even_across_downtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("anvil-state.json");
    let state_arg = state.display().to_string();
    let mut anvil = rt.block_on(Anvil::start(&["--state", &state_arg]));
    let treasury = Key::from_hex(KEY0).unwrap().address();
    let (mut kg, token_text, token) = chain_kg(&anvil, &rt, &anvil.url.clone());
    let transfer =
        |addr, amount: &str, client_ref: &str| post(addr, &token_text, amount, client_ref);

    let serve = Serve::start(&kg);
    // A transfer through keygate: sent, recorded, matched by the watcher, confirmed at depth 2.
    let a = transfer(serve.addr, "72.5", "t-1");
    assert_eq!(a.status, 200, "{}", a.body);
    let first = a.json();
    let id = first["id"].as_i64().unwrap();
    assert!(
        first["tx_hash"].as_str().is_some_and(|h| h.len() == 66),
        "{first}"
    );
    assert_eq!(first["amount"], "72.5");
    // A retry with the same client_ref answers the same transfer; nothing new is signed.
    let again = transfer(serve.addr, "72.5", "t-1");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], id);
    assert_eq!(again.json()["tx_hash"], first["tx_hash"]);
    // Bad input: clear errors.
    let bad = transfer(serve.addr, "0.0000001", "t-bad");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("decimals"), "{}", bad.body);
    assert_eq!(wait_audit(&mut kg, "outflow.matched", 1), 1);
    rt.block_on(async {
        for _ in 0..2 {
            call(&anvil.rpc(), "evm_mine", json!([])).await;
        }
    });
    wait_status(serve.addr, &token_text, id, "confirmed");
    let balance = rt.block_on(async {
        let input = format!("0x70a08231{:0>64}", DEST.trim_start_matches("0x"));
        call(
            &anvil.rpc(),
            "eth_call",
            json!([{"to": token, "input": input}, "latest"]),
        )
        .await
    });
    assert_eq!(
        U256::from_str_radix(balance.as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
        U256::from(72_500_000u64)
    );

    // The node goes down: a transfer is refused before any decision, with a clear error.
    anvil.stop();
    let down = transfer(serve.addr, "1", "t-2");
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.json()["error"], "node_unavailable");
    assert!(down.json()["decision_id"].is_null());
    assert!(
        down.body.contains("nothing was decided or signed"),
        "{}",
        down.body
    );
    let out1 = serve.output();
    drop(serve);

    // keygate is down while the node comes back and the key is used around it.
    rt.block_on(anvil.restart());
    let leaked = rt.block_on(async {
        let rpc = anvil.rpc();
        let h = call(
            &rpc,
            "eth_sendTransaction",
            json!([{"from": treasury, "to": "0xa77ac6e700000000000000000000000000000bad", "value": "0x2386f26fc10000"}]),
        )
        .await;
        for _ in 0..3 {
            call(&rpc, "evm_mine", json!([])).await;
        }
        h.as_str().unwrap().to_string()
    });
    assert_eq!(wait_audit(&mut kg, "outflow.unapproved", 0), 0);
    let serve = Serve::start(&kg);
    assert_eq!(wait_audit(&mut kg, "outflow.unapproved", 1), 1);
    let tail = kg.ok(&["audit", "tail", "-n", "50", "--json"], None);
    assert!(tail.contains(&leaked), "the alarm names the transaction");
    assert!(kg.ok(&["freeze", "list"], None).contains("all"));
    let frozen = transfer(serve.addr, "1", "t-3");
    assert_eq!(frozen.status, 403, "{}", frozen.body);
    assert_eq!(frozen.json()["error"], "frozen");
    // Nothing judged twice after another restart.
    drop(serve);
    let serve = Serve::start(&kg);
    std::thread::sleep(Duration::from_millis(500));
    let tail = kg.ok(&["audit", "tail", "-n", "500", "--json"], None);
    assert_eq!(tail.matches("outflow.unapproved").count(), 1);
    assert_eq!(tail.matches("outflow.matched").count(), 1);
    kg.ok(&["audit", "verify"], None);
    let secrets = vec![KEY0.as_bytes().to_vec()];
    assert_no_leak("serve output", &out1, &secrets);
    assert_no_leak("serve output", &serve.output(), &secrets);
    assert_no_leak("audit", tail.as_bytes(), &secrets);
}

#[test]
fn a_lost_send_answer_is_pending_and_holds_retries_and_bad_tokens_are_answered_truly() {
    // Multi-threaded: the proxy in front of anvil serves while the test thread blocks on HTTP.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let anvil = rt.block_on(Anvil::start(&["--no-mining"]));
    // The node takes the first transaction but its answer is lost on the way back.
    let lossy = rt.block_on(fake_node(
        Some(anvil.url.clone()),
        first_send(|| {
            chain_testing::Answer::ForwardThen(Box::new(chain_testing::Answer::Error(
                -32603,
                "upstream request timeout".into(),
            )))
        }),
    ));
    let mine = |n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                call(&anvil.rpc(), "evm_mine", json!([])).await;
            }
        })
    };
    let (mut kg, bearer, _) = chain_kg(&anvil, &rt, &lossy);
    // The token's deployment and the treasury's funding go in a block before any transfer.
    mine(1);
    let keys = approver_keys(&mut kg, 2, 2);
    std::fs::write(
        kg.data.join("policies/hold.cedar"),
        r#"@id("big-transfers-need-two")
@hold
forbid (principal, action == Keygate::Action::"transfer", resource)
when { context.usd_value_cents > 10000 } unless { context.approvals >= 2 };
"#,
    )
    .unwrap();
    let serve = Serve::start(&kg);

    let lost = post(serve.addr, &bearer, "3", "lost-1");
    assert_eq!(lost.status, 202, "{}", lost.body);
    let body = lost.json();
    assert_eq!(body["status"], "pending", "{body}");
    assert!(
        body["note"]
            .as_str()
            .is_some_and(|n| n.contains("Do not send this transfer again")),
        "{body}"
    );
    let id = body["id"].as_i64().unwrap();
    // A retry with its client_ref answers the same transfer, still pending.
    let again = post(serve.addr, &bearer, "3", "lost-1");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], id);
    assert_eq!(again.json()["status"], "pending");
    assert_eq!(again.json()["tx_hash"], body["tx_hash"]);

    // Two requests with one client_ref at once: both answer the one transfer.
    let (x, y) = std::thread::scope(|s| {
        let a = s.spawn(|| post(serve.addr, &bearer, "2", "race-1"));
        let b = s.spawn(|| post(serve.addr, &bearer, "2", "race-1"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for r in [&x, &y] {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(x.json()["id"], y.json()["id"]);

    // A held transfer: carried out once, after a quorum, by sending it again with the hold.
    let held = post(serve.addr, &bearer, "150", "big-1");
    assert_eq!(held.status, 202, "{}", held.body);
    assert_eq!(held.json()["status"], "held");
    let hid = held.json()["approval_id"].as_i64().unwrap();
    let hold_header = hid.to_string();
    let post_held = || {
        let auth = format!("Bearer {bearer}");
        let body = json!({"venue": "eth", "asset": "USDT", "to": DEST, "amount": "150", "client_ref": "big-1"});
        http(
            serve.addr,
            "POST",
            "/v1/transfers",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
                ("x-keygate-hold", hold_header.as_str()),
            ],
            body.to_string().as_bytes(),
        )
    };
    let again = post(serve.addr, &bearer, "150", "big-1");
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (409, json!("held")),
        "{}",
        again.body
    );
    let early = post_held();
    assert_eq!(
        (early.status, early.json()["error"].clone()),
        (409, json!("hold_pending")),
        "{}",
        early.body
    );
    for key in &keys {
        kg.ok(
            &[
                "approve",
                &format!("hold:{hid}"),
                "--key",
                key.to_str().unwrap(),
            ],
            None,
        );
    }
    let carried = post_held();
    assert_eq!(carried.status, 200, "{}", carried.body);
    let big = carried.json()["id"].as_i64().unwrap();
    assert_ne!(big, hid, "carried out by a decision of its own");
    assert!(carried.json()["tx_hash"].as_str().is_some());
    for retry in [post_held(), post(serve.addr, &bearer, "150", "big-1")] {
        assert_eq!(retry.status, 200, "{}", retry.body);
        assert_eq!(
            retry.json()["id"],
            big,
            "the hold is carried out once: {}",
            retry.body
        );
    }

    mine(2);
    wait_status(serve.addr, &bearer, big, "confirmed");
    let done = wait_status(serve.addr, &bearer, id, "confirmed");
    assert_eq!(done["tx_hash"], body["tx_hash"]);
    wait_status(
        serve.addr,
        &bearer,
        x.json()["id"].as_i64().unwrap(),
        "confirmed",
    );
    assert_eq!(wait_audit(&mut kg, "outflow.matched", 3), 3);
    assert_eq!(wait_audit(&mut kg, "outflow.unapproved", 0), 0);

    // A token refused on the transfer API is audited, like the gateway's refusals.
    let id_part = bearer.split('_').nth(1).unwrap();
    let forged = format!("kgt_{id_part}_{}", "0".repeat(64));
    let refused = post(serve.addr, &forged, "1", "forged-1");
    assert_eq!(refused.status, 401, "{}", refused.body);
    let seq = refused.json()["decision_id"].as_i64().unwrap();
    let entry = kg.ok(&["audit", "show", &seq.to_string()], None);
    assert!(
        entry.contains("token.refused") && entry.contains("/v1/transfers"),
        "{entry}"
    );
    let refused_get = get(serve.addr, &forged, id);
    assert_eq!(refused_get.status, 401, "{}", refused_get.body);
    assert!(refused_get.json()["decision_id"].as_i64().is_some());
    // Without a good token, an id that does not exist is answered the same: which ids exist
    // is not told.
    let missing = get(serve.addr, &forged, 999_999);
    assert_eq!(missing.status, 401, "{}", missing.body);
    // With one, a missing id is 404.
    assert_eq!(get(serve.addr, &bearer, 999_999).status, 404);
    kg.ok(&["audit", "verify"], None);
    assert_no_leak("serve output", &serve.output(), &[KEY0.as_bytes().to_vec()]);
}

/// A data directory with an EVM venue `eth` whose node is not running (doctor's rescue check
/// and serve's refusal read only the config and the store), `rescue` added to its table.
fn rescue_kg(rescue: &str) -> Kg {
    let mut kg = Kg::new();
    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    let cfg_path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("cooldown = \"24h\"", "cooldown = \"1s\"");
    let cfg = format!(
        "{cfg}\n[venues.eth]\nkind = \"evm\"\nrpc_url = \"http://127.0.0.1:9\"\nchain_id = 31337\n{rescue}\n"
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    kg.credential("eth", "eth", "evm-key", &format!("{KEY0}\n"));
    kg
}

fn rescue_lines(stdout: &str) -> String {
    stdout
        .split("rescue at eth")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn doctor_says_there_is_no_rescue_without_rescue_to_and_serve_refuses_one_not_in_the_book() {
    // No rescue_to: doctor says there is no rescue, as unsafe.
    let mut kg = rescue_kg("");
    let out = kg.run(&["doctor"], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    let rescue = rescue_lines(&stdout);
    assert!(
        rescue.contains("UNSAFE  [venues.eth] has no rescue_to"),
        "{stdout}"
    );

    // A rescue_to outside the address book: unsafe in doctor, and serve refuses to start
    // with the command that adds it.
    let cold = "0x00000000000000000000000000000000c01d00cc";
    let mut kg = rescue_kg(&format!("rescue_to = \"{cold}\""));
    let stdout = String::from_utf8_lossy(&kg.run(&["doctor"], None).stdout).to_string();
    let rescue = rescue_lines(&stdout);
    assert!(rescue.contains("is not in the address book"), "{stdout}");
    assert!(rescue.contains("UNSAFE"), "{stdout}");
    let err = kg.fails(&["serve", "--listen", "127.0.0.1:0"], None);
    assert!(
        err.contains("rescue_to") && err.contains("keygate address add --venue eth"),
        "{err}"
    );

    // Added, waiting for its approval: still no rescue.
    kg.ok(
        &[
            "address", "add", cold, "--venue", "eth", "--asset", "ETH", "--label", "rescue",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&kg.run(&["doctor"], None).stdout).to_string();
    let rescue = rescue_lines(&stdout);
    assert!(rescue.contains("UNSAFE"), "{stdout}");
    assert!(rescue.contains("is in the address book but"), "{stdout}");

    // Approved and past its cool-down: the rescue is armed, nothing unsafe about it.
    kg.env("KEYGATE_ACTOR", "bob");
    kg.ok(&["address", "approve", "1"], None);
    std::thread::sleep(Duration::from_millis(1100));
    let stdout = String::from_utf8_lossy(&kg.run(&["doctor"], None).stdout).to_string();
    let rescue = rescue_lines(&stdout);
    assert!(!rescue.contains("UNSAFE"), "{stdout}");
    assert!(
        rescue.contains("ok      rescue_to 0x00000000000000000000000000000000c01d00cc is an active address-book entry"),
        "{stdout}"
    );
}
