//! Exchange-native client authentication: checking a bot's own signature the way the exchange
//! does, so an unmodified client library can talk to keygate.
//!
//! The bot holds a keygate API key (and secret, and an OKX passphrase) instead of the venue's,
//! and signs each request exactly as it would for the exchange:
//! - Binance ("SIGNED endpoint security"): `X-MBX-APIKEY`, and `signature`, the hex
//!   HMAC-SHA256 of totalParams (the query string as sent directly followed by the body as
//!   sent, without the `signature` parameter); `timestamp` must be less than 1 s ahead of the
//!   server's time and at most `recvWindow` (default 5000, at most 60000 ms) behind it.
//! - OKX ("REST Authentication"): `OK-ACCESS-KEY`, `OK-ACCESS-SIGN` (the base64 HMAC-SHA256 of
//!   timestamp + method + request path with its query + body), `OK-ACCESS-TIMESTAMP` (ISO 8601
//!   with milliseconds, within 30 s of the server's time) and `OK-ACCESS-PASSPHRASE`.
//!
//! [`claim`] reads which key a request names and whether it is signed at all; [`verify`] checks
//! the signature, the passphrase and the time window with the key's secret. Both are pure: the
//! secret is borrowed for one check and the time is an argument. Signatures are compared in
//! constant time (`hmac`'s `verify_slice`), and nothing here ever prints a secret.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::{Keys, Request, VenueKind};

/// The Binance API key header.
pub const BINANCE_KEY_HEADER: &str = "x-mbx-apikey";
/// The OKX API key header.
pub const OKX_KEY_HEADER: &str = "ok-access-key";

/// Binance's default and largest `recvWindow`, and how far ahead a timestamp may be.
pub const DEFAULT_RECV_WINDOW_MS: i64 = 5_000;
pub const MAX_RECV_WINDOW_MS: i64 = 60_000;
pub const MAX_AHEAD_MS: i64 = 1_000;
/// How far an OKX timestamp may be from the server's time, either way.
pub const OKX_WINDOW_MS: i64 = 30_000;

/// What an exchange-native request claims before anything is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'a> {
    /// No key header: not an exchange-native request.
    None,
    /// A key header, but no signature (Binance public endpoints are sent so by client libraries).
    Unsigned { key: &'a str },
    /// A key and a signature, to be checked.
    Signed { key: &'a str },
}

/// Why a native request is refused. [`NativeError::Malformed`] and [`NativeError::Simulated`]
/// are the request's own fault, found before the key's secret is read; the others need it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// A signing parameter or header is missing, given twice or unreadable.
    #[error("{detail}")]
    Malformed { code: Mandatory, detail: String },
    /// OKX's `x-simulated-trading: 1` (demo trading) against a live venue.
    #[error(
        "x-simulated-trading: 1 asks for OKX demo trading, but keygate's venue is the one configured; send x-simulated-trading: 0 (python-okx: flag \"0\")"
    )]
    Simulated,
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("the passphrase does not match")]
    BadPassphrase,
    /// Signed correctly, outside the time window.
    #[error("{0}")]
    Stale(String),
}

/// Which part of the signing scheme a malformed request got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mandatory {
    /// No signature, or more than one.
    Signature,
    /// No timestamp.
    Timestamp,
    /// A timestamp that is not one.
    TimestampFormat,
    /// Binance's `recvWindow` is not a number of milliseconds up to 60000.
    RecvWindow,
    /// OKX: no passphrase.
    Passphrase,
}

fn malformed(code: Mandatory, detail: impl Into<String>) -> NativeError {
    NativeError::Malformed {
        code,
        detail: detail.into(),
    }
}

/// Reads which key a request names, and whether it carries a signature. `header` looks a header
/// up by its lower-case name.
pub fn claim<'a>(
    kind: VenueKind,
    req: &Request<'a>,
    header: &dyn Fn(&str) -> Option<&'a str>,
) -> Claim<'a> {
    match kind {
        VenueKind::Binance => {
            let Some(key) = header(BINANCE_KEY_HEADER) else {
                return Claim::None;
            };
            let signed = params_named(req.query.as_bytes(), b"signature") > 0
                || params_named(req.body, b"signature") > 0;
            if signed {
                Claim::Signed { key }
            } else {
                Claim::Unsigned { key }
            }
        }
        VenueKind::Okx => {
            let Some(key) = header(OKX_KEY_HEADER) else {
                return Claim::None;
            };
            if header("ok-access-sign").is_some() {
                Claim::Signed { key }
            } else {
                Claim::Unsigned { key }
            }
        }
    }
}

