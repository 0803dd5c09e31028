//! Clients and their tokens. A token is `kgt_<id>_<secret>`: the id (16 hex digits) is public and
//! names the stored record; the secret (64 hex digits, 256 random bits) is shown once and stored
//! only as a SHA-256 hash, compared in constant time. A token expires, can be revoked, is bound to
//! source CIDRs and can only narrow its client's scope of venues and actions.
//!
//! A token may instead be an exchange-native API key ([`TokenKind::Native`]): its id is the API
//! key a bot puts in `X-MBX-APIKEY` or `OK-ACCESS-KEY`, and the bot signs each request with its
//! secret the way the exchange documents. The HMAC needs the secret itself, so the gateway keeps
//! it sealed in the vault, checks the signature, and presents the outcome here
//! ([`Presented::native`]); everything else (revocation, expiry, client, source address, scope)
//! is checked exactly as for a bearer token.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::intent::{Action, valid_name};
use crate::time::Millis;

const PREFIX: &str = "kgt_";
const HASH_DOMAIN: &[u8] = b"keygate/token/v1\0";

/// A bot or service that may use keygate, with the venues and actions it may ever use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub name: String,
    pub venues: Vec<String>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub enabled: bool,
    /// The instruments (`BASE/QUOTE`) the client may trade. Empty: none (never "any").
    #[serde(default)]
    pub instruments: Vec<String>,
}

impl ClientRecord {
    pub fn may(&self, venue: &str, action: Action) -> bool {
        self.enabled && self.venues.iter().any(|v| v == venue) && self.actions.contains(&action)
    }
}

/// How a token's holder proves it holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// `Authorization: Bearer kgt_<id>_<secret>`; the secret is stored as a hash.
    Bearer,
    /// An exchange-native API key (the id) whose secret signs each request as the exchange
    /// documents; the secret is stored sealed in the vault, and `secret_hash` matches nothing.
    Native,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Native => "native",
        }
    }
}

impl std::str::FromStr for TokenKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bearer" => Ok(Self::Bearer),
            "native" => Ok(Self::Native),
            _ => Err(format!("unknown token kind {s:?}")),
        }
    }
}

/// A stored token: everything but the secret, which is kept only as a hash (a bearer token) or
/// sealed in the vault (a native key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub client: String,
    pub kind: TokenKind,
    pub secret_hash: [u8; 32],
    pub venues: Vec<String>,
    pub actions: Vec<Action>,
    pub cidrs: Vec<IpNet>,
    pub issued_at: Millis,
    pub expires_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// A token as a request presents it: its id, and the proof that the sender holds it.
pub struct Presented {
    pub id: String,
    proof: Proof,
}

enum Proof {
    /// A bearer token's secret.
    Secret([u8; 32]),
    /// What the gateway found when it checked an exchange-native signature.
    Native(Result<(), NativeFailure>),
}

/// Why an exchange-native request's authentication failed, as the gateway found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeFailure {
    /// No native secret is stored under the key (unknown, or a bearer token's id).
    NoKey,
    /// The signature does not match the request under the key's secret.
    BadSignature,
    /// OKX: the passphrase is not the key's.
    BadPassphrase,
    /// Signed correctly, but outside the venue's time window (the detail says how).
    Stale(String),
}

impl Presented {
    /// A request authenticated by an exchange-native signature, which the caller (the gateway)
    /// checked against the key's sealed secret: `outcome` is what it found.
    pub fn native(id: String, outcome: Result<(), NativeFailure>) -> Self {
        Self {
            id,
            proof: Proof::Native(outcome),
        }
    }

    /// Whether the request came with an exchange-native signature rather than a bearer token.
    pub fn is_native(&self) -> bool {
        matches!(self.proof, Proof::Native(_))
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.proof {
            Proof::Secret(_) => write!(f, "Presented {{ id: {}, secret: [redacted] }}", self.id),
            Proof::Native(o) => write!(f, "Presented {{ id: {}, native: {o:?} }}", self.id),
        }
    }
}

