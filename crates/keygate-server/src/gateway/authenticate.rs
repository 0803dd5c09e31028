//! The gateway's first steps: how a request presents itself ([`Presentation`], from its headers
//! alone), the credentials it carries ([`read`]: a bearer token parsed, a native key's id
//! checked for shape), and for a native key, its signature checked against the key's sealed
//! secret ([`venue`]); the decider then checks the token itself (revocation, expiry, client,
//! address, scope).
//!
//! Must not know: what the decider decides, or how the request is forwarded.

use axum::http::HeaderMap;
use keygate_core::auth::{self, NativeFailure, Presented};
use keygate_vault::CredentialSecret;
use keygate_venues::native::{self as signing, Claim, NativeError};
use keygate_venues::{Classified, Request, VenueKind};

use super::Incoming;
use crate::VenueSetup;
use crate::native::Refused;
use crate::refusal::{GatewayError, Internal, NoToken, Unavailable};
use crate::venue_format::Style;

/// How a request says who sends it, read from its headers before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presentation<'a> {
    /// A bearer token: `Authorization` is sent, or the venue takes no request without one.
    Bearer,
    /// The venue's own API-key header, and no `Authorization`.
    Native { kind: VenueKind, key: &'a str },
    /// No credentials, to a venue whose public market data goes unsigned (`anonymous_public`).
    Anonymous { kind: VenueKind },
}

impl<'a> Presentation<'a> {
    /// How `headers` present a request to the venue of `setup` (None: not configured). A
    /// bearer token wins; else the venue's own key header.
    pub(super) fn of(headers: &'a HeaderMap, setup: Option<&VenueSetup>) -> Self {
        let Some(setup) = setup else {
            return Self::Bearer;
        };
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Self::Bearer;
        }
        let kind = setup.adapter.kind;
        let key_header = match kind {
            VenueKind::Binance => signing::BINANCE_KEY_HEADER,
            VenueKind::Okx => signing::OKX_KEY_HEADER,
        };
        match headers.get(key_header).and_then(|v| v.to_str().ok()) {
            Some(key) => Self::Native { kind, key },
            None if setup.anonymous_public => Self::Anonymous { kind },
            None => Self::Bearer,
        }
    }

    /// How a refusal is answered: requests with the venue's key header, and those without
    /// credentials where public market data goes unsigned (as client libraries send them), in
    /// the venue's own format.
    pub(super) fn style(self) -> Option<Style> {
        match self {
            Self::Bearer => None,
            Self::Native { kind, .. } | Self::Anonymous { kind } => {
                Some(Style { kind, action: None })
            }
        }
    }
}

/// The credentials a request carries, read but not yet checked against anything stored.
#[derive(Debug)]
pub(super) enum Credentials<'a> {
    Token(Presented),
    /// The venue's own authentication (a native key whose id has the right shape), or none.
    Venue(VenueCredentials<'a>),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct VenueCredentials<'a> {
    pub kind: VenueKind,
    /// The native key's id; None: no credentials (anonymous public market data).
    pub key: Option<&'a str>,
}

/// Reads the credentials `presentation` says the request carries.
pub(super) fn read<'a>(
    presentation: Presentation<'a>,
    headers: &HeaderMap,
) -> Result<Credentials<'a>, GatewayError> {
    match presentation {
        Presentation::Bearer => bearer_token(headers).map(Credentials::Token),
        Presentation::Native { kind, key } if valid_key_id(key) => {
            Ok(Credentials::Venue(VenueCredentials {
                kind,
                key: Some(key),
            }))
        }
        Presentation::Native { .. } => Err(GatewayError::NotNativeKey),
        Presentation::Anonymous { kind } => {
            Ok(Credentials::Venue(VenueCredentials { kind, key: None }))
        }
    }
}

/// The bearer token of a request, parsed.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Presented, GatewayError> {
    let text = bearer(headers).map_err(GatewayError::Unauthenticated)?;
    auth::parse_token(text).map_err(GatewayError::Token)
}

/// The bearer token text of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, NoToken> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(NoToken::NoBearer)
}

/// Whether `key` has the shape of a native key's id (a token id: 16 lower-case hex digits).
fn valid_key_id(key: &str) -> bool {
    key.len() == 16 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The venue's REST path of a gateway URL path as sent (not percent-decoded): what a bot signs.
fn raw_venue_path(uri_path: &str) -> Option<&str> {
    let rest = uri_path.strip_prefix("/venues/")?;
    rest.find('/').map(|i| &rest[i..])
}

/// A request authenticated the venue's way (or not at all).
#[derive(Debug)]
pub(super) enum Venue<'c> {
    /// A signed native request: its key and what its signature check found, for the decider.
    Presented(Presented),
    /// Public market data without credentials, to be forwarded unsigned.
    Public(&'c Classified),
}

/// Authenticates a request that came with the venue's own credentials, or none.
pub(super) async fn venue<'c>(
    inc: &Incoming<'_>,
    creds: VenueCredentials<'_>,
    venue_path: &str,
    body: &[u8],
    classified: &'c Result<Classified, GatewayError>,
) -> Result<Venue<'c>, GatewayError> {
    let headers = inc.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let req = Request {
        method: inc.method.as_str(),
        path: raw_venue_path(inc.uri.path()).unwrap_or(venue_path),
        query: inc.uri.query().unwrap_or(""),
        body,
    };
    let claim = match creds.key {
        None => Claim::None,
        Some(_) => signing::claim(creds.kind, &req, &header),
    };
    match claim {
        Claim::None | Claim::Unsigned { .. } => {
            // Public market data, unsigned, where the venue's config allows it without
            // credentials.
            let anonymous_ok = inc.setup.is_some_and(|s| s.anonymous_public);
            if let Ok(c) = classified
                && anonymous_ok
                && !c.signed
                && c.method == "GET"
            {
                return Ok(Venue::Public(c));
            }
            Err(match creds.key {
                Some(_) => GatewayError::Unsigned,
                None => GatewayError::Unauthenticated(
                    bearer(headers).err().unwrap_or(NoToken::NoCredentials),
                ),
            })
        }
        Claim::Signed { key } => {
            let opened = inc
                .gw
                .native_keys
                .get(inc.gw.credentials.master(), key)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, venue = inc.venue, "a native key could not be read");
                    GatewayError::Unavailable(Unavailable::NativeKey)
                })?;
            let now = inc.gw.store.clock().now();
            let verified = match &opened {
                None => Err(NativeFailure::NoKey),
                Some(secret) => check_signature(creds.kind, key, secret, &req, &header, now)?,
            };
            drop(opened);
            let outcome = match verified {
                Ok(mac) => first_use(inc.gw.used_signatures.first_use(key, &mac, now).await)?,
                Err(f) => Err(f),
            };
            Ok(Venue::Presented(Presented::native(
                key.to_string(),
                outcome,
            )))
        }
    }
}