/// How many `&`-separated parameters of `text` are named `name` (raw, before any decoding).
fn params_named(text: &[u8], name: &[u8]) -> usize {
    text.split(|&b| b == b'&')
        .filter(|p| {
            p.strip_prefix(name)
                .is_some_and(|rest| rest.first() == Some(&b'='))
        })
        .count()
}

/// The request's form parameters without `signature`, and the signature: the one `signature=`
/// parameter is cut out of the query or the body, wherever it is, and the rest kept as sent.
fn split_signature<'a>(
    query: &'a [u8],
    body: &'a [u8],
) -> Result<(Vec<u8>, &'a [u8]), NativeError> {
    let count = params_named(query, b"signature") + params_named(body, b"signature");
    if count != 1 {
        return Err(malformed(
            Mandatory::Signature,
            if count == 0 {
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            } else {
                "Duplicate values for parameter 'signature'."
            },
        ));
    }
    let mut signature: &[u8] = &[];
    let mut total = Vec::with_capacity(query.len() + body.len());
    for part in [query, body] {
        let mut kept: Vec<&[u8]> = vec![];
        for p in part.split(|&b| b == b'&') {
            match p.strip_prefix(b"signature=") {
                Some(sig) => signature = sig,
                None => kept.push(p),
            }
        }
        total.extend_from_slice(&kept.join(&b'&'));
    }
    Ok((total, signature))
}

/// The value of the one parameter `name` among query and body, if it is there (raw).
fn raw_param<'a>(query: &'a [u8], body: &'a [u8], name: &[u8]) -> Result<Option<&'a str>, ()> {
    let mut found = None;
    for part in [query, body] {
        for p in part.split(|&b| b == b'&') {
            if let Some(rest) = p.strip_prefix(name)
                && let Some(v) = rest.strip_prefix(b"=")
            {
                if found.is_some() {
                    return Err(());
                }
                found = Some(std::str::from_utf8(v).map_err(|_| ())?);
            }
        }
    }
    Ok(found)
}

fn integer(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a signed request with the key's secret (and OKX passphrase) at `now_ms`: the
/// signature first, then the passphrase, then the time window.
pub fn verify<'a>(
    kind: VenueKind,
    req: &Request<'a>,
    header: &dyn Fn(&str) -> Option<&'a str>,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<(), NativeError> {
    match kind {
        VenueKind::Binance => verify_binance(req, keys, now_ms),
        VenueKind::Okx => verify_okx(req, header, keys, now_ms),
    }
}

/// The MAC a native request carries, decoded (Binance's hex `signature` parameter, OKX's base64
/// `OK-ACCESS-SIGN` header): the same bytes however the text was written (hex in either case),
/// so a gateway that remembers it refuses the request sent again, even to another endpoint.
pub fn presented_mac<'a>(
    kind: VenueKind,
    req: &Request<'a>,
    header: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<Vec<u8>> {
    match kind {
        VenueKind::Binance => {
            let (_, signature) = split_signature(req.query.as_bytes(), req.body).ok()?;
            hex::decode(signature).ok()
        }
        VenueKind::Okx => base64::engine::general_purpose::STANDARD
            .decode(header("OK-ACCESS-SIGN")?)
            .ok(),
    }
}

fn mac(secret: &str) -> hmac::Hmac<sha2::Sha256> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn verify_binance(req: &Request<'_>, keys: &Keys<'_>, now_ms: i64) -> Result<(), NativeError> {
    let (query, body) = (req.query.as_bytes(), req.body);
    let (total, signature) = split_signature(query, body)?;
    let timestamp = match raw_param(query, body, b"timestamp") {
        Ok(Some(t)) => integer(t).ok_or_else(|| {
            malformed(
                Mandatory::TimestampFormat,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            )
        })?,
        _ => {
            return Err(malformed(
                Mandatory::Timestamp,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ));
        }
    };
    let recv_window = match raw_param(query, body, b"recvWindow") {
        Ok(None) => DEFAULT_RECV_WINDOW_MS,
        Ok(Some(w)) => match integer(w) {
            Some(w) if w <= MAX_RECV_WINDOW_MS => w,
            _ => {
                return Err(malformed(
                    Mandatory::RecvWindow,
                    "recvWindow must be less than 60000",
                ));
            }
        },
        Err(()) => {
            return Err(malformed(
                Mandatory::RecvWindow,
                "recvWindow must be less than 60000",
            ));
        }
    };
    // Lower-case hex, as Binance sends it; anything else cannot match.
    let mut presented = [0u8; 32];
    if signature.len() != 64 || hex::decode_to_slice(signature, &mut presented).is_err() {
        return Err(NativeError::BadSignature);
    }
    let mut m = mac(keys.secret);
    m.update(&total);
    m.verify_slice(&presented)
        .map_err(|_| NativeError::BadSignature)?;
    if timestamp >= now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(NativeError::Stale(
            "Timestamp for this request was 1000ms ahead of the server's time.".into(),
        ));
    }
    if now_ms.saturating_sub(timestamp) > recv_window {
        return Err(NativeError::Stale(
            "Timestamp for this request is outside of the recvWindow.".into(),
        ));
    }
    Ok(())
}