/// Why a token was refused. Each case has its own message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, serde::Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AuthError {
    #[error(
        "the token is malformed: a keygate token looks like kgt_<16 hex digits>_<64 hex digits>"
    )]
    Malformed,
    #[error("token {id} is not known; issue one with `keygate token issue`")]
    Unknown { id: String },
    #[error("token {id}: the secret does not match")]
    BadSecret { id: String },
    #[error("{}", wrong_kind_text(id, *native))]
    WrongKind { id: String, native: bool },
    #[error(
        "API key {id}: the signature does not match the request; it was signed with another secret, or changed after it was signed"
    )]
    BadSignature { id: String },
    #[error("API key {id}: the passphrase is not this key's")]
    BadPassphrase { id: String },
    #[error("API key {id}: {detail}; check the bot's clock (NTP)")]
    Stale { id: String, detail: String },
    #[error("token {id} was revoked; issue a new one")]
    Revoked { id: String },
    #[error("token {id} has expired; issue a new one")]
    Expired { id: String },
    #[error("token {id}: client {client} is disabled")]
    ClientDisabled { id: String, client: String },
    #[error("token {id} may not be used from {ip}; it is bound to {allowed}")]
    WrongAddress {
        id: String,
        ip: IpAddr,
        allowed: String,
    },
    #[error("token {id} may not {action} on {venue}; its scope is {scope}")]
    OutOfScope {
        id: String,
        venue: String,
        action: Action,
        scope: String,
    },
}

impl AuthError {
    /// A short stable code for audit entries and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed => "malformed",
            AuthError::Unknown { .. } => "unknown",
            AuthError::BadSecret { .. } => "bad_secret",
            AuthError::WrongKind { .. } => "wrong_kind",
            AuthError::BadSignature { .. } => "bad_signature",
            AuthError::BadPassphrase { .. } => "bad_passphrase",
            AuthError::Stale { .. } => "stale",
            AuthError::Revoked { .. } => "revoked",
            AuthError::Expired { .. } => "expired",
            AuthError::ClientDisabled { .. } => "client_disabled",
            AuthError::WrongAddress { .. } => "wrong_address",
            AuthError::OutOfScope { .. } => "out_of_scope",
        }
    }
}

fn wrong_kind_text(id: &str, native: bool) -> String {
    if native {
        format!(
            "token {id} is an exchange-native API key: sign each request with its secret as the exchange documents (docs/bots.md), do not send it as a bearer token"
        )
    } else {
        format!(
            "{id} is a bearer token's id, not an exchange-native API key; send the token as Authorization: Bearer, or issue a key with `keygate token issue --native`"
        )
    }
}

fn hash_secret(secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(secret);
    h.finalize().into()
}

/// A freshly made token: the text to show once (zeroized on drop), and the hash to store.
pub struct NewToken {
    pub id: String,
    pub text: zeroize::Zeroizing<String>,
    pub secret_hash: [u8; 32],
}

