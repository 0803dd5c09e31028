//! Containment at the venue: the master-account requests that take a leaked sub-account key and
//! its funds out of an attacker's reach, and strict readings of what the venue answered.
//!
//! Each step is a pure builder (what to send, signed with the containment credential by the
//! venue's own signing code) and a parser of the answer into an [`Outcome`]: `Confirmed` (the
//! venue says it is done), `Pending` (accepted, not final yet), `Refused` (the venue said no and
//! nothing happened), `Limited` (over a request limit: nothing happened, wait) or `Unknown`
//! (anything else: the step may or may not have happened). A parser never reads more into an
//! answer than it says: an answer that does not show the step done is not `Confirmed`.
//!
//! Sweeps carry a client transfer id derived from keygate's own containment and step numbers
//! ([`client_transfer_id`]), so a retry is recognisable at the venue and its transfer state can
//! be read back by that id before anything is sent again.
//!
//! Endpoints, parameters and weights are those of the venues' documentation; docs/containment.md
//! lists them with their pages. Nothing here does IO or reads a clock.

mod binance;
mod okx;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Adapter, Finding, Keys, Outgoing, VenueKind};

/// The sub-account being contained, as the venue names it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Binance: the sub-account's email; OKX: its name (`subAcct`).
    pub sub_account: &'a str,
    /// The sub-account API key to lock: its public key id, never its secret.
    pub api_key: &'a str,
}

/// How the leaked key is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum Lock {
    /// Restrict the key to these addresses (keygate's egress), refusing it from anywhere else.
    IpRestrict { addresses: Vec<String> },
    /// Delete the key (OKX only; Binance has no such endpoint for master accounts).
    Delete,
}

/// Which of the sub-account's wallets a balance is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wallet {
    /// Binance: the spot account.
    Spot,
    /// OKX: the funding account (`6`).
    Funding,
    /// OKX: the trading account (`18`).
    Trading,
}

impl Wallet {
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::Spot => "spot",
            Wallet::Funding => "funding",
            Wallet::Trading => "trading",
        }
    }
}

/// A balance the sub-account can transfer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub wallet: Wallet,
}

/// What the venue's answer says about a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Done, as the venue reports it; `venue_ref` is the venue's id for it, if any.
    Confirmed { venue_ref: Option<String> },
    /// Accepted, not final: read its state again later.
    Pending { venue_ref: Option<String> },
    /// The venue said no; nothing happened.
    Refused { reason: String },
    /// Over the venue's request limit; nothing happened. Wait at least `retry_after_ms`.
    Limited {
        retry_after_ms: Option<u64>,
        reason: String,
    },
    /// The answer does not say: the step may or may not have happened.
    Unknown { reason: String },
    /// A state read found no record of it: it never happened, and may be sent (again).
    Absent { reason: String },
}

impl Outcome {
    /// Its name, as audit entries record it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Confirmed { .. } => "confirmed",
            Outcome::Pending { .. } => "pending",
            Outcome::Refused { .. } => "refused",
            Outcome::Limited { .. } => "limited",
            Outcome::Unknown { .. } => "unknown",
            Outcome::Absent { .. } => "absent",
        }
    }

    /// What it says, for people.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Confirmed { venue_ref: Some(r) } => {
                format!("confirmed by the venue (its id {r})")
            }
            Outcome::Confirmed { venue_ref: None } => "confirmed by the venue".into(),
            Outcome::Pending { venue_ref: Some(r) } => {
                format!("accepted, not final yet (venue id {r})")
            }
            Outcome::Pending { venue_ref: None } => "accepted, not final yet".into(),
            Outcome::Refused { reason }
            | Outcome::Limited { reason, .. }
            | Outcome::Unknown { reason }
            | Outcome::Absent { reason } => reason.clone(),
        }
    }

    /// The venue's id for the step, if the answer gave one.
    pub fn venue_ref(&self) -> Option<&str> {
        match self {
            Outcome::Confirmed { venue_ref } | Outcome::Pending { venue_ref } => {
                venue_ref.as_deref()
            }
            _ => None,
        }
    }
}

/// What a request costs against the venue's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Binance: request weight, per minute, per account (UID) and per source address (IP).
    Weight { uid: u32, ip: u32 },
    /// OKX: at most `requests` per `per_ms` on this endpoint.
    Rate {
        endpoint: &'static str,
        requests: u32,
        per_ms: i64,
    },
}

/// A signed containment request and what it costs.
#[derive(Debug, Clone)]
pub struct Request {
    /// A short stable name (`sub.ip_restrict`, `sub.transfer`), for logs and pacing.
    pub endpoint: &'static str,
    pub out: Outgoing,
    pub cost: Cost,
}

