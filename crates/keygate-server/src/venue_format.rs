//! Refusals in a venue's own error format, for the requests that authenticate as the exchange
//! documents (or come without credentials where public market data goes unsigned), so client
//! libraries raise their usual exceptions: Binance `{"code": -NNNN, "msg": "…"}`, OKX
//! `{"code": "NNNNN", "msg": "…", "data": []}`, with keygate's code, reason and decision id in
//! `msg`. The mapping ([`venue_error`]) is an exhaustive match on [`GatewayError`] and is
//! documented in docs/bots.md.
//!
//! Must not know: why a request was refused beyond the refusal itself.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keygate_core::Action;
use keygate_core::auth::AuthError;
use keygate_venues::VenueKind;
use keygate_venues::native::Mandatory;
use serde_json::json;

use crate::refusal::{GatewayError, Refusal, with_decision};

/// How a native request's refusal is answered: the venue's dialect and, when the request was
/// classified, its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub kind: VenueKind,
    pub action: Option<Action>,
}

/// The venue's HTTP status and error code for one of keygate's refusals on a request of
/// `action`.
pub fn venue_error(
    kind: VenueKind,
    error: &GatewayError,
    action: Option<Action>,
) -> (StatusCode, i64) {
    match kind {
        VenueKind::Binance => binance(error, action),
        VenueKind::Okx => okx(error, action),
    }
}

fn binance(error: &GatewayError, action: Option<Action>) -> (StatusCode, i64) {
    use GatewayError as G;
    use StatusCode as S;
    // What Binance answers when it will not carry a request out, by action.
    let refused = match action {
        Some(Action::Trade) => (S::BAD_REQUEST, -2010),
        Some(Action::Cancel) => (S::BAD_REQUEST, -2011),
        Some(Action::Withdraw) | Some(Action::Transfer) => (S::BAD_REQUEST, -4015),
        Some(Action::Read) | None => (S::UNAUTHORIZED, -1002),
    };
    let rejected = (S::UNAUTHORIZED, -2015);
    match error {
        G::Unauthenticated(_) | G::NotNativeKey => (S::UNAUTHORIZED, -2014),
        G::Token(e) | G::TokenAfterCheck(e) => match e {
            AuthError::Malformed => (S::UNAUTHORIZED, -2014),
            AuthError::Unknown { .. }
            | AuthError::WrongKind { .. }
            | AuthError::Revoked { .. }
            | AuthError::Expired { .. }
            | AuthError::ClientDisabled { .. }
            | AuthError::WrongAddress { .. }
            | AuthError::OutOfScope { .. }
            | AuthError::BadPassphrase { .. } => rejected,
            AuthError::BadSignature { .. } => (S::BAD_REQUEST, -1022),
            AuthError::Stale { .. } => (S::BAD_REQUEST, -1021),
            AuthError::BadSecret { .. } => refused,
        },
        G::Unsigned | G::Simulated => rejected,
        G::Missing { what, .. } => match what {
            Mandatory::Passphrase => rejected,
            Mandatory::Signature | Mandatory::Timestamp | Mandatory::TimestampFormat => {
                (S::BAD_REQUEST, -1102)
            }
            Mandatory::RecvWindow => (S::BAD_REQUEST, -1131),
        },
        G::TooManyFailures(_) | G::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, -1003),
        G::BodyTooLarge => (S::BAD_REQUEST, -1101),
        G::BadRequest(_) => (S::BAD_REQUEST, -1102),
        G::UnknownEndpoint(_) => (S::BAD_REQUEST, -1020),
        G::Unavailable(_) => (S::SERVICE_UNAVAILABLE, -1001),
        G::VenueUnreachable(_) => (S::BAD_GATEWAY, -1007),
        G::CredentialUnavailable(_) | G::Internal(_) => (S::INTERNAL_SERVER_ERROR, -1000),
        G::Denied(_)
        | G::Frozen(_)
        | G::Held { .. }
        | G::HeldBefore { .. }
        | G::Replayed(_)
        | G::HoldPending(_)
        | G::HoldInvalid(_)
        | G::HoldExpired(_)
        | G::Unclassified(_)
        | G::UnknownVenue(_)
        | G::InProgress { .. }
        | G::NodeUnavailable(_)
        | G::NodeRefused(_)
        | G::NonceBlocked(_)
        | G::NotSent(_)
        | G::NotFound(_) => refused,
    }
}

