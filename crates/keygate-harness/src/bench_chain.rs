//! `keygate-harness bench chain`: how fast a leaked-key transfer on an EVM chain freezes everything.
//!
//! Starts anvil (no automine) on a loopback port, a fresh SQLite store and the chain watcher in
//! this process (containment `all`), and a bare poller that only asks the node for its block
//! number at the same interval. For each of `--transfers` transfers signed with the treasury's
//! key outside keygate: wait a random fraction of the poll interval (so the block's phase
//! against the polls is random), note the time, mine the block (`evm_mine`), and wait for the
//! watcher's committed freeze. Latency is from just before `evm_mine` (an upper bound of the
//! block's appearance) to the freeze's commit; the baseline is the same for the bare poller's
//! first sight of the block: what polling alone costs, with no judging at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keygate_chain::persist::Reconciled;
use keygate_chain::testing::{Anvil, KEY0, call};
use keygate_chain::tx::Key;
use keygate_chain::watcher::Watcher;
use keygate_chain::{EvmVenue, NATIVE};
use keygate_store::{OpenMode, Store};
use serde_json::json;

use crate::cli::BenchChainArgs;
use keygate_config::engine::duration;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), v[v.len() - 1])
}

/// The anvil binary: --anvil, or KEYGATE_TEST_ANVIL, or where scripts/anvil-env installs it.
fn anvil_bin(a: &BenchChainArgs) -> Result<std::path::PathBuf> {
    let bin = a
        .anvil
        .clone()
        .unwrap_or_else(keygate_chain::testing::anvil_path);
    if !bin.exists() {
        bail!(
            "anvil is not at {}: run scripts/anvil-env (npm package @foundry-rs/anvil-linux-amd64), or pass --anvil PATH",
            bin.display()
        );
    }
    Ok(bin)
}

type Events = tokio::sync::mpsc::UnboundedReceiver<keygate_chain::watcher::Event>;

/// The chain watcher over a fresh SQLite store (containment `all`), watching the treasury key.
struct Watched {
    _dir: tempfile::TempDir,
    store: Store,
    key: Key,
    task: tokio::task::JoinHandle<()>,
    events: Events,
}

async fn start_watcher(anvil: &Anvil, poll: Duration) -> Result<Watched> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        OpenMode::Create,
    )
    .await?;
    store.migrate().await?;
    let key = Key::from_hex(KEY0).map_err(anyhow::Error::msg)?;
    let venue = EvmVenue {
        name: "bench-eth".into(),
        rpc_url: anvil.url.clone(),
        chain_id: 31337,
        credential: "bench-eth".into(),
        confirmations: 2,
        poll,
        reorg_depth: 64,
        tokens: Default::default(),
        timeout: Duration::from_secs(5),
    };
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let watcher = Watcher::new(
        venue,
        store.clone(),
        vec![key.address()],
        Some(keygate_core::freeze::Scope::All),
    )
    .map_err(anyhow::Error::msg)?
    .with_events(tx);
    let task = tokio::spawn(watcher.run());
    Ok(Watched {
        _dir: dir,
        store,
        key,
        task,
        events,
    })
}

/// When the bare poller first saw each block number.
type Seen = Arc<Mutex<HashMap<u64, Instant>>>;

/// The bare poller: asks the node for its block number every `poll`, nothing else.
fn start_poller(
    rpc: &keygate_chain::rpc::Rpc,
    poll: Duration,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let task = {
        let seen = seen.clone();
        let rpc = rpc.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = rpc.block_number().await
                    && let Ok(mut s) = seen.lock()
                {
                    s.entry(n).or_insert_with(Instant::now);
                }
                tokio::time::sleep(poll).await;
            }
        })
    };
    (seen, task)
}

/// One transfer's figures, in milliseconds from just before `evm_mine`.
struct Timing {
    keygate: f64,
    poller: f64,
    mine: f64,
}

/// Sends leaked-key transfer `i`, mines it at a random phase against the polls, and times the
/// watcher's freeze and the bare poller's first sight of the block.
async fn one_transfer(
    i: usize,
    w: &mut Watched,
    rpc: &keygate_chain::rpc::Rpc,
    seen: &Seen,
    poll: Duration,
    rng_state: &mut u64,
) -> Result<Timing> {
    let hash = call(
        rpc,
        "eth_sendTransaction",
        json!([{"from": w.key.address(), "to": "0xa77ac6e700000000000000000000000000000bad", "value": format!("{:#x}", 1000 + i)}]),
    )
    .await;
    let hash = hash.as_str().context("no transaction hash")?.to_string();
    // A random phase against the polls (xorshift; no need for a real RNG here).
    *rng_state ^= *rng_state << 13;
    *rng_state ^= *rng_state >> 7;
    *rng_state ^= *rng_state << 17;
    let jitter = poll.mul_f64((*rng_state % 1000) as f64 / 1000.0);
    tokio::time::sleep(jitter + Duration::from_millis(5)).await;
    let t0 = Instant::now();
    call(rpc, "evm_mine", json!([])).await;
    let mine = t0.elapsed().as_secs_f64() * 1e3;
    let number = rpc.block_number().await?;
    let deadline = t0 + Duration::from_secs(10);
    let frozen_at = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, w.events.recv())
            .await
            .with_context(|| format!("transfer {i}: no freeze within 10 s"))?
            .context("the watcher stopped")?;
        if ev.outflow.id == hash && ev.outflow.asset == NATIVE {
            match ev.result {
                Reconciled::Unapproved {
                    freeze_id: Some(_), ..
                } => break ev.at,
                other => bail!("transfer {i} was judged {other:?}, not frozen"),
            }
        }
    };
    let seen_at = loop {
        if let Some(t) = seen.lock().ok().and_then(|s| s.get(&number).copied()) {
            break t;
        }
        if Instant::now() > deadline {
            bail!("the bare poller never saw block {number}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    Ok(Timing {
        keygate: frozen_at.duration_since(t0).as_secs_f64() * 1e3,
        poller: seen_at.saturating_duration_since(t0).as_secs_f64() * 1e3,
        mine,
    })
}