/// Why a containment request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainError {
    #[error("{venue} has no {what} for master accounts; {fix}")]
    Unsupported {
        venue: &'static str,
        what: &'static str,
        fix: &'static str,
    },
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The client transfer id of step `step` of containment `containment_id`: letters and digits
/// only, at most 32 (OKX's `clientId` rule; Binance's `clientTranId` takes it as it is), the
/// same every time it is computed, so a retry carries the id of the first attempt.
pub fn client_transfer_id(containment_id: i64, step: i64) -> String {
    format!("kgc{}s{}", containment_id.max(0), step.max(0))
}

/// Checks a client transfer id as [`client_transfer_id`] makes them.
fn check_client_id(id: &str) -> Result<(), ContainError> {
    if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ContainError::Invalid {
            what: "client transfer id",
            value: id.chars().take(40).collect(),
            why: "it must be 1-32 letters and digits",
        })
    }
}

/// Checks the target: a sub-account name and a key id the venue could have issued.
fn check_target(t: &Target<'_>) -> Result<(), ContainError> {
    let printable =
        |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    if !printable(t.sub_account) {
        return Err(ContainError::Invalid {
            what: "sub_account",
            value: t.sub_account.chars().take(40).collect(),
            why: "it must be 1-128 printable ASCII characters (Binance: the email, OKX: the name)",
        });
    }
    if !printable(t.api_key) {
        return Err(ContainError::Invalid {
            what: "sub-account API key",
            value: String::new(),
            why: "it must be 1-128 printable ASCII characters",
        });
    }
    Ok(())
}

/// Checks the addresses a key is locked to: at least one, at most 20 (OKX's limit), each an IP
/// address.
fn check_addresses(addresses: &[String]) -> Result<(), ContainError> {
    if addresses.is_empty() || addresses.len() > 20 {
        return Err(ContainError::Invalid {
            what: "egress addresses",
            value: addresses.len().to_string(),
            why: "a key is locked to 1-20 addresses; an empty list would unlock it at OKX",
        });
    }
    for a in addresses {
        if a.parse::<std::net::IpAddr>().is_err() {
            return Err(ContainError::Invalid {
                what: "egress address",
                value: a.chars().take(40).collect(),
                why: "write an IP address such as 203.0.113.7",
            });
        }
    }
    Ok(())
}

/// Checks a sweep's holding: a positive amount of an asset symbol.
fn check_holding(h: &Holding) -> Result<(), ContainError> {
    if h.amount <= Decimal::ZERO {
        return Err(ContainError::Invalid {
            what: "sweep amount",
            value: h.amount.to_string(),
            why: "it must be more than zero",
        });
    }
    crate::asset("asset", &h.asset).map_err(|_| ContainError::Invalid {
        what: "asset",
        value: h.asset.chars().take(40).collect(),
        why: "an asset is 1-20 letters and digits",
    })?;
    Ok(())
}

