//! EVM end to end: `keygate serve` as a process in front of a real anvil node (installed by
//! scripts/anvil-env) with the 6-decimals test token deployed. A transfer through keygate
//! confirms and matches; a retry with the same client_ref answers the same transfer; with the
//! node down a transfer is refused with a clear 503 and nothing decided or signed; a transfer
//! signed with the same key outside keygate while keygate was down is caught from the checkpoint
//! on restart, and freezes everything.

use std::time::{Duration, Instant};

use keygate_chain::U256;
use keygate_chain::testing::{Anvil, KEY0, KEY1, call, deploy_token};
use keygate_chain::tx::Key;
use serde_json::json;

use crate::gateway::{Serve, http};
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

#[test]
fn transfers_confirm_and_a_leaked_key_is_caught_even_across_downtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut kg = Kg::new();
    let state = kg.data.join("anvil-state.json");
    let state_arg = state.display().to_string();
    let mut anvil = rt.block_on(Anvil::start(&["--state", &state_arg]));
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

    kg.env("KEYGATE_ACTOR", "alice");
    kg.ok(&["init"], None);
    let cfg_path = kg.data.join("keygate.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("cooldown = \"24h\"", "cooldown = \"1s\"");
    let cfg = format!(
        "{cfg}\n[venues.eth]\nkind = \"evm\"\nrpc_url = \"{}\"\nchain_id = 31337\nconfirmations = 2\npoll = \"50ms\"\n\n[venues.eth.tokens]\nUSDT = {{ contract = \"{}\", decimals = 6 }}\n",
        anvil.url,
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
    kg.ok(
        &[
            "credential",
            "add",
            "--id",
            "eth",
            "--venue",
            "eth",
            "--kind",
            "evm-key",
        ],
        Some(&format!("{KEY0}\n")),
    );
    kg.ok(
        &[
            "client",
            "add",
            "treasurer",
            "--venue",
            "eth",
            "--action",
            "transfer",
        ],
        None,
    );
    kg.ok(
        &[
            "address",
            "add",
            DEST,
            "--venue",
            "eth",
            "--asset",
            "USDT",
            "--label",
            "cold wallet",
        ],
        None,
    );
    kg.env("KEYGATE_ACTOR", "bob");
    kg.ok(&["address", "approve", "1"], None);
    std::thread::sleep(Duration::from_millis(1100));
    let token_text = kg
        .ok(&["token", "issue", "treasurer"], None)
        .trim()
        .to_string();
    let auth = format!("Bearer {token_text}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let transfer = |addr, amount: &str, client_ref: &str| {
        let body = json!({"venue": "eth", "asset": "USDT", "to": DEST, "amount": amount, "client_ref": client_ref});
        http(
            addr,
            "POST",
            "/v1/transfers",
            &headers,
            body.to_string().as_bytes(),
        )
    };

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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = http(
            serve.addr,
            "GET",
            &format!("/v1/transfers/{id}"),
            &headers,
            b"",
        );
        assert_eq!(g.status, 200, "{}", g.body);
        if g.json()["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "never confirmed: {}", g.body);
        std::thread::sleep(Duration::from_millis(100));
    }
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
