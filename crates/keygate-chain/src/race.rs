//! The rescue race on anvil (feature `testing`: for the tests and `keygate-harness bench
//! chain`): a thief holding the treasury's key sends a drain while anvil mines a block every
//! interval; keygate's [`Rescuer`] sees it pending and replaces it; a bare pending-pool poller
//! beside it notes when the pool first shows the drain (the baseline). Each trial reports
//! whether keygate won (the drain was never mined and the rescue address holds the funds) and
//! the times from the thief's send.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support (feature `testing`, never in a release build): a failure is a failed test"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use keygate_store::{OpenMode, Store};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::rescue::pool::Pool;
use crate::rescue::{RescueSetup, Rescuer, Sent, Trigger};
use crate::rpc::Rpc;
use crate::testing::{Anvil, KEY0, call};
use crate::tx::{Key, Plan, sign};
use crate::{EvmVenue, Token};

/// Where the thief sends the drain.
pub const THIEF: &str = "0x00000000000000000000000000000000000000dd";
/// The venue's rescue address.
pub const RESCUE_TO: &str = "0x00000000000000000000000000000000000000cc";

/// The ETH the treasury holds at the start of each trial (10 ETH).
pub fn funding() -> U256 {
    U256::from(10u64) * U256::from(1_000_000_000_000_000_000u64)
}

/// A venue on `anvil`, the treasury signing with [`KEY0`], with `tokens`.
pub fn venue(anvil: &Anvil, tokens: BTreeMap<String, Token>, poll: Duration) -> EvmVenue {
    EvmVenue {
        name: "eth".into(),
        rpc_url: anvil.url.clone(),
        chain_id: 31337,
        credential: "eth".into(),
        confirmations: 1,
        poll,
        reorg_depth: 16,
        tokens,
        timeout: Duration::from_secs(5),
    }
}

/// A fresh store in `dir`.
pub async fn store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}/k.db", dir.display());
    let store = Store::open(&url, OpenMode::Create).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Sets `who`'s ETH balance (anvil).
pub async fn set_balance(rpc: &Rpc, who: Address, wei: U256) {
    call(rpc, "anvil_setBalance", json!([who, wei])).await;
}

/// The thief's drain: everything but its gas to [`THIEF`], at the treasury's next mined nonce,
/// at the node's fees (twice the base fee plus the suggested tip). Returns its hash and when it
/// was sent.
pub async fn drain(rpc: &Rpc, key: &Key) -> (B256, u64, Instant) {
    let from = key.address();
    let nonce = rpc.nonce(&from, "latest").await.unwrap();
    let balance = rpc.balance(&from).await.unwrap();
    let (base, tip) = rpc.fees().await.unwrap();
    let max_fee = base * 2 + tip;
    let gas = 21_000u64;
    let plan = Plan {
        chain_id: 31337,
        from,
        to: THIEF.parse().unwrap(),
        value: balance - U256::from(gas) * U256::from(max_fee),
        input: Default::default(),
        gas_limit: gas,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
    };
    let s = sign(key, &plan, nonce).unwrap();
    let at = Instant::now();
    rpc.send_raw(&s.raw).await.unwrap();
    (s.hash, nonce, at)
}

/// A bare pending-pool poller: polls the pool for `from`'s transactions every `poll` and sends
/// each new hash it sees, with when it saw it.
pub fn bare_poller(
    rpc: Rpc,
    from: Address,
    poll: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    UnboundedReceiver<(B256, Instant)>,
) {
    let (tx, rx) = unbounded_channel();
    let task = tokio::spawn(async move {
        let pool = Pool::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            if let Ok((true, _)) = pool.busy(&rpc, &from).await
                && let Ok(txs) = pool.from(&rpc, &from).await
            {
                for t in txs {
                    if seen.insert(t.hash) {
                        let _ = tx.send((t.hash, Instant::now()));
                    }
                }
            }
            tokio::time::sleep(poll).await;
        }
    });
    (task, rx)
}

/// One trial's outcome.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The drain was never mined and the rescue address gained at least 99 % of what it took.
    pub won: bool,
    /// Thief's send -> keygate's replacement sent.
    pub replaced_after: Option<Duration>,
    /// Thief's send -> the bare poller saw it.
    pub seen_after: Option<Duration>,
}

/// A running race: anvil with interval mining, a store, keygate's rescuer (and a bare poller)
/// on the treasury.
pub struct Race {
    pub anvil: Anvil,
    pub store: Store,
    pub key: Key,
    rescuer: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
    sent: UnboundedReceiver<Sent>,
    seen: UnboundedReceiver<(B256, Instant)>,
    _triggers: tokio::sync::mpsc::UnboundedSender<Trigger>,
    _dir: tempfile::TempDir,
}