fn okx(error: &GatewayError, action: Option<Action>) -> (StatusCode, i64) {
    use GatewayError as G;
    use StatusCode as S;
    let unauthorized = |code| (S::UNAUTHORIZED, code);
    // What OKX answers when it will not carry a request out.
    let refused = (S::OK, 50027);
    match error {
        G::Unauthenticated(_) | G::NotNativeKey => unauthorized(50111),
        G::Token(e) | G::TokenAfterCheck(e) => match e {
            AuthError::Malformed
            | AuthError::Unknown { .. }
            | AuthError::WrongKind { .. }
            | AuthError::Revoked { .. }
            | AuthError::Expired { .. } => unauthorized(50111),
            AuthError::ClientDisabled { .. } => unauthorized(50100),
            AuthError::WrongAddress { .. } => unauthorized(50110),
            AuthError::OutOfScope { .. } => unauthorized(50114),
            AuthError::BadPassphrase { .. } => unauthorized(50105),
            AuthError::BadSignature { .. } => unauthorized(50113),
            AuthError::Stale { .. } => unauthorized(50102),
            AuthError::BadSecret { .. } => refused,
        },
        G::Unsigned => unauthorized(50114),
        G::Missing { what, .. } => match what {
            Mandatory::Signature => unauthorized(50106),
            Mandatory::Timestamp => unauthorized(50107),
            Mandatory::TimestampFormat => unauthorized(50112),
            Mandatory::Passphrase => unauthorized(50104),
            Mandatory::RecvWindow => (S::BAD_REQUEST, 51000),
        },
        G::Simulated => unauthorized(50101),
        G::TooManyFailures(_) | G::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, 50011),
        G::BodyTooLarge | G::BadRequest(_) => (S::BAD_REQUEST, 51000),
        G::UnknownEndpoint(_) => (S::BAD_REQUEST, 50062),
        G::Unavailable(_) => (S::SERVICE_UNAVAILABLE, 50013),
        G::VenueUnreachable(_) => (S::BAD_GATEWAY, 50004),
        G::CredentialUnavailable(_) | G::Internal(_) => (S::INTERNAL_SERVER_ERROR, 50026),
        G::Replayed(_) if action == Some(Action::Trade) => (S::OK, 51016),
        G::Frozen(_) => (S::OK, 50100),
        G::Denied(_)
        | G::Held { .. }
        | G::HeldBefore { .. }
        | G::Replayed(_)
        | G::HoldPending(_)
        | G::HoldInvalid(_)
        | G::HoldExpired(_)
        | G::Unclassified(_)
        | G::UnknownVenue(_)
        | G::InProgress { .. }
        | G::NodeUnavailable(_)
        | G::NodeRefused(_)
        | G::NonceBlocked(_)
        | G::NotSent(_)
        | G::NotFound(_) => refused,
    }
}

