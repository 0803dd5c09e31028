//! One step of the open rescue: what became of the nonces it signed at (mined by ours, or
//! lost to another transaction), then either a new round at the treasury's mined nonce (the
//! sweep of what is left, or done when nothing is) or, for each nonce still open, the next rung
//! once a new block is out (or the same bytes again, to every endpoint).
//!
//! It must not decide what to sweep or what to pay: that is [`super::plan`] and
//! [`super::ladder`]. Every transaction is recorded before it is sent.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use alloy::primitives::{B256, U256};
use tokio::task::JoinSet;

use super::ladder::{self, Fees};
use super::plan::{self, Holding, Sweep};
use super::{RescueError, Rescuer, Sent};
use crate::nonce::{Refusal, classify};
use crate::persist::{RescueRecord, RescueTx, RescueTxState, Rescues};
use crate::tx::{Plan, call, sign, token_balance};
use crate::{NATIVE, NATIVE_DECIMALS, hash_text};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No rescue is open.
    Idle,
    /// Transactions signed (and sent) this step: a new round, or bumps.
    Signed(usize),
    /// Waiting for a block; what was signed was sent again where needed.
    Waiting,
    /// The rescue is done: nothing is left to sweep.
    Done,
}

impl<P: Rescues> Rescuer<P> {
    /// One step of the venue's open rescue (see the module).
    pub async fn drive(&self) -> Result<Progress, RescueError> {
        let Some(r) = self.store.rescue_open(&self.venue.name).await? else {
            return Ok(Progress::Idle);
        };
        let from = self.treasury();
        let head = self.rpc().block_number().await?;
        let latest = self.rpc().nonce(&from, "latest").await?;
        let r = if self.resolve(&r, latest).await? {
            match self.store.rescue_open(&self.venue.name).await? {
                Some(r) => r,
                None => return Ok(Progress::Idle),
            }
        } else {
            r
        };
        let open = open_nonces(&r, latest);
        if open.is_empty() {
            return self.round(&r, latest, head).await;
        }
        let foreign = self.foreign_fees().await?;
        let mut signed = 0;
        for (nonce, rungs) in open {
            signed += self
                .climb(&r, nonce, &rungs, head, foreign.get(&nonce))
                .await?;
        }
        Ok(if signed > 0 {
            Progress::Signed(signed)
        } else {
            Progress::Waiting
        })
    }

    /// Marks every nonce below `latest` (mined) final: the rung of ours whose receipt the node
    /// has is `mined` and the others `replaced`; without one, every rung is `lost`.
    /// Whether it marked any.
    async fn resolve(&self, r: &RescueRecord, latest: u64) -> Result<bool, RescueError> {
        let mut by_nonce: BTreeMap<u64, Vec<&RescueTx>> = BTreeMap::new();
        for t in r
            .txs
            .iter()
            .filter(|t| t.nonce < latest && !t.state.is_final())
        {
            by_nonce.entry(t.nonce).or_default().push(t);
        }
        let any = !by_nonce.is_empty();
        for (nonce, rungs) in by_nonce {
            let mut mined = None;
            for t in rungs.iter().rev() {
                let hash: B256 = t.tx_hash.parse().map_err(|_| {
                    RescueError::Corrupt(format!("{} is not a transaction hash", t.tx_hash))
                })?;
                if self.rpc().receipt(&hash).await?.is_some() {
                    mined = Some(t.tx_hash.clone());
                    break;
                }
            }
            for t in rungs {
                let (state, detail) = match &mined {
                    Some(h) if *h == t.tx_hash => {
                        (RescueTxState::Mined, format!("mined at nonce {nonce}"))
                    }
                    Some(h) => (
                        RescueTxState::Replaced,
                        format!("rung {h} of nonce {nonce} was mined"),
                    ),
                    None => (
                        RescueTxState::Lost,
                        format!("nonce {nonce} was used by a transaction keygate did not sign"),
                    ),
                };
                self.store
                    .rescue_tx_state(&t.tx_hash, state, &detail, &self.actor)
                    .await?;
                if state == RescueTxState::Lost {
                    tracing::error!(venue = %self.venue.name, rescue = r.id, nonce, asset = %t.asset, "a rescue transaction lost its nonce to another transaction; sweeping what is left at the next nonce");
                }
            }
        }
        Ok(any)
    }

