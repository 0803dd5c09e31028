//! The gateway replay's measure of containment latency: the requests keygate's containment
//! sends at a venue (lock the sub-account key, read its balances, sweep each asset to the
//! master, and on OKX stop its transfers out; keygate-venues' own builders, signed with a master
//! key), sent over HTTP to a venue simulator with a master and a sub-account, and timed. The
//! replay's containment of a venue takes effect that long after the freeze.
//!
//! The probe is a simulator of its own (`Sim::new_with_masters`), beside the replay's: the
//! replay's simulator lists the scenario's books, and keygate-sim builds masters only with its
//! default ones. Its round trips are those of the same simulator code over the same loopback.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keygate_sim::{Account, Master, Restrictions, Sim, SimConfig, SubAccount, VenueKind};
use keygate_venues::containment::{Holding, Lock, Outcome, Target, Wallet, client_transfer_id};
use rust_decimal::Decimal;

/// Where the probe's keys may be used from, and what the locked key is restricted to.
const HERE: &str = "127.0.0.1";

/// A master and its sub-account at the probe simulator, for one kind of venue.
struct ProbeKeys {
    master_key: String,
    master_secret: String,
    passphrase: Option<String>,
    sub_name: String,
    sub_key: String,
}

/// The probe simulator, serving on a loopback port.
pub struct Probe {
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    keys: HashMap<VenueKind, ProbeKeys>,
    http: reqwest::Client,
    runs: i64,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An amount each probe sub-account holds of every asset: more than any sweep takes.
fn plenty() -> Decimal {
    Decimal::from(1_000_000_000_000i64)
}

fn keys(kind: VenueKind) -> ProbeKeys {
    let (name, sub) = match kind {
        VenueKind::Binance => ("probe@replay.invalid", "probe-bn-sub"),
        VenueKind::Okx => ("probesub", "probe-okx-sub"),
    };
    ProbeKeys {
        master_key: format!("probe-master-{kind}"),
        master_secret: format!("probe-master-secret-{kind}"),
        passphrase: (kind == VenueKind::Okx).then(|| "probe-pass".to_string()),
        sub_name: name.into(),
        sub_key: sub.into(),
    }
}

/// Starts the probe with a master and a sub-account holding `assets` for each kind.
pub async fn start(kinds: &[VenueKind], assets: &[String]) -> Result<Probe> {
    let mut accounts = vec![];
    let mut masters = vec![];
    let mut by_kind = HashMap::new();
    for &kind in kinds {
        if by_kind.contains_key(&kind) {
            continue;
        }
        let k = keys(kind);
        accounts.push(Account {
            venue: kind,
            api_key: k.master_key.clone(),
            secret: k.master_secret.clone(),
            passphrase: k.passphrase.clone(),
            balances: Default::default(),
            restrictions: Restrictions {
                ip_restrict: true,
                ip: vec![HERE.into()],
                enable_internal_transfer: true,
                ..Restrictions::default()
            },
        });
        accounts.push(Account {
            venue: kind,
            api_key: k.sub_key.clone(),
            secret: format!("{}-secret", k.sub_key),
            passphrase: k.passphrase.clone(),
            balances: assets.iter().map(|a| (a.clone(), plenty())).collect(),
            restrictions: Restrictions::default(),
        });
        masters.push(Master {
            venue: kind,
            api_key: k.master_key.clone(),
            sub_accounts: vec![SubAccount {
                name: k.sub_name.clone(),
                api_key: k.sub_key.clone(),
            }],
        });
        by_kind.insert(kind, k);
    }
    let sim = Sim::new_with_masters(SimConfig { accounts }, masters)
        .map_err(|e| anyhow::anyhow!("the containment probe's simulator: {e}"))?;
    let listener = tokio::net::TcpListener::bind(format!("{HERE}:0")).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(keygate_sim::serve(listener, sim));
    Ok(Probe {
        url,
        task,
        keys: by_kind,
        http: reqwest::Client::new(),
        runs: 0,
    })
}

impl Probe {
    /// Sends a venue's containment, as keygate's would be for `held` (one sweep per asset),
    /// and returns how long it took in milliseconds (at least 1). Every step must be
    /// confirmed by the simulator, or the measure means nothing and the replay stops.
    pub async fn measure(
        &mut self,
        adapter: &keygate_venues::Adapter,
        held: &[(String, Decimal)],
        now_ms: i64,
    ) -> Result<i64> {
        let kind = crate::replay_setup::venue_kind(adapter.kind);
        let k = self
            .keys
            .get(&kind)
            .with_context(|| format!("the containment probe has no {kind} master"))?;
        let keys = keygate_venues::Keys {
            api_key: &k.master_key,
            secret: &k.master_secret,
            passphrase: k.passphrase.as_deref(),
        };
        let target = Target {
            sub_account: &k.sub_name,
            api_key: &k.sub_key,
        };
        self.runs += 1;
        let began = Instant::now();
        let lock = Lock::IpRestrict {
            addresses: vec![HERE.into()],
        };
        let r = adapter.lock_key(&target, &lock, &keys, now_ms)?;
        let (status, body) = self.send(r).await?;
        confirmed(
            "lock the key",
            adapter.parse_lock(&target, &lock, status, &body),
        )?;
        for (wallet, r) in adapter.balance_reads(&target, &keys, now_ms)? {
            let (status, body) = self.send(r).await?;
            adapter
                .parse_balances(wallet, status, &body)
                .map_err(|e| anyhow::anyhow!("containment probe: {e}"))?;
        }
        let wallet = match adapter.kind {
            keygate_venues::VenueKind::Binance => Wallet::Spot,
            keygate_venues::VenueKind::Okx => Wallet::Trading,
        };
        for (step, (asset, amount)) in held.iter().enumerate() {
            let h = Holding {
                asset: asset.clone(),
                amount: *amount,
                wallet,
            };
            let id = client_transfer_id(self.runs, step as i64 + 1);
            let (status, body) = self
                .send(adapter.sweep(&target, &h, &id, &keys, now_ms)?)
                .await?;
            match adapter.parse_sweep(&id, status, &body) {
                Outcome::Pending { .. } => {
                    let r = adapter.sweep_state(&target, &id, now_ms, &keys, now_ms)?;
                    let (status, body) = self.send(r).await?;
                    confirmed("sweep", adapter.parse_sweep_state(&id, status, &body))?;
                }
                other => confirmed("sweep", other)?,
            }
        }
        if adapter.can_stop_transfers() {
            let r = adapter.stop_transfers(&target, &keys, now_ms)?;
            let (status, body) = self.send(r).await?;
            confirmed(
                "stop transfers",
                adapter.parse_stop_transfers(&target, status, &body),
            )?;
        }
        Ok(i64::try_from(began.elapsed().as_millis())
            .unwrap_or(i64::MAX)
            .max(1))
    }

    async fn send(&self, r: keygate_venues::containment::Request) -> Result<(u16, Vec<u8>)> {
        let resp = keygate_server::venue_request(
            &self.http,
            &self.url,
            r.out,
            std::time::Duration::from_secs(10),
        )
        .map_err(anyhow::Error::msg)?
        .send()
        .await
        .with_context(|| format!("containment probe: {} was not answered", r.endpoint))?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await?.to_vec()))
    }
}

fn confirmed(what: &str, o: Outcome) -> Result<()> {
    match o {
        Outcome::Confirmed { .. } => Ok(()),
        other => bail!(
            "containment probe: the simulator did not confirm \"{what}\" ({}): {}",
            other.name(),
            other.detail()
        ),
    }
}
