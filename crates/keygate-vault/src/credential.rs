//! Credential kinds and their secret parts.
//!
//! A credential is what keygate holds for a venue: an exchange API key pair (plus passphrase for
//! OKX) or an EVM private key. [`CredentialSecret`] holds the parts, validates them, and encodes
//! them into the byte string that the envelope seals.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{SecretBytes, SecretString, VaultError};

/// What kind of secret a credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// Binance-style API key and HMAC-SHA256 secret.
    BinanceHmac,
    /// OKX-style API key, HMAC-SHA256 secret and passphrase.
    OkxHmac,
    /// A secp256k1 private key for an EVM hot wallet.
    EvmKey,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 3] = [Self::BinanceHmac, Self::OkxHmac, Self::EvmKey];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BinanceHmac => "binance-hmac",
            Self::OkxHmac => "okx-hmac",
            Self::EvmKey => "evm-key",
        }
    }

    /// The names of the secret parts, in the order they are read and stored.
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Self::BinanceHmac => &["API key", "API secret"],
            Self::OkxHmac => &["API key", "API secret", "API passphrase"],
            Self::EvmKey => &["private key (64 hex characters)"],
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown credential kind {s:?}; expected one of: binance-hmac, okx-hmac, evm-key"
                )
            })
    }
}

const MAGIC: &[u8] = b"KGC1";
const MAX_PART_LEN: usize = 1024;
/// The order of the secp256k1 group; a private key must be in [1, n).
const SECP256K1_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// The secret parts of one credential version. Debug prints `[redacted]` for every part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSecret {
    kind: CredentialKind,
    parts: Vec<SecretString>,
}