impl Race {
    /// Anvil mining a block every `block_time` seconds; both pollers every `poll`.
    pub async fn start(block_time: u64, poll: Duration) -> Race {
        Self::start_at(crate::testing::anvil_path(), block_time, poll).await
    }

    /// [`Race::start`] with the anvil binary at `bin`.
    pub async fn start_at(bin: std::path::PathBuf, block_time: u64, poll: Duration) -> Race {
        let anvil = Anvil::start_at(bin, &["--block-time", &block_time.to_string()]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let key = Key::from_hex(KEY0).unwrap();
        let v = venue(&anvil, BTreeMap::new(), poll);
        let setup = RescueSetup {
            to: RESCUE_TO.parse().unwrap(),
            endpoints: vec![],
        };
        let (sent_tx, sent) = unbounded_channel();
        let r = Rescuer::new(v, store.clone(), Key::from_hex(KEY0).unwrap(), &setup, None)
            .unwrap()
            .with_sent(sent_tx);
        let (triggers, rx) = unbounded_channel();
        let rescuer = tokio::spawn(r.run(rx, poll, || async { true }));
        let (poller, seen) = bare_poller(anvil.rpc(), key.address(), poll);
        Race {
            anvil,
            store,
            key,
            rescuer,
            poller,
            sent,
            seen,
            _triggers: triggers,
            _dir: dir,
        }
    }

    /// Waits for the next block, then `offset` more.
    async fn after_block(&self, offset: Duration) {
        let rpc = self.anvil.rpc();
        let n = rpc.block_number().await.unwrap();
        let start = Instant::now();
        while rpc.block_number().await.unwrap() == n {
            assert!(start.elapsed() < Duration::from_secs(30), "no block mined");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(offset).await;
    }

    /// Waits until no rescue is open (the one before is done).
    async fn settled(&self) {
        let start = Instant::now();
        while self.store.rescue_open("eth").await.unwrap().is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the rescue did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One trial: the treasury funded, the thief's drain sent `offset` after a block.
    pub async fn trial(&mut self, offset: Duration) -> Trial {
        let rpc = self.anvil.rpc();
        self.settled().await;
        let to: Address = RESCUE_TO.parse().unwrap();
        set_balance(&rpc, to, U256::ZERO).await;
        set_balance(&rpc, self.key.address(), funding()).await;
        while self.sent.try_recv().is_ok() {}
        while self.seen.try_recv().is_ok() {}
        self.after_block(offset).await;
        let (hash, nonce, at) = drain(&rpc, &self.key).await;
        let replaced_after = wait_for(&mut self.sent, |s| s.nonce == nonce)
            .await
            .map(|s| s.at.saturating_duration_since(at));
        let seen_after = wait_for(&mut self.seen, |(h, _)| *h == hash)
            .await
            .map(|(_, t)| t.saturating_duration_since(at));
        // The nonce is mined (by one of the two).
        let start = Instant::now();
        while rpc.nonce(&self.key.address(), "latest").await.unwrap() <= nonce {
            assert!(start.elapsed() < Duration::from_secs(30), "nonce not mined");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let thief_mined = rpc.receipt(&hash).await.unwrap().is_some();
        let rescued = rpc.balance(&to).await.unwrap();
        let won = !thief_mined && rescued * U256::from(100u8) >= funding() * U256::from(99u8);
        self.settled().await;
        Trial {
            won,
            replaced_after,
            seen_after,
        }
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        self.rescuer.abort();
        self.poller.abort();
    }
}

/// The first item of `rx` that `f` accepts, within 10 s.
async fn wait_for<T>(rx: &mut UnboundedReceiver<T>, f: impl Fn(&T) -> bool) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(t)) if f(&t) => return Some(t),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// The offset after a block of trial `i` of a run: spread over the first 80 % of the block
/// interval `block_time`, the same in every run.
pub fn offset(i: usize, block_time: Duration) -> Duration {
    let spread = block_time.mul_f64(0.8);
    // A fixed stride through the interval (golden ratio), not random: runs compare.
    let frac = ((i as f64) * 0.618_033_988_75).fract();
    spread.mul_f64(frac)
}

/// Median and max of `d`.
pub fn median_max(d: &mut [Duration]) -> Option<(Duration, Duration)> {
    d.sort();
    Some((*d.get(d.len() / 2)?, *d.last()?))
}