/// What a native signature check found: `Ok(Err(_))` is an authentication failure the decider
/// records (and answers); `Err(_)` a refusal of the request's own fault, answered at once.
type Checked = Result<Result<(), NativeFailure>, GatewayError>;

/// Checks a native request's signature under the key's opened secret at `now`: its decoded
/// MAC if good (for [`first_use`], on any instance), else what failed.
fn check_signature<'a>(
    kind: VenueKind,
    key: &str,
    secret: &CredentialSecret,
    req: &Request<'a>,
    header: &dyn Fn(&str) -> Option<&'a str>,
    now: i64,
) -> Result<Result<Vec<u8>, NativeFailure>, GatewayError> {
    let keys = crate::keys(secret, key).map_err(|e| GatewayError::Internal(Internal::Keys(e)))?;
    match signing::verify(kind, req, header, &keys, now) {
        // Verified yet unreadable cannot happen; if it did, it is no good signature.
        Ok(()) => Ok(signing::presented_mac(kind, req, header).ok_or(NativeFailure::BadSignature)),
        Err(e) => Ok(Err(signature_failure(e)?
            .err()
            .unwrap_or(NativeFailure::BadSignature))),
    }
}

/// A verified signature's use: the first (Ok), a repeat (stale), or not known (refused).
fn first_use(used: Result<(), Refused>) -> Checked {
    match used {
        Ok(()) => Ok(Ok(())),
        Err(Refused::Again) => Ok(Err(NativeFailure::Stale(
            "this signature was used before: sign every request anew, with its own timestamp"
                .into(),
        ))),
        Err(Refused::Unavailable(e)) => {
            tracing::error!(error = %e, "a native signature's use could not be recorded");
            Err(GatewayError::Unavailable(Unavailable::Signatures(e)))
        }
    }
}

/// A signature check's failure as an authentication failure or a refusal.
fn signature_failure(e: NativeError) -> Checked {
    match e {
        NativeError::BadSignature => Ok(Err(NativeFailure::BadSignature)),
        NativeError::BadPassphrase => Ok(Err(NativeFailure::BadPassphrase)),
        NativeError::Stale(d) => Ok(Err(NativeFailure::Stale(d))),
        NativeError::Simulated => Err(GatewayError::Simulated),
        NativeError::Malformed { code, detail } => {
            Err(GatewayError::Missing { what: code, detail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn key_ids_and_raw_paths() {
        assert!(valid_key_id("0123456789abcdef"));
        assert!(!valid_key_id("0123456789ABCDEF"));
        assert!(!valid_key_id("0123"));
        assert_eq!(
            raw_venue_path("/venues/binance/api/v3/order"),
            Some("/api/v3/order")
        );
        assert_eq!(raw_venue_path("/venues/binance"), None);
    }

    #[test]
    fn a_bearer_token_is_read_or_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(
            read(Presentation::Bearer, &h).unwrap_err().code(),
            "unauthenticated"
        );
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        assert_eq!(
            read(Presentation::Bearer, &h).unwrap_err().code(),
            "malformed"
        );
        let token = format!("Bearer kgt_{}_{}", "a".repeat(16), "b".repeat(64));
        h.insert("authorization", HeaderValue::from_str(&token).unwrap());
        assert!(matches!(
            read(Presentation::Bearer, &h),
            Ok(Credentials::Token(_))
        ));
        let bad_key = Presentation::Native {
            kind: VenueKind::Binance,
            key: "KEY",
        };
        assert!(matches!(read(bad_key, &h), Err(GatewayError::NotNativeKey)));
    }

    #[test]
    fn signature_failures_are_recorded_or_refused() {
        assert_eq!(
            signature_failure(NativeError::BadSignature).unwrap(),
            Err(NativeFailure::BadSignature)
        );
        assert_eq!(
            signature_failure(NativeError::Simulated)
                .unwrap_err()
                .code(),
            "simulated"
        );
        let missing = NativeError::Malformed {
            code: signing::Mandatory::Timestamp,
            detail: "no timestamp".into(),
        };
        assert_eq!(
            signature_failure(missing).unwrap_err().code(),
            "no_timestamp"
        );
        assert_eq!(first_use(Ok(())).unwrap(), Ok(()));
        assert!(matches!(
            first_use(Err(Refused::Again)),
            Ok(Err(NativeFailure::Stale(_)))
        ));
        let down = Refused::Unavailable(keygate_store::StoreError::Config("down".into()));
        let e = first_use(Err(down)).unwrap_err();
        assert_eq!(e.code(), "unavailable");
        assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