impl Adapter {
    /// The request that locks the target's key as `lock` says.
    pub fn lock_key(
        &self,
        t: &Target<'_>,
        lock: &Lock,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Result<Request, ContainError> {
        check_target(t)?;
        if let Lock::IpRestrict { addresses } = lock {
            check_addresses(addresses)?;
        }
        match self.kind {
            VenueKind::Binance => binance::lock_key(self, t, lock, keys, now_ms),
            VenueKind::Okx => okx::lock_key(t, lock, keys, now_ms),
        }
    }

    /// What the answer to [`Adapter::lock_key`] says.
    pub fn parse_lock(&self, t: &Target<'_>, lock: &Lock, status: u16, body: &[u8]) -> Outcome {
        match self.kind {
            VenueKind::Binance => binance::parse_lock(t, lock, status, body),
            VenueKind::Okx => okx::parse_lock(t, lock, status, body),
        }
    }

    /// Whether the venue has a switch that stops transfers out of a sub-account.
    pub fn can_stop_transfers(&self) -> bool {
        self.kind == VenueKind::Okx
    }

    /// The request that stops transfers out of the target sub-account.
    pub fn stop_transfers(
        &self,
        t: &Target<'_>,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Result<Request, ContainError> {
        check_target(t)?;
        match self.kind {
            VenueKind::Binance => Err(ContainError::Unsupported {
                venue: "binance",
                what: "switch that stops a sub-account's transfers out",
                fix: "set [containment] stop_transfers = false for it, or leave it: keygate does not plan the step for Binance",
            }),
            VenueKind::Okx => okx::stop_transfers(t, keys, now_ms),
        }
    }

    /// What the answer to [`Adapter::stop_transfers`] says.
    pub fn parse_stop_transfers(&self, t: &Target<'_>, status: u16, body: &[u8]) -> Outcome {
        match self.kind {
            VenueKind::Binance => Outcome::Refused {
                reason: "Binance has no transfer-out switch".into(),
            },
            VenueKind::Okx => okx::parse_stop_transfers(t, status, body),
        }
    }

    /// The reads of the target sub-account's balances, one per wallet.
    pub fn balance_reads(
        &self,
        t: &Target<'_>,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Result<Vec<(Wallet, Request)>, ContainError> {
        check_target(t)?;
        Ok(match self.kind {
            VenueKind::Binance => vec![(Wallet::Spot, binance::balances(self, t, keys, now_ms))],
            VenueKind::Okx => vec![
                (Wallet::Funding, okx::funding_balances(t, keys, now_ms)),
                (Wallet::Trading, okx::trading_balances(t, keys, now_ms)),
            ],
        })
    }

    /// The balances of `wallet` that can be transferred now, from the answer to its read.
    /// Zero balances are left out.
    pub fn parse_balances(
        &self,
        wallet: Wallet,
        status: u16,
        body: &[u8],
    ) -> Result<Vec<Holding>, String> {
        if !(200..300).contains(&status) {
            return Err(format!(
                "the balance read was answered HTTP {status}: {}",
                excerpt(body)
            ));
        }
        match (self.kind, wallet) {
            (VenueKind::Binance, Wallet::Spot) => binance::parse_balances(body),
            (VenueKind::Okx, Wallet::Funding) => okx::parse_funding_balances(body),
            (VenueKind::Okx, Wallet::Trading) => okx::parse_trading_balances(body),
            (kind, w) => Err(format!(
                "{} has no {} wallet keygate reads",
                kind.as_str(),
                w.as_str()
            )),
        }
    }

    /// The transfer of `h` from the target sub-account to the master account, carrying
    /// `client_id`.
    pub fn sweep(
        &self,
        t: &Target<'_>,
        h: &Holding,
        client_id: &str,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Result<Request, ContainError> {
        check_target(t)?;
        check_holding(h)?;
        check_client_id(client_id)?;
        match self.kind {
            VenueKind::Binance => binance::sweep(self, t, h, client_id, keys, now_ms),
            VenueKind::Okx => okx::sweep(t, h, client_id, keys, now_ms),
        }
    }

    /// What the answer to [`Adapter::sweep`] says.
    pub fn parse_sweep(&self, client_id: &str, status: u16, body: &[u8]) -> Outcome {
        match self.kind {
            VenueKind::Binance => binance::parse_sweep(client_id, status, body),
            VenueKind::Okx => okx::parse_sweep(client_id, status, body),
        }
    }

    /// The read of the state of the sweep that carried `client_id` (sent at `since_ms` or
    /// later).
    pub fn sweep_state(
        &self,
        t: &Target<'_>,
        client_id: &str,
        since_ms: i64,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Result<Request, ContainError> {
        check_target(t)?;
        check_client_id(client_id)?;
        match self.kind {
            VenueKind::Binance => Ok(binance::sweep_state(
                self, t, client_id, since_ms, keys, now_ms,
            )),
            VenueKind::Okx => Ok(okx::sweep_state(client_id, keys, now_ms)),
        }
    }

    /// What the answer to [`Adapter::sweep_state`] says: `Confirmed` if the venue shows the
    /// transfer done, `Pending` if not final, `Refused` if it failed, `Absent` if the venue has
    /// no transfer with that id (nothing moved), else `Unknown` or `Limited`.
    pub fn parse_sweep_state(&self, client_id: &str, status: u16, body: &[u8]) -> Outcome {
        match self.kind {
            VenueKind::Binance => binance::parse_sweep_state(client_id, status, body),
            VenueKind::Okx => okx::parse_sweep_state(client_id, status, body),
        }
    }

    /// What `keygate doctor` says of a containment credential, from the answer to
    /// [`Adapter::restrictions`] read with it: what is unsafe, and what containment needs that
    /// the key lacks.
    pub fn parse_containment_permissions(
        &self,
        needs: &Needs,
        body: &[u8],
    ) -> Result<Vec<Finding>, String> {
        match self.kind {
            VenueKind::Binance => binance::parse_permissions(needs, body),
            VenueKind::Okx => okx::parse_permissions(needs, body),
        }
    }
}

/// What containment will ask a containment key to do, for [`Adapter::parse_containment_permissions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A lock by IP restriction or deletion (any lock at all).
    pub lock: bool,
    pub stop_transfers: bool,
    pub sweep: bool,
}

/// An amount as the venues write them: digits with at most one point, nothing else (no sign,
/// exponent or blank).
pub(crate) fn plain_decimal(text: &str) -> Option<Decimal> {
    let ok = !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && !text.starts_with('.')
        && !text.ends_with('.');
    if !ok {
        return None;
    }
    text.parse().ok()
}

/// The start of an answer body, for an error message (answers carry no secrets; still cut
/// short).
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// An outcome for an HTTP status that is not a success, whatever the body: 429 and 418 are
/// limits, 5xx and anything unexpected unknown. `None` for 4xx, which the venue's parser reads.
pub(crate) fn by_status(status: u16, body: &[u8]) -> Option<Outcome> {
    match status {
        200..=299 => None,
        429 | 418 => Some(Outcome::Limited {
            retry_after_ms: None,
            reason: format!("HTTP {status}: {}", excerpt(body)),
        }),
        400..=499 => None,
        _ => Some(Outcome::Unknown {
            reason: format!("HTTP {status}: {}", excerpt(body)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdapterOptions;

    pub(crate) fn keys() -> Keys<'static> {
        Keys {
            api_key: "master-key",
            secret: "master-secret",
            passphrase: Some("master-pass"),
        }
    }

    pub(crate) fn target() -> Target<'static> {
        Target {
            sub_account: "sub1@example.com",
            api_key: "subKey123",
        }
    }

    #[test]
    fn client_ids_are_stable_alphanumeric_and_distinct() {
        assert_eq!(client_transfer_id(12, 3), "kgc12s3");
        assert_eq!(client_transfer_id(12, 3), client_transfer_id(12, 3));
        assert_ne!(client_transfer_id(1, 23), client_transfer_id(12, 3));
        let longest = client_transfer_id(i64::MAX, i64::MAX);
        assert!(longest.len() <= 45);
        // Ids as keygate makes them from store sequence numbers fit the venues' 32.
        assert!(check_client_id(&client_transfer_id(1 << 40, 1 << 20)).is_ok());
        assert!(check_client_id("kg-1").is_err());
        assert!(check_client_id("").is_err());
    }

    #[test]
    fn builders_refuse_bad_input_with_what_to_do() {
        let a = Adapter::new(VenueKind::Okx, AdapterOptions::default());
        let empty = Lock::IpRestrict { addresses: vec![] };
        let e = a.lock_key(&target(), &empty, &keys(), 0).unwrap_err();
        assert!(e.to_string().contains("unlock it at OKX"), "{e}");
        let bad = Lock::IpRestrict {
            addresses: vec!["example.com".into()],
        };
        assert!(a.lock_key(&target(), &bad, &keys(), 0).is_err());
        let t = Target {
            sub_account: "",
            api_key: "k",
        };
        assert!(a.stop_transfers(&t, &keys(), 0).is_err());
        let h = Holding {
            asset: "USDT".into(),
            amount: Decimal::ZERO,
            wallet: Wallet::Funding,
        };
        assert!(a.sweep(&target(), &h, "kgc1s1", &keys(), 0).is_err());
        let b = Adapter::new(VenueKind::Binance, AdapterOptions::default());
        let e = b
            .lock_key(&target(), &Lock::Delete, &keys(), 0)
            .unwrap_err();
        assert!(matches!(e, ContainError::Unsupported { .. }), "{e}");
        assert!(b.stop_transfers(&target(), &keys(), 0).is_err());
        assert!(!b.can_stop_transfers() && a.can_stop_transfers());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_any_bytes(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            status in 100u16..600,
        ) {
            let lock = Lock::IpRestrict { addresses: vec!["127.0.0.1".into()] };
            for kind in [VenueKind::Binance, VenueKind::Okx] {
                let a = Adapter::new(kind, AdapterOptions::default());
                let _ = a.parse_lock(&target(), &lock, status, &body);
                let _ = a.parse_lock(&target(), &Lock::Delete, status, &body);
                let _ = a.parse_stop_transfers(&target(), status, &body);
                for w in [Wallet::Spot, Wallet::Funding, Wallet::Trading] {
                    let _ = a.parse_balances(w, status, &body);
                }
                let _ = a.parse_sweep("kgc1s1", status, &body);
                let _ = a.parse_sweep_state("kgc1s1", status, &body);
                let needs = Needs { lock: true, stop_transfers: true, sweep: true };
                let _ = a.parse_containment_permissions(&needs, &body);
            }
        }

        #[test]
        fn parsers_never_panic_on_json_shaped_text(s in "\\{\"(code|data|result|status|balances|tranId|ipList|apiKey)\":\\PC{0,60}\\}") {
            for kind in [VenueKind::Binance, VenueKind::Okx] {
                let a = Adapter::new(kind, AdapterOptions::default());
                let _ = a.parse_sweep("kgc1s1", 200, s.as_bytes());
                let _ = a.parse_sweep_state("kgc1s1", 200, s.as_bytes());
                let _ = a.parse_balances(Wallet::Spot, 200, s.as_bytes());
                let _ = a.parse_balances(Wallet::Trading, 200, s.as_bytes());
            }
        }
    }
}
