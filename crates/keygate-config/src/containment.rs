//! Containment at the venue, as the config describes it: `[containment]` (what is done:
//! `lock_key`, `stop_transfers`, `sweep`, `egress_ip`, retries) and, per exchange venue,
//! `containment_credential` and `sub_account`. Checked strictly: a venue with one of the two
//! fields and not the other, a containment credential that is the venue's own, a lock to no
//! address, or a deletion at a venue that cannot delete keys is an error that says what to set.

use keygate_server::containment::{Containment, Policy, Setup};
use keygate_venues::containment::Lock;
use rust_decimal::Decimal;

use crate::error::{Result, bail};
use crate::setup::std_duration;
use crate::{Config, VenueKindConfig};

/// The venues with containment, checked (none: an empty list).
pub fn venues(config: &Config) -> Result<Vec<Setup>> {
    let mut out = vec![];
    for (name, v) in &config.venues {
        let (credential, sub_account) = match (&v.containment_credential, &v.sub_account) {
            (None, None) => continue,
            (Some(c), Some(s)) => (c, s),
            (Some(_), None) => bail!(
                "[venues.{name}] containment_credential needs sub_account: the sub-account keygate's credential belongs to (Binance: its email, OKX: its name)"
            ),
            (None, Some(_)) => bail!(
                "[venues.{name}] sub_account needs containment_credential: the master account's containment key in the vault"
            ),
        };
        if v.kind == VenueKindConfig::Evm {
            bail!(
                "[venues.{name}] is an evm venue: containment_credential and sub_account belong to binance and okx venues"
            );
        }
        let own = v.credential.clone().unwrap_or_else(|| name.clone());
        if *credential == own {
            bail!(
                "[venues.{name}] containment_credential {credential:?} is the venue's own credential: containment needs the master account's key, a different one"
            );
        }
        if !keygate_core::intent::valid_name(credential) {
            bail!(
                "[venues.{name}] containment_credential {credential:?} must be a credential id (letters, digits, . _ - :)"
            );
        }
        let printable = !sub_account.is_empty()
            && sub_account.len() <= 128
            && sub_account.bytes().all(|b| b.is_ascii_graphic())
            && !sub_account.contains(',');
        if !printable {
            bail!(
                "[venues.{name}] sub_account {sub_account:?} must be 1-128 printable characters without spaces or commas"
            );
        }
        if v.kind == VenueKindConfig::Binance && config.containment.lock_key == "delete" {
            bail!(
                "[containment] lock_key = \"delete\", but venue {name} is a Binance venue and Binance has no endpoint that deletes a sub-account's key for a master account; use lock_key = \"ip-restrict\""
            );
        }
        out.push(Setup {
            venue: name.clone(),
            credential: credential.clone(),
            sub_account: sub_account.clone(),
        });
    }
    Ok(out)
}

/// How the leaked key is locked, as `[containment] lock_key` and `egress_ip` say.
fn lock(config: &Config) -> Result<Option<Lock>> {
    let c = &config.containment;
    Ok(match c.lock_key.as_str() {
        "off" => None,
        "delete" => Some(Lock::Delete),
        "ip-restrict" => {
            if c.egress_ip.is_empty() || c.egress_ip.len() > 20 {
                bail!(
                    "[containment] lock_key = \"ip-restrict\" needs egress_ip: keygate's own egress addresses (1-20), the only ones the locked key will work from; or set lock_key = \"off\""
                );
            }
            for a in &c.egress_ip {
                if a.parse::<std::net::IpAddr>().is_err() {
                    bail!(
                        "[containment] egress_ip {a:?} is not an IP address; write one such as 203.0.113.7"
                    );
                }
            }
            Some(Lock::IpRestrict {
                addresses: c.egress_ip.clone(),
            })
        }
        other => bail!("[containment] lock_key {other:?} is not one of ip-restrict, delete, off"),
    })
}

/// The containment policy of `[containment]`, with the engine's pinned prices.
pub fn policy(config: &Config, pinned: &[(String, Decimal)]) -> Result<Policy> {
    let c = &config.containment;
    let d = |field: &str, text: &str| std_duration(&format!("containment.{field}"), text);
    let policy = Policy {
        lock: lock(config)?,
        stop_transfers: c.stop_transfers,
        sweep: c.sweep,
        sweep_rounds: c.sweep_rounds,
        retry_min: d("retry_min", &c.retry_min)?,
        retry_max: d("retry_max", &c.retry_max)?,
        every: d("every", &c.every)?,
        lease_ttl: d("lease_ttl", &c.lease_ttl)?,
        pinned: pinned.to_vec(),
    };
    if policy.sweep && !(1..=20).contains(&policy.sweep_rounds) {
        bail!("[containment] sweep_rounds must be 1-20");
    }
    if policy.retry_min.is_zero() || policy.retry_max < policy.retry_min {
        bail!("[containment] retry_min must be more than zero and at most retry_max");
    }
    if policy.every.is_zero() || policy.lease_ttl <= policy.every {
        bail!("[containment] every must be more than zero and lease_ttl longer than it");
    }
    Ok(policy)
}