    /// A new round at nonce `latest`: the sweep of what is left, or done.
    async fn round(
        &self,
        r: &RescueRecord,
        latest: u64,
        head: u64,
    ) -> Result<Progress, RescueError> {
        let foreign = self.foreign_fees().await?;
        let (base, tip) = self.rpc().fees().await?;
        let outbid = foreign.values().copied().max_by_key(|f| f.max_fee);
        let first = ladder::first(base, tip, outbid);
        let top = ladder::ceiling(first);
        let prices: HashMap<String, rust_decimal::Decimal> =
            self.store.usd_prices().await?.into_iter().collect();
        let sweeps = plan::sweep(&self.holdings().await?, top.max_fee, |a| {
            prices.get(a).copied()
        });
        if sweeps.is_empty() {
            let mined = r
                .txs
                .iter()
                .filter(|t| t.state == RescueTxState::Mined)
                .count();
            let lost = r
                .txs
                .iter()
                .filter(|t| t.state == RescueTxState::Lost)
                .count();
            let outcome = format!(
                "nothing left to sweep: {mined} transactions of the rescue mined, {lost} nonces lost to other transactions"
            );
            self.store.rescue_done(r.id, &outcome, &self.actor).await?;
            tracing::warn!(venue = %self.venue.name, rescue = r.id, "{outcome}");
            return Ok(Progress::Done);
        }
        let mut signed = 0;
        for (nonce, s) in (latest..).zip(sweeps.iter()) {
            let fees = match foreign.get(&nonce) {
                Some(f) => ladder::first(base, tip, Some(*f)),
                None => first,
            };
            if self.put(r.id, nonce, 0, s, fees, head).await? {
                signed += 1;
            }
        }
        Ok(Progress::Signed(signed))
    }

    /// Nonce `nonce`, still open with `rungs` (lowest first): its next rung once a block is out
    /// since its newest was signed (or the newest again at the ceiling); in the same block, the
    /// newest again only if no node took it yet. How many it signed (0 or 1).
    async fn climb(
        &self,
        r: &RescueRecord,
        nonce: u64,
        rungs: &[&RescueTx],
        head: u64,
        foreign: Option<&Fees>,
    ) -> Result<usize, RescueError> {
        let (Some(first), Some(newest)) = (rungs.first(), rungs.last()) else {
            return Ok(0);
        };
        let current = Fees {
            max_fee: newest.max_fee,
            tip: newest.tip,
        };
        let top = ladder::ceiling(Fees {
            max_fee: first.max_fee,
            tip: first.tip,
        });
        let outbid = foreign.is_some_and(|f| f.max_fee >= current.max_fee || f.tip >= current.tip);
        if head > newest.block || outbid {
            if let Some(fees) = ladder::next(current, foreign.copied(), top) {
                let s = sweep_of(self, newest)?;
                let rung = newest.rung.saturating_add(1);
                return Ok(usize::from(
                    self.put(r.id, nonce, rung, &s, fees, head).await?,
                ));
            }
            tracing::warn!(venue = %self.venue.name, rescue = r.id, nonce, "a rescue transaction is at its ladder's ceiling and not mined yet; sending it again");
        } else if newest.state == RescueTxState::Sent && self.in_pool(newest).await? {
            return Ok(0);
        }
        self.broadcast(newest).await?;
        Ok(0)
    }

    /// Whether the node still has `t` (pending or mined); a dropped one is sent again.
    async fn in_pool(&self, t: &RescueTx) -> Result<bool, RescueError> {
        let hash: B256 = t.tx_hash.parse().map_err(|_| {
            RescueError::Corrupt(format!("{} is not a transaction hash", t.tx_hash))
        })?;
        Ok(self.rpc().transaction(&hash).await?.is_some())
    }

    /// Signs the sweep `s` at `nonce` and `rung` with `fees`, records it, and sends it; false
    /// if that rung was recorded already (by another instance).
    async fn put(
        &self,
        rescue_id: i64,
        nonce: u64,
        rung: u32,
        s: &Sweep,
        fees: Fees,
        head: u64,
    ) -> Result<bool, RescueError> {
        let (to, value, input) = call(s.token, self.to, s.units);
        let plan = Plan {
            chain_id: self.venue.chain_id,
            from: self.treasury(),
            to,
            value,
            input,
            gas_limit: s.gas,
            max_fee_per_gas: fees.max_fee,
            max_priority_fee_per_gas: fees.tip,
        };
        let signed = sign(&self.key, &plan, nonce).map_err(|_| RescueError::Key)?;
        let rec = RescueTx {
            nonce,
            rung,
            asset: s.asset.clone(),
            units: s.units.to_string(),
            gas: s.gas,
            max_fee: fees.max_fee,
            tip: fees.tip,
            tx_hash: hash_text(&signed.hash),
            raw: hex::encode(&signed.raw),
            block: head,
            state: RescueTxState::Signed,
        };
        if !self
            .store
            .rescue_signed(rescue_id, &rec, &self.actor)
            .await?
        {
            return Ok(false);
        }
        self.broadcast(&rec).await?;
        Ok(true)
    }