/// Makes a token from 8 random id bytes and 32 random secret bytes (the caller draws them).
pub fn new_token(id_bytes: [u8; 8], secret: [u8; 32]) -> NewToken {
    let id = hex::encode(id_bytes);
    NewToken {
        text: zeroize::Zeroizing::new(format!("{PREFIX}{id}_{}", hex::encode(secret))),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into id and secret, or says it is malformed.
pub fn parse_token(text: &str) -> Result<Presented, AuthError> {
    let rest = text
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(AuthError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if id.len() != 16 || !lower_hex(id) || secret.len() != 64 || !lower_hex(secret) {
        return Err(AuthError::Malformed);
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(secret, &mut bytes).map_err(|_| AuthError::Malformed)?;
    Ok(Presented {
        id: id.to_string(),
        proof: Proof::Secret(bytes),
    })
}

/// Whether `ip` falls in any of `cidrs`. An empty list matches nothing: a token bound nowhere
/// can be used from nowhere.
pub fn ip_allowed(cidrs: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    cidrs.iter().any(|n| n.contains(&ip))
}

fn scope_text(venues: &[String], actions: &[Action]) -> String {
    let a: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    format!("venues [{}], actions [{}]", venues.join(", "), a.join(", "))
}

/// Checks a presented token for one request. `token` and `client` are what the store holds
/// under the presented id (None if nothing). The check reads no clock: `now` is given.
pub fn authenticate(
    presented: &Presented,
    token: Option<&TokenRecord>,
    client: Option<&ClientRecord>,
    ip: IpAddr,
    venue: &str,
    action: Action,
    now: Millis,
) -> Result<(), AuthError> {
    let (t, client) = check_token(presented, token, client, ip, now)?;
    let in_token = t.venues.iter().any(|v| v == venue) && t.actions.contains(&action);
    if !in_token || !client.may(venue, action) {
        return Err(AuthError::OutOfScope {
            id: presented.id.clone(),
            venue: venue.to_string(),
            action,
            scope: scope_text(&t.venues, &t.actions),
        });
    }
    Ok(())
}

/// Everything [`authenticate`] checks but the scope: the secret, revocation, expiry, the
/// client, the source address. For a request whose action is not known (it is refused anyway,
/// but who sent it matters to the audit).
pub fn check_token<'a>(
    presented: &Presented,
    token: Option<&'a TokenRecord>,
    client: Option<&'a ClientRecord>,
    ip: IpAddr,
    now: Millis,
) -> Result<(&'a TokenRecord, &'a ClientRecord), AuthError> {
    let id = presented.id.clone();
    let Some(t) = token else {
        return Err(AuthError::Unknown { id });
    };
    match (&presented.proof, t.kind) {
        (Proof::Secret(secret), TokenKind::Bearer) => {
            if !bool::from(hash_secret(secret).ct_eq(&t.secret_hash)) {
                return Err(AuthError::BadSecret { id });
            }
        }
        (Proof::Secret(_), TokenKind::Native) => {
            return Err(AuthError::WrongKind { id, native: true });
        }
        (Proof::Native(_), TokenKind::Bearer) => {
            return Err(AuthError::WrongKind { id, native: false });
        }
        (Proof::Native(outcome), TokenKind::Native) => match outcome {
            Ok(()) => {}
            Err(NativeFailure::NoKey) => return Err(AuthError::Unknown { id }),
            Err(NativeFailure::BadSignature) => return Err(AuthError::BadSignature { id }),
            Err(NativeFailure::BadPassphrase) => return Err(AuthError::BadPassphrase { id }),
            Err(NativeFailure::Stale(detail)) => {
                return Err(AuthError::Stale {
                    id,
                    detail: detail.clone(),
                });
            }
        },
    }
    if t.revoked_at.is_some() {
        return Err(AuthError::Revoked { id });
    }
    if now >= t.expires_at {
        return Err(AuthError::Expired { id });
    }
    let client = match client {
        Some(c) if c.enabled && c.name == t.client => c,
        _ => {
            return Err(AuthError::ClientDisabled {
                id,
                client: t.client.clone(),
            });
        }
    };
    if !ip_allowed(&t.cidrs, ip) {
        let allowed: Vec<String> = t.cidrs.iter().map(ToString::to_string).collect();
        return Err(AuthError::WrongAddress {
            id,
            ip,
            allowed: allowed.join(", "),
        });
    }
    Ok((t, client))
}

/// The scope a new token gets: what was asked for, which must lie inside the client's scope;
/// nothing asked for means the client's whole scope.
pub fn narrow_scope(
    client: &ClientRecord,
    venues: &[String],
    actions: &[Action],
) -> Result<(Vec<String>, Vec<Action>), String> {
    if let Some(v) = venues.iter().find(|v| !client.venues.contains(v)) {
        return Err(format!(
            "client {} may not use venue {v}; a token can only narrow its client's scope ({})",
            client.name,
            scope_text(&client.venues, &client.actions)
        ));
    }
    if let Some(a) = actions.iter().find(|a| !client.actions.contains(a)) {
        return Err(format!(
            "client {} may not {a}; a token can only narrow its client's scope ({})",
            client.name,
            scope_text(&client.venues, &client.actions)
        ));
    }
    let pick = |asked: &[String], all: &[String]| {
        if asked.is_empty() {
            all.to_vec()
        } else {
            asked.to_vec()
        }
    };
    let venues = pick(venues, &client.venues);
    let mut actions = if actions.is_empty() {
        client.actions.clone()
    } else {
        actions.to_vec()
    };
    actions.sort();
    actions.dedup();
    let mut venues = venues;
    venues.sort();
    venues.dedup();
    Ok((venues, actions))
}

/// Checks a client definition: a valid name and a non-empty scope of valid venues.
pub fn validate_client(c: &ClientRecord) -> Result<(), String> {
    if !valid_name(&c.name) {
        return Err(format!(
            "client name {:?} is not valid (1-64 letters, digits, . _ - :)",
            c.name
        ));
    }
    if c.venues.is_empty() || c.actions.is_empty() {
        return Err(format!(
            "client {} needs at least one --venue and one --action: a client that may do anything is not allowed",
            c.name
        ));
    }
    if let Some(v) = c.venues.iter().find(|v| !valid_name(v)) {
        return Err(format!("venue name {v:?} is not valid"));
    }
    if let Some(t) = c.tags.iter().find(|t| !valid_name(t)) {
        return Err(format!("tag {t:?} is not valid"));
    }
    if let Some(i) = c.instruments.iter().find(|i| !valid_instrument(i)) {
        return Err(format!(
            "instrument {i:?} is not valid: write it BASE/QUOTE in capitals, such as BTC/USDT"
        ));
    }
    Ok(())
}

/// Whether `s` names an instrument as keygate does: `BASE/QUOTE`, both valid upper-case names.
pub fn valid_instrument(s: &str) -> bool {
    match s.split_once('/') {
        Some((base, quote)) => [base, quote]
            .iter()
            .all(|p| valid_name(p) && !p.bytes().any(|b| b.is_ascii_lowercase())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (NewToken, TokenRecord, ClientRecord) {
        let t = new_token([1; 8], [7; 32]);
        let client = ClientRecord {
            instruments: vec![],
            name: "mm-bot".into(),
            venues: vec!["binance".into(), "okx".into()],
            actions: vec![Action::Read, Action::Trade, Action::Withdraw],
            tags: vec![],
            enabled: true,
        };
        let rec = TokenRecord {
            id: t.id.clone(),
            client: "mm-bot".into(),
            kind: TokenKind::Bearer,
            secret_hash: t.secret_hash,
            venues: vec!["binance".into()],
            actions: vec![Action::Read, Action::Trade],
            cidrs: vec!["10.0.0.5/32".parse().unwrap()],
            issued_at: 0,
            expires_at: 1_000,
            revoked_at: None,
        };
        (t, rec, client)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let (t, rec, client) = setup();
        let p = parse_token(&t.text).unwrap();
        let ok =
            |rec: &TokenRecord, client: &ClientRecord, ipa: &str, venue: &str, a: Action, now| {
                authenticate(&p, Some(rec), Some(client), ip(ipa), venue, a, now)
            };
        assert_eq!(
            ok(&rec, &client, "10.0.0.5", "binance", Action::Trade, 999),
            Ok(())
        );
        assert_eq!(
            ok(&rec, &client, "::ffff:10.0.0.5", "binance", Action::Read, 0),
            Ok(())
        );
        let code = |r: Result<(), AuthError>| r.unwrap_err().code();
        assert_eq!(
            code(ok(
                &rec,
                &client,
                "10.0.0.5",
                "binance",
                Action::Trade,
                1_000
            )),
            "expired"
        );
        assert_eq!(
            code(ok(&rec, &client, "10.0.0.6", "binance", Action::Trade, 0)),
            "wrong_address"
        );
        assert_eq!(
            code(ok(&rec, &client, "10.0.0.5", "okx", Action::Trade, 0)),
            "out_of_scope"
        );
        assert_eq!(
            code(ok(
                &rec,
                &client,
                "10.0.0.5",
                "binance",
                Action::Withdraw,
                0
            )),
            "out_of_scope"
        );
        let mut revoked = rec.clone();
        revoked.revoked_at = Some(1);
        assert_eq!(
            code(ok(
                &revoked,
                &client,
                "10.0.0.5",
                "binance",
                Action::Trade,
                0
            )),
            "revoked"
        );
        let mut off = client.clone();
        off.enabled = false;
        assert_eq!(
            code(ok(&rec, &off, "10.0.0.5", "binance", Action::Trade, 0)),
            "client_disabled"
        );
        // The client's scope shrinking after issue takes effect too.
        let mut narrow = client.clone();
        narrow.actions = vec![Action::Read];
        assert_eq!(
            code(ok(&rec, &narrow, "10.0.0.5", "binance", Action::Trade, 0)),
            "out_of_scope"
        );
        let wrong = parse_token(&new_token([1; 8], [8; 32]).text).unwrap();
        assert_eq!(
            authenticate(
                &wrong,
                Some(&rec),
                Some(&client),
                ip("10.0.0.5"),
                "binance",
                Action::Read,
                0
            )
            .unwrap_err()
            .code(),
            "bad_secret"
        );
        assert_eq!(
            authenticate(&p, None, None, ip("10.0.0.5"), "binance", Action::Read, 0)
                .unwrap_err()
                .code(),
            "unknown"
        );
    }

    #[test]
    fn native_keys_are_checked_like_tokens_and_never_as_bearer_tokens() {
        let (bearer, rec, client) = setup();
        let native = TokenRecord {
            kind: TokenKind::Native,
            ..rec.clone()
        };
        let ok = |p: &Presented, r: &TokenRecord, now| {
            authenticate(
                p,
                Some(r),
                Some(&client),
                ip("10.0.0.5"),
                "binance",
                Action::Trade,
                now,
            )
            .map_err(|e| e.code())
        };
        let signed = Presented::native(rec.id.clone(), Ok(()));
        assert!(signed.is_native());
        assert_eq!(ok(&signed, &native, 0), Ok(()));
        // Expiry, address and scope apply as to any token.
        assert_eq!(ok(&signed, &native, 1_000), Err("expired"));
        assert_eq!(
            authenticate(
                &signed,
                Some(&native),
                Some(&client),
                ip("10.0.0.6"),
                "binance",
                Action::Trade,
                0
            )
            .unwrap_err()
            .code(),
            "wrong_address"
        );
        let mut revoked = native.clone();
        revoked.revoked_at = Some(1);
        assert_eq!(ok(&signed, &revoked, 0), Err("revoked"));
        // A bearer secret never opens a native key, a signature never a bearer token.
        let p = parse_token(&bearer.text).unwrap();
        assert_eq!(ok(&p, &native, 0), Err("wrong_kind"));
        assert_eq!(ok(&signed, &rec, 0), Err("wrong_kind"));
        for (failure, code) in [
            (NativeFailure::NoKey, "unknown"),
            (NativeFailure::BadSignature, "bad_signature"),
            (NativeFailure::BadPassphrase, "bad_passphrase"),
            (NativeFailure::Stale("too old".into()), "stale"),
        ] {
            let p = Presented::native(rec.id.clone(), Err(failure));
            assert_eq!(ok(&p, &native, 0), Err(code));
            // The signature is checked before revocation: a forger learns nothing about it.
            assert_eq!(ok(&p, &revoked, 0), Err(code));
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "kgt_",
            "Bearer x",
            "kgt_0101010101010101",
            "kgt_0101010101010101_zz",
            "kgt_0101010101010101_0707070707070707070707070707070707070707070707070707070707070707ff",
            // Upper-case hex in the secret, then one non-hex digit.
            "kgt_0101010101010101_0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A",
            "kgt_0101010101010101_070707070707070707070707070707070707070707070707070707070707070g",
        ] {
            assert_eq!(parse_token(bad).unwrap_err(), AuthError::Malformed, "{bad}");
        }
        let t = new_token([1; 8], [7; 32]);
        assert!(!format!("{:?}", parse_token(&t.text).unwrap()).contains("0707"));
    }

    #[test]
    fn an_empty_cidr_list_matches_nothing() {
        assert!(!ip_allowed(&[], ip("127.0.0.1")));
    }

    #[test]
    fn tokens_only_narrow() {
        let (_, _, client) = setup();
        assert!(narrow_scope(&client, &["kraken".into()], &[]).is_err());
        assert!(narrow_scope(&client, &[], &[Action::Transfer]).is_err());
        let (v, a) = narrow_scope(&client, &[], &[Action::Read]).unwrap();
        assert_eq!(v, vec!["binance".to_string(), "okx".to_string()]);
        assert_eq!(a, vec![Action::Read]);
    }
}