/// Containment for the gateway, if any venue has it.
pub fn containment(config: &Config, pinned: &[(String, Decimal)]) -> Result<Option<Containment>> {
    let venues = venues(config)?;
    if venues.is_empty() {
        return Ok(None);
    }
    Ok(Some(Containment::new(policy(config, pinned)?, venues)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, |_| None).unwrap()
    }

    const VENUE: &str = r#"
[venues.bn]
kind = "binance"
base_url = "https://api.binance.com"
containment_credential = "bn-master"
sub_account = "trading1@example.com"
"#;

    #[test]
    fn defaults_lock_by_ip_sweep_and_stop_transfers_and_need_an_egress_address() {
        let e = containment(&parse(VENUE), &[]).unwrap_err().to_string();
        assert!(e.contains("egress_ip"), "{e}");
        let c = containment(
            &parse(&format!(
                "{VENUE}\n[containment]\negress_ip = [\"203.0.113.7\"]\n"
            )),
            &[("USDT".into(), Decimal::ONE)],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.policy.lock,
            Some(Lock::IpRestrict {
                addresses: vec!["203.0.113.7".into()]
            })
        );
        assert!(c.policy.sweep && c.policy.stop_transfers);
        assert_eq!(c.policy.sweep_rounds, 3);
        assert_eq!(c.policy.retry_max, std::time::Duration::from_secs(60));
        assert_eq!(c.policy.pinned.len(), 1);
        assert_eq!(
            c.venues,
            vec![Setup {
                venue: "bn".into(),
                credential: "bn-master".into(),
                sub_account: "trading1@example.com".into()
            }]
        );
        // No venue with a containment credential: no containment, and no egress needed.
        assert!(containment(&parse(""), &[]).unwrap().is_none());
        let off = parse(&format!("{VENUE}\n[containment]\nlock_key = \"off\"\n"));
        assert_eq!(containment(&off, &[]).unwrap().unwrap().policy.lock, None);
    }

    #[test]
    fn bad_containment_settings_say_what_to_set() {
        for (text, says) in [
            (
                "[venues.bn]\nkind = \"binance\"\nbase_url = \"https://x\"\nsub_account = \"a@b\"\n",
                "needs containment_credential",
            ),
            (
                "[venues.bn]\nkind = \"binance\"\nbase_url = \"https://x\"\ncontainment_credential = \"m\"\n",
                "needs sub_account",
            ),
            (
                "[venues.bn]\nkind = \"binance\"\nbase_url = \"https://x\"\ncontainment_credential = \"bn\"\nsub_account = \"a@b\"\n",
                "the venue's own credential",
            ),
            (
                "[venues.bn]\nkind = \"binance\"\nbase_url = \"https://x\"\ncontainment_credential = \"m\"\nsub_account = \"a b\"\n",
                "printable",
            ),
            (
                &format!("{VENUE}\n[containment]\nlock_key = \"delete\"\n"),
                "Binance has no endpoint",
            ),
            (
                &format!("{VENUE}\n[containment]\nlock_key = \"shred\"\n"),
                "not one of",
            ),
            (
                &format!("{VENUE}\n[containment]\negress_ip = [\"example.com\"]\n"),
                "not an IP address",
            ),
            (
                &format!("{VENUE}\n[containment]\nlock_key = \"off\"\nsweep_rounds = 0\n"),
                "sweep_rounds",
            ),
            (
                &format!("{VENUE}\n[containment]\nlock_key = \"off\"\nretry_min = \"2m\"\n"),
                "retry_min",
            ),
        ] {
            let e = containment(&parse(text), &[]).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(
            Config::parse("[containment]\nlock = \"off\"\n", |_| None).is_err(),
            "unknown fields are refused"
        );
        let okx = "[venues.ok]\nkind = \"okx\"\nbase_url = \"https://www.okx.com\"\ncontainment_credential = \"ok-master\"\nsub_account = \"sub1\"\n[containment]\nlock_key = \"delete\"\n";
        assert_eq!(
            containment(&parse(okx), &[]).unwrap().unwrap().policy.lock,
            Some(Lock::Delete)
        );
    }
}
