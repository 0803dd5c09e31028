//! Freezes and approvals.
//!
//! A freeze stops every decision in its scope: a client, a venue, a credential (every venue
//! that signs with it), or everything. Setting one needs no quorum (it is the safe direction);
//! lifting one needs M of N approvals: Ed25519 signatures, by keys the config lists, over the
//! canonical message [`approval_message`] builds for exactly that freeze and an expiry. The
//! signature check itself is the caller's (this crate does no cryptography beyond hashing).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::intent::{Intent, valid_name};
use crate::time::Millis;

/// What a freeze covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    All,
    Client(String),
    Venue(String),
    Credential(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Client(n) => write!(f, "client:{n}"),
            Scope::Venue(n) => write!(f, "venue:{n}"),
            Scope::Credential(n) => write!(f, "credential:{n}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not a freeze scope; write all, client:NAME, venue:NAME or credential:ID"
            )
        };
        if s == "all" {
            return Ok(Scope::All);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if !valid_name(name) {
            return Err(bad());
        }
        match kind {
            "client" => Ok(Scope::Client(name.into())),
            "venue" => Ok(Scope::Venue(name.into())),
            "credential" => Ok(Scope::Credential(name.into())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An active freeze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freeze {
    pub id: i64,
    pub scope: Scope,
    pub reason: String,
    pub set_by: String,
    pub set_at: Millis,
}

impl Freeze {
    /// Whether the freeze stops `intent`. `credential_of` names the credential a venue signs
    /// with, if the engine knows it.
    pub fn covers<'a>(
        &self,
        intent: &Intent,
        credential_of: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Client(c) => *c == intent.client,
            Scope::Venue(v) => *v == intent.venue,
            Scope::Credential(id) => credential_of(&intent.venue) == Some(id.as_str()),
        }
    }
}

/// What an approval approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "approve", rename_all = "snake_case")]
pub enum Subject {
    /// Lifting freeze `freeze_id`, as it was set (its scope and time make the message unique to
    /// that freeze: a signature for one can never lift another).
    Unfreeze {
        freeze_id: i64,
        scope: Scope,
        set_at: Millis,
    },
    /// Letting held decision `decision_id` through: `intent_digest` is the hold's digest
    /// ([`crate::admit::hold_digest`]: SHA-256 of the held intent and the exact request keygate
    /// would forward), which ties the approval to exactly what was held.
    Hold {
        decision_id: i64,
        client: String,
        intent_digest: String,
        expires_at: Millis,
    },
    /// Approving address-book entry `entry_id`, exactly as it was added.
    Address {
        entry_id: i64,
        venue: String,
        asset: String,
        address: String,
        added_at: Millis,
    },
}

impl Subject {
    /// The key approvals of this subject are stored under: `freeze:ID`, `hold:ID` or
    /// `address:ID`.
    pub fn key(&self) -> String {
        match self {
            Subject::Unfreeze { freeze_id, .. } => format!("freeze:{freeze_id}"),
            Subject::Hold { decision_id, .. } => format!("hold:{decision_id}"),
            Subject::Address { entry_id, .. } => format!("address:{entry_id}"),
        }
    }
}

const APPROVAL_DOMAIN: &str = "keygate/approval/v1";

/// The exact bytes an approver signs: a domain tag, then canonical JSON of the subject and the
/// approval's expiry. Anything else signed with the key (a checkpoint, another subject, another
/// expiry) is a different message.
pub fn approval_message(subject: &Subject, expires_at: Millis) -> Vec<u8> {
    #[derive(Serialize)]
    struct Signed<'a> {
        domain: &'static str,
        subject: &'a Subject,
        expires_at: Millis,
    }
    serde_json::to_vec(&Signed {
        domain: APPROVAL_DOMAIN,
        subject,
        expires_at,
    })
    .unwrap_or_default()
}

/// Who may approve, and how many must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Approvers' Ed25519 public keys, lower-case hex.
    pub approvers: Vec<String>,
    pub quorum: usize,
    /// The longest an approval may stay valid for.
    pub max_validity: Millis,
}

impl ApprovalPolicy {
    /// Checks the policy can ever be met: a quorum of at least one, and enough approvers.
    pub fn validate(&self) -> Result<(), String> {
        if self.quorum == 0 {
            return Err("approvals.quorum must be at least 1".into());
        }
        let mut keys = self.approvers.clone();
        keys.sort();
        keys.dedup();
        if keys.len() < self.approvers.len() {
            return Err("approvals.approvers lists a key twice".into());
        }
        if keys.len() < self.quorum {
            return Err(format!(
                "approvals.quorum is {} but only {} approver key(s) are listed: nothing could ever be approved",
                self.quorum,
                keys.len()
            ));
        }
        Ok(())
    }

    pub fn is_approver(&self, key: &str) -> bool {
        self.approvers.iter().any(|k| k.eq_ignore_ascii_case(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Action;

    fn intent(client: &str, venue: &str) -> Intent {
        Intent {
            route: Default::default(),
            order: None,
            client: client.into(),
            venue: venue.into(),
            action: Action::Read,
            asset: None,
            amount: None,
            destination: None,
            source_ip: None,
            token_id: None,
        }
    }

    #[test]
    fn scopes_parse_print_and_cover() {
        for s in [
            "all",
            "client:mm-bot",
            "venue:binance-main",
            "credential:k1",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        for bad in ["", "everything", "client:", "client:a/b", "wallet:x"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        let f = |scope: &str| Freeze {
            id: 1,
            scope: scope.parse().unwrap(),
            reason: "r".into(),
            set_by: "alice".into(),
            set_at: 0,
        };
        let cred = |v: &str| (v == "binance-main").then_some("k1");
        let i = intent("mm-bot", "binance-main");
        assert!(f("all").covers(&i, cred));
        assert!(f("client:mm-bot").covers(&i, cred));
        assert!(!f("client:other").covers(&i, cred));
        assert!(f("venue:binance-main").covers(&i, cred));
        assert!(!f("venue:okx").covers(&i, cred));
        assert!(f("credential:k1").covers(&i, cred));
        assert!(!f("credential:k2").covers(&i, cred));
        assert!(!f("credential:k1").covers(&intent("mm-bot", "okx"), cred));
    }

    #[test]
    fn each_approval_message_is_unique_to_its_freeze_and_expiry() {
        let s = |id, at| Subject::Unfreeze {
            freeze_id: id,
            scope: Scope::All,
            set_at: at,
        };
        let m = approval_message(&s(1, 10), 100);
        assert_ne!(m, approval_message(&s(2, 10), 100));
        assert_ne!(m, approval_message(&s(1, 11), 100));
        assert_ne!(m, approval_message(&s(1, 10), 101));
        assert!(
            String::from_utf8(m)
                .unwrap()
                .starts_with("{\"domain\":\"keygate/approval/v1\"")
        );
        assert_eq!(s(7, 0).key(), "freeze:7");
    }

    #[test]
    fn a_policy_that_can_never_be_met_is_refused() {
        let p = |keys: &[&str], quorum| ApprovalPolicy {
            approvers: keys.iter().map(|k| k.to_string()).collect(),
            quorum,
            max_validity: 3_600_000,
        };
        assert!(p(&["a", "b"], 2).validate().is_ok());
        assert!(p(&["a"], 2).validate().is_err());
        assert!(p(&["a", "a"], 1).validate().is_err());
        assert!(p(&["a"], 0).validate().is_err());
    }
}