pub async fn run(a: &BenchChainArgs) -> Result<()> {
    if a.transfers < 1 {
        bail!("--transfers must be at least 1");
    }
    let poll = Duration::from_millis(duration("--poll", &a.poll)?.max(1) as u64);
    let anvil = Anvil::start_at(anvil_bin(a)?, &["--no-mining"]).await;
    let mut w = start_watcher(&anvil, poll).await?;
    let rpc = anvil.rpc();
    let (seen, poller) = start_poller(&rpc, poll);
    tokio::time::sleep(poll * 3).await;

    eprintln!(
        "keygate bench chain: {} leaked-key transfers, watcher poll {poll:?}, anvil {}",
        a.transfers, anvil.url
    );
    let mut keygate_ms = vec![];
    let mut poller_ms = vec![];
    let mut mine_ms = vec![];
    let mut rng_state: u64 = Instant::now().elapsed().as_nanos() as u64 | 1;
    for i in 0..a.transfers {
        let t = one_transfer(i, &mut w, &rpc, &seen, poll, &mut rng_state).await?;
        keygate_ms.push(t.keygate);
        poller_ms.push(t.poller);
        mine_ms.push(t.mine);
    }
    w.task.abort();
    poller.abort();
    let freezes = w.store.freezes(false).await?.len();
    w.store.close().await;
    let (km, k90, kmax) = stats(keygate_ms);
    let (pm, p90, pmax) = stats(poller_ms);
    let (mm, _, mmax) = stats(mine_ms);
    println!(
        "leaked-key transfers: {}   freezes set: {freezes}   poll: {poll:?}",
        a.transfers
    );
    println!("from just before evm_mine (the block's appearance, upper bound) to:");
    println!(
        "  keygate freeze committed     median {km:7.1} ms   p90 {k90:7.1} ms   max {kmax:7.1} ms"
    );
    println!(
        "  bare poller sees the block   median {pm:7.1} ms   p90 {p90:7.1} ms   max {pmax:7.1} ms   (baseline: polling alone)"
    );
    println!("  (evm_mine itself took median {mm:.1} ms, max {mmax:.1} ms)");
    drop(anvil);
    if a.rescue_trials > 0 {
        rescue(a, poll).await?;
    }
    Ok(())
}

/// The rescue figure: over `--rescue-trials` races on anvil mining a block every
/// `--block-time` s, a thief holding the treasury's key sends a drain at a spread offset into
/// the block interval; keygate's rescuer (polling the pool every `poll`) replaces it. Reports
/// how often keygate won (the drain never mined, the rescue address holding the funds) and the
/// time from the thief's send to keygate's replacement sent, next to a bare pending-pool
/// poller's first sight of the drain in the same run.
async fn rescue(a: &BenchChainArgs, poll: Duration) -> Result<()> {
    use keygate_chain::race::{Race, median_max, offset};
    if a.block_time < 1 {
        bail!("--block-time must be at least 1 (seconds)");
    }
    let block = Duration::from_secs(a.block_time);
    eprintln!(
        "keygate bench chain: {} rescue races, a block every {block:?}, pool poll {poll:?}",
        a.rescue_trials
    );
    let mut race = Race::start_at(anvil_bin(a)?, a.block_time, poll).await;
    let (mut won, mut replaced, mut seen) = (0usize, vec![], vec![]);
    for i in 0..a.rescue_trials {
        let t = race.trial(offset(i, block)).await;
        won += usize::from(t.won);
        replaced.extend(t.replaced_after);
        seen.extend(t.seen_after);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "rescue races: {}   keygate won: {won} ({:.0} %)   block every {block:?}   poll {poll:?}",
        a.rescue_trials,
        100.0 * won as f64 / a.rescue_trials as f64
    );
    println!("from the thief's send of a drain to:");
    if let Some((m, x)) = median_max(&mut replaced) {
        println!(
            "  keygate replacement sent        median {:7.1} ms   max {:7.1} ms   ({} of {})",
            ms(m),
            ms(x),
            replaced.len(),
            a.rescue_trials
        );
    }
    if let Some((m, x)) = median_max(&mut seen) {
        println!(
            "  bare pool poller sees the drain median {:7.1} ms   max {:7.1} ms   (baseline: polling alone)",
            ms(m),
            ms(x)
        );
    }
    println!(
        "  (a drain sent later in the interval than keygate's answer takes is mined first: that race cannot be won)"
    );
    Ok(())
}