/// A refusal in the venue's own format, with keygate's code, reason and decision id in `msg`
/// (and the decision id in the `x-keygate-decision` header too).
pub fn venue_response(style: Style, refusal: &Refusal) -> Response {
    let (status, code) = venue_error(style.kind, &refusal.error, style.action);
    let error = refusal.error.code();
    let reason = &refusal.error;
    let msg = match refusal.decision_id {
        Some(id) => format!("keygate {error}: {reason} (decision {id})"),
        None => format!("keygate {error}: {reason}"),
    };
    let body = match style.kind {
        VenueKind::Binance => json!({"code": code, "msg": msg}),
        VenueKind::Okx => json!({"code": code.to_string(), "msg": msg, "data": []}),
    };
    with_decision(
        (status, axum::Json(body)).into_response(),
        refusal.decision_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::DECISION_HEADER;

    fn bad_signature() -> GatewayError {
        GatewayError::Token(AuthError::BadSignature { id: "k".into() })
    }

    fn stale() -> GatewayError {
        GatewayError::Token(AuthError::Stale {
            id: "k".into(),
            detail: "late".into(),
        })
    }

    fn denied() -> GatewayError {
        GatewayError::Denied("over the cap".into())
    }

    /// Moved from native.rs (it called `venue_error` with string codes); same assertions.
    #[test]
    fn refusals_map_to_codes_the_client_libraries_know() {
        let b = |e: GatewayError, a| venue_error(VenueKind::Binance, &e, a);
        assert_eq!(b(bad_signature(), None), (StatusCode::BAD_REQUEST, -1022));
        assert_eq!(b(stale(), None), (StatusCode::BAD_REQUEST, -1021));
        assert_eq!(
            b(denied(), Some(Action::Withdraw)),
            (StatusCode::BAD_REQUEST, -4015)
        );
        assert_eq!(
            b(denied(), Some(Action::Trade)),
            (StatusCode::BAD_REQUEST, -2010)
        );
        let o = |e: GatewayError, a| venue_error(VenueKind::Okx, &e, a);
        assert_eq!(o(bad_signature(), None), (StatusCode::UNAUTHORIZED, 50113));
        assert_eq!(o(stale(), None), (StatusCode::UNAUTHORIZED, 50102));
        assert_eq!(o(denied(), Some(Action::Withdraw)), (StatusCode::OK, 50027));
        let r = venue_response(
            Style {
                kind: VenueKind::Okx,
                action: Some(Action::Withdraw),
            },
            &denied().with_decision(7),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[DECISION_HEADER], "7");
    }

    #[test]
    fn every_native_refusal_has_its_venue_code() {
        use GatewayError as G;
        let missing = |what| G::Missing {
            what,
            detail: "d".into(),
        };
        // A refusal, the request's action, Binance's (status, code), OKX's.
        type Case = (GatewayError, Option<Action>, (u16, i64), (u16, i64));
        let cases: Vec<Case> = vec![
            (G::NotNativeKey, None, (401, -2014), (401, 50111)),
            (G::Unsigned, None, (401, -2015), (401, 50114)),
            (G::Simulated, None, (401, -2015), (401, 50101)),
            (
                missing(Mandatory::Signature),
                None,
                (400, -1102),
                (401, 50106),
            ),
            (
                missing(Mandatory::Timestamp),
                None,
                (400, -1102),
                (401, 50107),
            ),
            (
                missing(Mandatory::TimestampFormat),
                None,
                (400, -1102),
                (401, 50112),
            ),
            (
                missing(Mandatory::RecvWindow),
                None,
                (400, -1131),
                (400, 51000),
            ),
            (
                missing(Mandatory::Passphrase),
                None,
                (401, -2015),
                (401, 50104),
            ),
            (
                G::Token(AuthError::Revoked { id: "k".into() }),
                None,
                (401, -2015),
                (401, 50111),
            ),
            (
                G::Token(AuthError::ClientDisabled {
                    id: "k".into(),
                    client: "c".into(),
                }),
                None,
                (401, -2015),
                (401, 50100),
            ),
            (
                G::Token(AuthError::BadPassphrase { id: "k".into() }),
                None,
                (401, -2015),
                (401, 50105),
            ),
            (G::BodyTooLarge, None, (400, -1101), (400, 51000)),
            (
                G::Internal(crate::refusal::Internal::NoVenue),
                None,
                (500, -1000),
                (500, 50026),
            ),
            (
                G::Frozen("f".into()),
                Some(Action::Trade),
                (400, -2010),
                (200, 50100),
            ),
            (
                G::Replayed(crate::refusal::Replayed::Store("r".into())),
                Some(Action::Trade),
                (400, -2010),
                (200, 51016),
            ),
            (
                G::Replayed(crate::refusal::Replayed::Store("r".into())),
                Some(Action::Cancel),
                (400, -2011),
                (200, 50027),
            ),
            (
                G::Held {
                    reasons: "r".into(),
                    id: 1,
                },
                Some(Action::Read),
                (401, -1002),
                (200, 50027),
            ),
        ];
        for (e, action, binance, okx) in cases {
            let got = |k| {
                let (s, c) = venue_error(k, &e, action);
                (s.as_u16(), c)
            };
            assert_eq!(got(VenueKind::Binance), binance, "binance {e:?}");
            assert_eq!(got(VenueKind::Okx), okx, "okx {e:?}");
        }
    }

    #[tokio::test]
    async fn a_venue_answer_carries_keygates_code_reason_and_decision() {
        let style = Style {
            kind: VenueKind::Binance,
            action: Some(Action::Trade),
        };
        let r = venue_response(style, &denied().with_decision(9));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"code": -2010, "msg": "keygate denied: over the cap (decision 9)"})
        );
    }
}