impl CredentialSecret {
    /// Validates the parts for `kind`. Error messages name the part, never its content.
    pub fn new(kind: CredentialKind, parts: Vec<SecretString>) -> Result<Self, VaultError> {
        let invalid = |reason: String| VaultError::InvalidSecret {
            kind: kind.as_str(),
            reason,
        };
        let names = kind.parts();
        if parts.len() != names.len() {
            return Err(invalid(format!(
                "expected {} parts ({}), got {}",
                names.len(),
                names.join(", "),
                parts.len()
            )));
        }
        for (name, part) in names.iter().zip(&parts) {
            let p = part.expose();
            if p.is_empty() {
                return Err(invalid(format!("the {name} is empty")));
            }
            if p.len() > MAX_PART_LEN {
                return Err(invalid(format!(
                    "the {name} is longer than {MAX_PART_LEN} bytes"
                )));
            }
            if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(format!(
                    "the {name} contains whitespace or control characters"
                )));
            }
        }
        if kind == CredentialKind::EvmKey {
            let p = parts[0].expose();
            let hex_part = p.strip_prefix("0x").unwrap_or(p);
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_part, key.as_mut()).map_err(|_| {
                invalid("the private key must be 64 hex characters, with or without 0x".into())
            })?;
            if key.iter().all(|&b| b == 0) || key.as_ref() >= &SECP256K1_N {
                return Err(invalid(
                    "the private key is outside the secp256k1 range [1, n)".into(),
                ));
            }
        }
        Ok(Self { kind, parts })
    }

    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The parts, in the order of [`CredentialKind::parts`].
    pub fn parts(&self) -> &[SecretString] {
        &self.parts
    }

    /// The bytes that get sealed: a magic tag, then each part length-prefixed.
    pub fn encode(&self) -> SecretBytes {
        let cap = MAGIC.len() + self.parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut out = Vec::with_capacity(cap);
        out.extend_from_slice(MAGIC);
        for p in &self.parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p.expose().as_bytes());
        }
        SecretBytes::new(out)
    }

    /// Inverse of [`CredentialSecret::encode`], validating again.
    pub fn decode(kind: CredentialKind, bytes: &SecretBytes) -> Result<Self, VaultError> {
        let bad = || VaultError::InvalidSecret {
            kind: kind.as_str(),
            reason: "the decrypted secret is not in keygate's format".into(),
        };
        let mut rest = bytes.expose().strip_prefix(MAGIC).ok_or_else(bad)?;
        let mut parts = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(bad());
            }
            let (len, tail) = rest.split_at(4);
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if tail.len() < len {
                return Err(bad());
            }
            let (part, tail) = tail.split_at(len);
            let s = std::str::from_utf8(part).map_err(|_| bad())?;
            parts.push(SecretString::new(s.to_string()));
            rest = tail;
        }
        Self::new(kind, parts)
    }

    /// A short public fingerprint: the first 8 hex digits of SHA-256 over the encoded secret.
    /// Enough to tell two versions apart, far too short to reveal anything.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"keygate/fingerprint/v1");
        h.update(self.encode().expose());
        hex::encode(&h.finalize()[..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ps: &[&str]) -> Vec<SecretString> {
        ps.iter()
            .map(|p| SecretString::new(p.to_string()))
            .collect()
    }

    #[test]
    fn encode_decode_roundtrip() {
        let s =
            CredentialSecret::new(CredentialKind::OkxHmac, parts(&["key", "sec", "pass"])).unwrap();
        let d = CredentialSecret::decode(CredentialKind::OkxHmac, &s.encode()).unwrap();
        assert_eq!(s, d);
        assert_eq!(s.fingerprint(), d.fingerprint());
        assert_eq!(s.fingerprint().len(), 8);
        // Decoding as another kind fails (wrong number of parts).
        assert!(CredentialSecret::decode(CredentialKind::BinanceHmac, &s.encode()).is_err());
    }

    #[test]
    fn validation_names_the_part_not_the_content() {
        let e = CredentialSecret::new(CredentialKind::BinanceHmac, parts(&["key"])).unwrap_err();
        assert!(e.to_string().contains("expected 2 parts"), "{e}");
        let e = CredentialSecret::new(CredentialKind::BinanceHmac, parts(&["key", "se cret"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("API secret") && !e.contains("se cret"), "{e}");
        let e = CredentialSecret::new(CredentialKind::BinanceHmac, parts(&["", "x"])).unwrap_err();
        assert!(e.to_string().contains("API key is empty"));
    }

    #[test]
    fn evm_key_range_is_checked() {
        let ok = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        assert!(CredentialSecret::new(CredentialKind::EvmKey, parts(&[ok])).is_ok());
        assert!(CredentialSecret::new(CredentialKind::EvmKey, parts(&[&ok[2..]])).is_ok());
        for bad in [
            "0x00",
            "zz0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        ] {
            let e = CredentialSecret::new(CredentialKind::EvmKey, parts(&[bad])).unwrap_err();
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn decode_garbage_is_an_error() {
        for g in [
            &b""[..],
            b"KGC1\x00\x00",
            b"KGC1\x00\x00\x00\x09ab",
            b"nope",
        ] {
            assert!(
                CredentialSecret::decode(CredentialKind::EvmKey, &SecretBytes::new(g.to_vec()))
                    .is_err()
            );
        }
    }

    proptest::proptest! {
        // Decoding arbitrary bytes (a corrupted or hostile plaintext) never panics, and whatever
        // decodes re-encodes to the same bytes.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            for kind in CredentialKind::ALL {
                let input = SecretBytes::new(bytes.clone());
                if let Ok(s) = CredentialSecret::decode(kind, &input) {
                    proptest::prop_assert_eq!(s.encode(), input);
                }
            }
        }

        // Any valid set of parts survives encode and decode.
        #[test]
        fn roundtrip_any_parts(parts in proptest::collection::vec("[!-~]{1,40}", 3)) {
            let ps: Vec<&str> = parts.iter().map(String::as_str).collect();
            let s = CredentialSecret::new(CredentialKind::OkxHmac, super::tests::parts(&ps)).unwrap();
            proptest::prop_assert_eq!(CredentialSecret::decode(CredentialKind::OkxHmac, &s.encode()).unwrap(), s);
        }
    }

    #[test]
    fn kind_parses() {
        for k in CredentialKind::ALL {
            assert_eq!(k.as_str().parse::<CredentialKind>().unwrap(), k);
        }
        assert!(
            "ftx"
                .parse::<CredentialKind>()
                .unwrap_err()
                .contains("binance-hmac")
        );
    }
}