    /// Sends `t`'s bytes to every endpoint at once and records what came of it: `sent` if one
    /// took it (or had it), `refused` if every one refused it outright, else `unknown`.
    async fn broadcast(&self, t: &RescueTx) -> Result<(), RescueError> {
        let raw = hex::decode(&t.raw)
            .map_err(|_| RescueError::Corrupt(format!("the bytes of {} are not hex", t.tx_hash)))?;
        let mut set = JoinSet::new();
        for rpc in &self.rpcs {
            let (rpc, raw) = (rpc.clone(), raw.clone());
            set.spawn(async move { rpc.send_raw(&raw).await });
        }
        let mut took = false;
        let mut refused = 0;
        let mut last = String::new();
        while let Some(answer) = set.join_next().await {
            match answer {
                Ok(Ok(_)) => took = true,
                Ok(Err(e)) => {
                    match classify(&e) {
                        Refusal::AlreadyKnown => took = true,
                        Refusal::Nonce { .. } | Refusal::Refused => refused += 1,
                        Refusal::Unclear => {}
                    }
                    last = e.to_string();
                }
                Err(_) => {}
            }
        }
        if let Some(tx) = &self.sent
            && let Ok(hash) = t.tx_hash.parse()
        {
            let _ = tx.send(Sent {
                nonce: t.nonce,
                rung: t.rung,
                hash,
                asset: t.asset.clone(),
                at: Instant::now(),
            });
        }
        let state = if took {
            RescueTxState::Sent
        } else if refused == self.rpcs.len() {
            RescueTxState::Refused
        } else {
            RescueTxState::Unknown
        };
        let detail = if took {
            format!("sent to {} endpoint(s)", self.rpcs.len())
        } else {
            last
        };
        self.store
            .rescue_tx_state(&t.tx_hash, state, &detail, &self.actor)
            .await?;
        Ok(())
    }

    /// The fees of the pending transactions from the treasury that keygate did not sign, by
    /// nonce (the highest at each).
    async fn foreign_fees(&self) -> Result<HashMap<u64, Fees>, RescueError> {
        let from = self.treasury();
        let mut out: HashMap<u64, Fees> = HashMap::new();
        for t in self.pool.from(self.rpc(), &from).await? {
            if self.store.rescue_tx(&hash_text(&t.hash)).await? {
                continue;
            }
            let f = t.fees();
            let e = out.entry(t.nonce.to::<u64>()).or_insert(f);
            if f.max_fee > e.max_fee {
                *e = f;
            }
        }
        Ok(out)
    }

    /// What the treasury holds of ETH and each listed token, with the gas each transfer of it
    /// to the rescue address takes (the node's estimate and a 20 % margin; 21,000 for ETH to an
    /// account without code).
    async fn holdings(&self) -> Result<Vec<Holding>, RescueError> {
        let from = self.treasury();
        let eth = self.rpc().balance(&from).await?;
        let gas = |g: u64| g.saturating_add(g / 5);
        let (to, _, input) = call(None, self.to, U256::ZERO);
        let eth_gas = match self
            .rpc()
            .estimate_gas(&from, &to, U256::ZERO, &input)
            .await?
        {
            21_000 => 21_000,
            g => gas(g),
        };
        let mut out = vec![Holding {
            asset: NATIVE.into(),
            token: None,
            decimals: NATIVE_DECIMALS,
            units: eth,
            gas: eth_gas,
        }];
        for (symbol, t) in &self.venue.tokens {
            let units = token_balance(self.rpc(), t.contract, from).await?;
            if units.is_zero() {
                continue;
            }
            let (to, value, input) = call(Some(t.contract), self.to, units);
            let g = self.rpc().estimate_gas(&from, &to, value, &input).await?;
            out.push(Holding {
                asset: symbol.clone(),
                token: Some(t.contract),
                decimals: t.decimals,
                units,
                gas: gas(g),
            });
        }
        Ok(out)
    }
}

/// The nonces at or above `latest` the rescue signed at, each with its rungs (lowest first).
fn open_nonces(r: &RescueRecord, latest: u64) -> BTreeMap<u64, Vec<&RescueTx>> {
    let mut out: BTreeMap<u64, Vec<&RescueTx>> = BTreeMap::new();
    for t in r.txs.iter().filter(|t| t.nonce >= latest) {
        out.entry(t.nonce).or_default().push(t);
    }
    for rungs in out.values_mut() {
        rungs.sort_by_key(|t| t.rung);
    }
    out
}

/// The sweep a recorded transaction carries (to sign its next rung).
fn sweep_of<P>(r: &Rescuer<P>, t: &RescueTx) -> Result<Sweep, RescueError> {
    let corrupt = |what: &str| RescueError::Corrupt(format!("{}: {what}", t.tx_hash));
    let (token, _) = r
        .venue
        .asset(&t.asset)
        .ok_or_else(|| corrupt("its asset is no longer listed"))?;
    Ok(Sweep {
        asset: t.asset.clone(),
        token,
        units: t.units.parse().map_err(|_| corrupt("units"))?,
        gas: t.gas,
    })
}