/// Parses OKX's `2020-12-08T09:08:57.715Z` into Unix milliseconds.
pub fn parse_okx_timestamp(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(t.timestamp_millis())
}

fn verify_okx<'a>(
    req: &Request<'a>,
    header: &dyn Fn(&str) -> Option<&'a str>,
    keys: &Keys<'_>,
    now_ms: i64,
) -> Result<(), NativeError> {
    let sign = header("ok-access-sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(
                Mandatory::Signature,
                "Request header OK-ACCESS-SIGN cannot be empty",
            )
        })?;
    let ts_text = header("ok-access-timestamp")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(
                Mandatory::Timestamp,
                "Request header OK-ACCESS-TIMESTAMP cannot be empty",
            )
        })?;
    let passphrase = header("ok-access-passphrase")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(
                Mandatory::Passphrase,
                "Request header OK-ACCESS-PASSPHRASE cannot be empty",
            )
        })?;
    let ts = parse_okx_timestamp(ts_text)
        .ok_or_else(|| malformed(Mandatory::TimestampFormat, "Invalid OK-ACCESS-TIMESTAMP"))?;
    if header("x-simulated-trading").map(str::trim) == Some("1") {
        return Err(NativeError::Simulated);
    }
    let presented = base64::engine::general_purpose::STANDARD
        .decode(sign)
        .map_err(|_| NativeError::BadSignature)?;
    let mut m = mac(keys.secret);
    m.update(ts_text.as_bytes());
    m.update(req.method.as_bytes());
    m.update(req.path.as_bytes());
    if !req.query.is_empty() {
        m.update(b"?");
        m.update(req.query.as_bytes());
    }
    m.update(req.body);
    m.verify_slice(&presented)
        .map_err(|_| NativeError::BadSignature)?;
    // The passphrase, compared in constant time through an HMAC of each under a fixed key.
    let expected = keys.passphrase.unwrap_or_default();
    let digest = |s: &str| {
        let mut m = mac("keygate/okx-passphrase");
        m.update(s.as_bytes());
        m.finalize().into_bytes()
    };
    let mut check = mac("keygate/okx-passphrase");
    check.update(passphrase.as_bytes());
    if expected.is_empty() || check.verify_slice(&digest(expected)).is_err() {
        return Err(NativeError::BadPassphrase);
    }
    if now_ms.saturating_sub(ts).unsigned_abs() > OKX_WINDOW_MS.unsigned_abs() {
        return Err(NativeError::Stale("Timestamp request expired".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    fn keys() -> Keys<'static> {
        Keys {
            api_key: "k",
            secret: SECRET,
            passphrase: Some("pass-phrase"),
        }
    }

    fn no_headers<'a>(_: &str) -> Option<&'a str> {
        None
    }

    fn req<'a>(method: &'a str, path: &'a str, query: &'a str, body: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            query,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn binance_documented_examples_verify() {
        // Binance's request-security examples: all in the query, all in the body, and mixed
        // (query directly followed by the body, no '&' between).
        let now = 1499827319559;
        let all = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        let k = keys();
        assert_eq!(
            verify(
                VenueKind::Binance,
                &req("POST", "/api/v3/order", all, ""),
                &no_headers,
                &k,
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                VenueKind::Binance,
                &req("POST", "/api/v3/order", "", all),
                &no_headers,
                &k,
                now
            ),
            Ok(())
        );
        let mixed = req(
            "POST",
            "/api/v3/order",
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        );
        assert_eq!(
            verify(VenueKind::Binance, &mixed, &no_headers, &k, now),
            Ok(())
        );
        // Altered after signing, another secret, stale, ahead, too wide a window.
        let altered = all.replace("quantity=1", "quantity=9");
        let bad = |q: &str, now| {
            verify(
                VenueKind::Binance,
                &req("POST", "/api/v3/order", q, ""),
                &no_headers,
                &k,
                now,
            )
        };
        assert_eq!(bad(&altered, now), Err(NativeError::BadSignature));
        let other = Keys {
            secret: "another",
            ..k
        };
        assert_eq!(
            verify(
                VenueKind::Binance,
                &req("POST", "/api/v3/order", all, ""),
                &no_headers,
                &other,
                now
            ),
            Err(NativeError::BadSignature)
        );
        assert!(matches!(bad(all, now + 5001), Err(NativeError::Stale(_))));
        assert_eq!(bad(all, now + 5000), Ok(()));
        assert!(matches!(bad(all, now - 1000), Err(NativeError::Stale(_))));
        assert_eq!(bad(all, now - 999), Ok(()));
        assert!(matches!(
            bad("timestamp=1&signature=00", now),
            Err(NativeError::BadSignature)
        ));
        assert!(matches!(
            bad("timestamp=1&signature=a&signature=b", now),
            Err(NativeError::Malformed {
                code: Mandatory::Signature,
                ..
            })
        ));
        assert!(matches!(
            bad("symbol=X&signature=aa", now),
            Err(NativeError::Malformed {
                code: Mandatory::Timestamp,
                ..
            })
        ));
        assert!(matches!(
            bad("timestamp=1&recvWindow=60001&signature=aa", now),
            Err(NativeError::Malformed {
                code: Mandatory::RecvWindow,
                ..
            })
        ));
    }

    #[test]
    fn claims_read_the_key_and_whether_it_signed() {
        let h = |n: &str| (n == BINANCE_KEY_HEADER).then_some("abc");
        assert_eq!(
            claim(VenueKind::Binance, &req("GET", "/api/v3/ping", "", ""), &h),
            Claim::Unsigned { key: "abc" }
        );
        assert_eq!(
            claim(
                VenueKind::Binance,
                &req("GET", "/api/v3/account", "timestamp=1&signature=x", ""),
                &h
            ),
            Claim::Signed { key: "abc" }
        );
        assert_eq!(
            claim(VenueKind::Okx, &req("GET", "/x", "", ""), &h),
            Claim::None
        );
    }

    #[test]
    fn okx_signature_passphrase_and_window() {
        const TS: &str = "2020-12-08T09:08:57.715Z";
        let now = parse_okx_timestamp(TS).unwrap();
        let body = r#"{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}"#;
        let path = "/api/v5/account/set-leverage";
        let sign = crate::okx::signature(SECRET, TS, "POST", path, body);
        let k = keys();
        let r = req("POST", path, "", body);
        let check = |r: &Request<'_>, ts: &str, pass: &str, sim: &str, now| {
            let h = |n: &str| match n {
                "ok-access-sign" => Some(sign.as_str()),
                "ok-access-timestamp" => Some(ts),
                "ok-access-passphrase" => Some(pass),
                "x-simulated-trading" => Some(sim),
                _ => None,
            };
            verify(VenueKind::Okx, r, &h, &k, now)
        };
        assert_eq!(check(&r, TS, "pass-phrase", "0", now), Ok(()));
        assert_eq!(check(&r, TS, "pass-phrase", "0", now + 30_000), Ok(()));
        assert!(matches!(
            check(&r, TS, "pass-phrase", "0", now + 30_001),
            Err(NativeError::Stale(_))
        ));
        let changed = req(
            "POST",
            path,
            "",
            r#"{"instId":"BTC-USDT","lever":"50","mgnMode":"isolated"}"#,
        );
        assert_eq!(
            check(&changed, TS, "pass-phrase", "0", now),
            Err(NativeError::BadSignature)
        );
        let moved = req("POST", "/api/v5/account/other", "", body);
        assert_eq!(
            check(&moved, TS, "pass-phrase", "0", now),
            Err(NativeError::BadSignature)
        );
        assert_eq!(
            check(&r, TS, "nope", "0", now),
            Err(NativeError::BadPassphrase)
        );
        assert_eq!(
            check(&r, TS, "pass-phrase", "1", now),
            Err(NativeError::Simulated)
        );
        assert!(matches!(
            check(&r, "yesterday", "pass-phrase", "0", now),
            Err(NativeError::Malformed {
                code: Mandatory::TimestampFormat,
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(q in "\\PC{0,60}", b in "\\PC{0,60}", now in proptest::num::i64::ANY) {
            let k = keys();
            let _ = verify(VenueKind::Binance, &req("POST", "/api/v3/order", &q, &b), &no_headers, &k, now);
            let h = |n: &str| -> Option<&str> { (n.starts_with("ok-access")).then_some(q.as_str()) };
            let _ = verify(VenueKind::Okx, &req("POST", "/p", &q, &b), &h, &k, now);
        }
    }
}
