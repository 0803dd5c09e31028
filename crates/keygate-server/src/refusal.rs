//! What keygate answers when it does not carry a request out: the HTTP layer's one error enum
//! ([`GatewayError`], for the venue route and the transfer API alike), its one mapping to
//! keygate's own JSON answer `{error, reason, decision_id}` ([`Refusal`]'s `IntoResponse`), and
//! the decision-id header every answer with a decision carries.
//!
//! Each variant is one wire code (the `error` field, [`GatewayError::code`]); where one code
//! has several causes, the variant's payload says which, and its `Display` is the `reason`.
//! The same refusals in a venue's own error format are in [`crate::venue_format`].
//!
//! Must not know: how a request is authenticated, classified, decided or forwarded.

use std::net::IpAddr;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_chain::nonce::SendError;
use keygate_chain::transfer::{PlanError, StatusError};
use keygate_core::auth::AuthError;
use keygate_store::StoreError;
use keygate_store::decider::Rejection;
use keygate_venues::ClassifyError;
use keygate_venues::native::{Mandatory, NativeError};
use serde_json::json;

use crate::bounds::{MAX_AUTH_FAILURES_PER_MINUTE, MAX_BODY};

/// The header that carries the decision id on every answer that has one.
pub const DECISION_HEADER: &str = "x-keygate-decision";

/// Why keygate did not carry a request out. The status says who must act: 400 the request is
/// malformed, 401 the token is not valid, 403 keygate said no, 404 no such venue or route, 409
/// a request id was used before, 413 the body is too large, 429 too many requests, 202 held for
/// approval, 500 keygate cannot sign, 502 the venue could not be reached, 503 keygate could not
/// record or read (and so did nothing).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Too many refused tokens came from this address in the last minute.
    #[error(transparent)]
    TooManyFailures(Throttled),
    /// No token was sent.
    #[error(transparent)]
    Unauthenticated(NoToken),
    /// The token was refused (by its parse, the decider, or the transfer API's check).
    #[error(transparent)]
    Token(AuthError),
    /// A transfer's token passed its check, then the decider refused it (revoked, expired or
    /// disabled in between): 401 whatever the reason.
    #[error(transparent)]
    TokenAfterCheck(AuthError),
    /// The venue's API-key header does not hold a native key's id.
    #[error(
        "the API key is not a keygate native key (16 lower-case hex digits, as `keygate token issue --native` prints it)"
    )]
    NotNativeKey,
    /// A native key without a signature, on an endpoint that is not public.
    #[error(
        "this request needs a signature: sign it with the keygate secret as the exchange documents (public market data goes unsigned only where the venue's anonymous_public is on)"
    )]
    Unsigned,
    /// OKX demo trading asked of a live venue.
    #[error("{}", NativeError::Simulated)]
    Simulated,
    /// A native request lacks (or garbles) a part of its signing scheme.
    #[error("{detail}")]
    Missing { what: Mandatory, detail: String },
    #[error("the request body is larger than {MAX_BODY} bytes; nothing was forwarded")]
    BodyTooLarge,
    #[error(transparent)]
    UnknownVenue(UnknownVenue),
    /// The venue's adapter does not know the endpoint.
    #[error(transparent)]
    UnknownEndpoint(ClassifyError),
    #[error(transparent)]
    BadRequest(BadRequest),
    /// Anonymous requests over the venue's `anonymous_rate`.
    #[error(
        "more than {per_second} requests a second without credentials from this address to {venue}; slow down, or send credentials"
    )]
    TooManyRequests { venue: String, per_second: u32 },
    #[error(transparent)]
    Unavailable(Unavailable),
    /// An allowed (or public) request could not be sent to the venue, or its answer read.
    #[error(transparent)]
    VenueUnreachable(ForwardError),
    /// An allowed request's venue credential cannot be opened (the reason says why).
    #[error("{0}; the request was allowed and recorded but nothing was forwarded")]
    CredentialUnavailable(crate::CredentialError),
    #[error(transparent)]
    Internal(Internal),
    /// A native request held for approval (a bearer request's hold is an answer, not this).
    #[error(
        "{reasons}; held for approval {id}: approvers run `keygate approve hold:{id}`; once a quorum has, send the same request again with the header x-keygate-hold: {id}"
    )]
    Held { reasons: String, id: i64 },
    /// A transfer's `client_ref` was held before.
    #[error(
        "client_ref {client_ref:?} was held for approval as decision {id}: approvers run `keygate approve hold:{id}`; once a quorum has, send it again with the header x-keygate-hold: {id}"
    )]
    HeldBefore { client_ref: String, id: i64 },
    /// The decider denied it (its reasons).
    #[error("{0}")]
    Denied(String),
    /// A freeze denied it (the decider's reasons).
    #[error("{0}")]
    Frozen(String),
    #[error(transparent)]
    Replayed(Replayed),
    /// A transfer's `client_ref` was allowed; the first request is still signing it.
    #[error(
        "client_ref {client_ref:?} was allowed as decision {id}, whose transfer the first request is still signing; GET /v1/transfers/{id} in a moment, and do not send it with a new client_ref"
    )]
    InProgress { client_ref: String, id: i64 },
    /// The hold named has not got its quorum yet (the store's reason).
    #[error("{0}")]
    HoldPending(String),
    #[error(transparent)]
    HoldInvalid(HoldInvalid),
    /// The hold named is past its time (the store's reason).
    #[error("{0}")]
    HoldExpired(String),
    /// The decider recorded the request as unclassified (the store's reason).
    #[error("{0}")]
    Unclassified(String),
    #[error(transparent)]
    NodeUnavailable(NodeUnavailable),
    /// The node refused the planned transfer.
    #[error("{0}; nothing was decided or signed")]
    NodeRefused(PlanError),
    /// A dropped transaction of keygate's blocks the nonce.
    #[error(transparent)]
    NonceBlocked(Unsent),
    /// An allowed transfer was not sent, for another reason than the node or the nonce.
    #[error(transparent)]
    NotSent(Unsent),
    #[error(transparent)]
    NotFound(NotFound),
}

#[derive(Debug, thiserror::Error)]
pub enum Throttled {
    #[error(
        "more than {MAX_AUTH_FAILURES_PER_MINUTE} requests from {0} were refused for their token in the last minute; check the token, then retry in a minute"
    )]
    Gateway(IpAddr),
    #[error(
        "too many requests from this address were refused for their token in the last minute; retry in a minute"
    )]
    Transfers,
}

#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    #[error("send the keygate token as Authorization: Bearer kgt_<id>_<secret>")]
    NoBearer,
    #[error("no credentials")]
    NoCredentials,
}

#[derive(Debug, thiserror::Error)]
pub enum UnknownVenue {
    #[error("venue {venue:?} is not configured; the venues are: {known}")]
    NotConfigured { venue: String, known: String },
    #[error("venue {venue:?} is not an EVM venue of this keygate; the EVM venues are: {known}")]
    NotEvm { venue: String, known: String },
    #[error("venue {0} is no longer configured")]
    Gone(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("the path does not decode to UTF-8")]
    PathNotUtf8,
    #[error(transparent)]
    Classify(ClassifyError),
    #[error("x-keygate-request-id must be 1-64 printable ASCII characters without spaces")]
    RequestId,
    #[error(
        "x-keygate-hold must be the number of an approved hold (the approval_id of a 202 answer)"
    )]
    Hold,
    #[error(
        "the body must be JSON {{venue, asset, to, amount (a decimal string), client_ref}}: {0}"
    )]
    TransferBody(serde_json::Error),
    #[error("client_ref must be 1-64 printable ASCII characters without spaces")]
    ClientRef,
    #[error("to {0:?} is not an address (0x and 40 hex digits)")]
    Address(String),
    #[error("amount {0:?} is not a decimal")]
    Amount(String),
    /// The asset is not listed, or the amount is not exact in its decimals.
    #[error(transparent)]
    Plan(PlanError),
    #[error("the transfer id is the decision id, a number")]
    TransferId,
}

#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("keygate could not read the API key; nothing was forwarded. Retry later")]
    NativeKey,
    #[error(
        "keygate could not check that this signature is used once ({0}); nothing was forwarded. Retry later, signed anew"
    )]
    Signatures(StoreError),
    #[error("keygate could not record the decision ({0}); nothing was forwarded. Retry later")]
    NotRecorded(StoreError),
    #[error("keygate could not record the decision ({0}); nothing was signed. Retry later")]
    TransferNotRecorded(StoreError),
    #[error("keygate could not read the token ({0}); retry later")]
    Token(StoreError),
    #[error("keygate could not read the transfer ({0}); retry later")]
    Transfer(StoreError),
    #[error(
        "keygate could not read what this request did before ({0}); retry it as it is, with the same client_ref"
    )]
    Before(StoreError),
    #[error("{0}; retry later")]
    Status(StatusError),
    #[error("{0}; nothing was decided or signed")]
    Nonce(SendError),
}

/// Why a request could not be sent to the venue, or its answer read.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Method(#[from] crate::UnsendableMethod),
    /// The venue's credential is not an API key pair.
    #[error(transparent)]
    NotApiKey(crate::CredentialError),
    #[error(
        "venue {venue} could not be reached ({cause}); the request was allowed and recorded but may not have arrived. Check the venue before retrying"
    )]
    Send { venue: String, cause: &'static str },
    #[error(
        "venue {venue}'s answer could not be read ({cause}); the request may have been carried out. Check the venue before retrying"
    )]
    Read { venue: String, cause: &'static str },
}

#[derive(Debug, thiserror::Error)]
pub enum Internal {
    #[error("no venue")]
    NoVenue,
    #[error("no credentials were read")]
    NoCredentials,
    #[error("an allowed request had no venue or classification; nothing was forwarded")]
    NotForwardable,
    /// A native key's sealed parts are not an API key pair.
    #[error(transparent)]
    Keys(crate::CredentialError),
    #[error("keygate could not open the venue's key; nothing was decided or signed")]
    TransferKey,
}

#[derive(Debug, thiserror::Error)]
pub enum Replayed {
    /// The decider's reason: the request id was used before.
    #[error("{0}")]
    Store(String),
    #[error(
        "client_ref {client_ref:?} was used by decision {id}, which signed no transfer (it was denied or refused); use a new client_ref"
    )]
    ClientRef { client_ref: String, id: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum HoldInvalid {
    /// The decider's reason.
    #[error("{0}")]
    Store(String),
    #[error(
        "hold {hold} was carried out by transfer {by}, of another payment; send exactly the transfer that was held"
    )]
    OtherPayment { hold: i64, by: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeUnavailable {
    /// The node is down, or on another chain, when the transfer is planned.
    #[error(transparent)]
    Plan(PlanError),
    #[error(transparent)]
    Send(Unsent),
    #[error("{0}; the transfer's state cannot be read now, retry later")]
    Status(StatusError),
}

/// A transfer not sent: refused before its decision, or allowed and then not sent.
#[derive(Debug, thiserror::Error)]
pub enum Unsent {
    #[error("{0}; nothing was decided or signed")]
    BeforeDecision(SendError),
    #[error(
        "the transfer was allowed but not sent: {0}. Nothing is pending; its limit debit stays (limits only over-count); send a new transfer with a new client_ref"
    )]
    Allowed(SendError),
}

#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    #[error(
        "{0} is not a keygate route; venue requests go to /venues/<venue>/<the venue's REST path>"
    )]
    Route(String),
    #[error("no transfer {0} of this client")]
    Transfer(i64),
}

impl GatewayError {
    /// The wire code: the `error` field of keygate's answer (and the metrics' outcome).
    pub fn code(&self) -> &'static str {
        use GatewayError as G;
        match self {
            G::TooManyFailures(_) => "too_many_failures",
            G::Unauthenticated(_) => "unauthenticated",
            G::Token(e) | G::TokenAfterCheck(e) => e.code(),
            G::NotNativeKey => "malformed",
            G::Unsigned => "unsigned",
            G::Simulated => "simulated",
            G::Missing { what, .. } => match what {
                Mandatory::Signature => "no_signature",
                Mandatory::Timestamp => "no_timestamp",
                Mandatory::TimestampFormat => "bad_timestamp",
                Mandatory::RecvWindow => "bad_recv_window",
                Mandatory::Passphrase => "no_passphrase",
            },
            G::BodyTooLarge => "body_too_large",
            G::UnknownVenue(_) => "unknown_venue",
            G::UnknownEndpoint(_) => "unknown_endpoint",
            G::BadRequest(_) => "bad_request",
            G::TooManyRequests { .. } => "too_many_requests",
            G::Unavailable(_) => "unavailable",
            G::VenueUnreachable(_) => "venue_unreachable",
            G::CredentialUnavailable(_) => "credential_unavailable",
            G::Internal(_) => "internal",
            G::Held { .. } | G::HeldBefore { .. } => "held",
            G::Denied(_) => "denied",
            G::Frozen(_) => "frozen",
            G::Replayed(_) => "replayed",
            G::InProgress { .. } => "in_progress",
            G::HoldPending(_) => "hold_pending",
            G::HoldInvalid(_) => "hold_invalid",
            G::HoldExpired(_) => "hold_expired",
            G::Unclassified(_) => "unclassified",
            G::NodeUnavailable(_) => "node_unavailable",
            G::NodeRefused(_) => "node_refused",
            G::NonceBlocked(_) => "nonce_blocked",
            G::NotSent(_) => "not_sent",
            G::NotFound(_) => "not_found",
        }
    }

    /// The HTTP status of keygate's own answer.
    pub fn status(&self) -> StatusCode {
        use GatewayError as G;
        use StatusCode as S;
        match self {
            G::TooManyFailures(_) | G::TooManyRequests { .. } => S::TOO_MANY_REQUESTS,
            G::Unauthenticated(_)
            | G::TokenAfterCheck(_)
            | G::NotNativeKey
            | G::Unsigned
            | G::Simulated
            | G::Missing { .. } => S::UNAUTHORIZED,
            G::Token(e) => match e {
                AuthError::ClientDisabled { .. }
                | AuthError::WrongAddress { .. }
                | AuthError::OutOfScope { .. } => S::FORBIDDEN,
                AuthError::Malformed
                | AuthError::Unknown { .. }
                | AuthError::BadSecret { .. }
                | AuthError::WrongKind { .. }
                | AuthError::BadSignature { .. }
                | AuthError::BadPassphrase { .. }
                | AuthError::Stale { .. }
                | AuthError::Revoked { .. }
                | AuthError::Expired { .. } => S::UNAUTHORIZED,
            },
            G::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            G::UnknownVenue(_) | G::NotFound(_) => S::NOT_FOUND,
            G::UnknownEndpoint(_) | G::Denied(_) | G::Frozen(_) | G::HoldExpired(_) => S::FORBIDDEN,
            G::BadRequest(_) => S::BAD_REQUEST,
            G::Unavailable(_) | G::NodeUnavailable(_) | G::NonceBlocked(_) => {
                S::SERVICE_UNAVAILABLE
            }
            G::VenueUnreachable(_) | G::NotSent(_) => S::BAD_GATEWAY,
            G::CredentialUnavailable(_) | G::Internal(_) => S::INTERNAL_SERVER_ERROR,
            G::Held { .. } => S::ACCEPTED,
            G::HeldBefore { .. }
            | G::Replayed(_)
            | G::InProgress { .. }
            | G::HoldPending(_)
            | G::HoldInvalid(_)
            | G::Unclassified(_) => S::CONFLICT,
            G::NodeRefused(_) => S::UNPROCESSABLE_ENTITY,
        }
    }

    /// Whether the refusal counts against the caller's address (a refused or missing token):
    /// [`MAX_AUTH_FAILURES_PER_MINUTE`] of them and its requests are refused unrecorded.
    pub fn counts_against_caller(&self) -> bool {
        use GatewayError as G;
        match self {
            G::Unauthenticated(_)
            | G::Token(_)
            | G::TokenAfterCheck(_)
            | G::NotNativeKey
            | G::Unsigned
            | G::Simulated
            | G::Missing { .. } => true,
            G::TooManyFailures(_)
            | G::BodyTooLarge
            | G::UnknownVenue(_)
            | G::UnknownEndpoint(_)
            | G::BadRequest(_)
            | G::TooManyRequests { .. }
            | G::Unavailable(_)
            | G::VenueUnreachable(_)
            | G::CredentialUnavailable(_)
            | G::Internal(_)
            | G::Held { .. }
            | G::HeldBefore { .. }
            | G::Denied(_)
            | G::Frozen(_)
            | G::Replayed(_)
            | G::InProgress { .. }
            | G::HoldPending(_)
            | G::HoldInvalid(_)
            | G::HoldExpired(_)
            | G::Unclassified(_)
            | G::NodeUnavailable(_)
            | G::NodeRefused(_)
            | G::NonceBlocked(_)
            | G::NotSent(_)
            | G::NotFound(_) => false,
        }
    }

    /// The same refusal with the audit entry that records it.
    pub fn with_decision(self, id: i64) -> Refusal {
        Refusal {
            error: self,
            decision_id: Some(id),
        }
    }
}

/// The decider's rejection of a request before any decision (the store's typed code and its
/// reason), as a refusal. The one place that reads the store's rejections; exhaustive, so a new
/// rejection cannot go unanswered.
pub fn from_rejection(code: Rejection, reason: String) -> GatewayError {
    match code {
        Rejection::HoldExpired => GatewayError::HoldExpired(reason),
        Rejection::HoldPending => GatewayError::HoldPending(reason),
        Rejection::HoldInvalid => GatewayError::HoldInvalid(HoldInvalid::Store(reason)),
        Rejection::Unclassified => GatewayError::Unclassified(reason),
        Rejection::Replayed => GatewayError::Replayed(Replayed::Store(reason)),
    }
}

/// A refusal as answered: why, and the audit entry that records it if any.
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
    pub decision_id: Option<i64>,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Self {
        Self {
            error,
            decision_id: None,
        }
    }
}

impl IntoResponse for Refusal {
    /// keygate's own answer: `{error, reason, decision_id}` with the error's status.
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error.code(),
            "reason": self.error.to_string(),
            "decision_id": self.decision_id,
        });
        with_decision(
            (self.error.status(), axum::Json(body)).into_response(),
            self.decision_id,
        )
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        Refusal::from(self).into_response()
    }
}

/// `r` with the decision id in [`DECISION_HEADER`], when there is one.
pub fn with_decision(mut r: Response, id: Option<i64>) -> Response {
    if let Some(id) = id {
        r.headers_mut()
            .insert(DECISION_HEADER, HeaderValue::from(id));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_the_wire_ones() {
        let cases: Vec<(GatewayError, &str, StatusCode)> = vec![
            (
                GatewayError::Missing {
                    what: Mandatory::RecvWindow,
                    detail: "x".into(),
                },
                "bad_recv_window",
                StatusCode::UNAUTHORIZED,
            ),
            (
                GatewayError::Token(AuthError::OutOfScope {
                    id: "t".into(),
                    venue: "v".into(),
                    action: keygate_core::Action::Trade,
                    scope: "s".into(),
                }),
                "out_of_scope",
                StatusCode::FORBIDDEN,
            ),
            (
                GatewayError::TokenAfterCheck(AuthError::ClientDisabled {
                    id: "t".into(),
                    client: "c".into(),
                }),
                "client_disabled",
                StatusCode::UNAUTHORIZED,
            ),
            (
                GatewayError::NotNativeKey,
                "malformed",
                StatusCode::UNAUTHORIZED,
            ),
            (
                GatewayError::HoldExpired("r".into()),
                "hold_expired",
                StatusCode::FORBIDDEN,
            ),
            (
                GatewayError::Held {
                    reasons: "r".into(),
                    id: 3,
                },
                "held",
                StatusCode::ACCEPTED,
            ),
            (
                GatewayError::HeldBefore {
                    client_ref: "c".into(),
                    id: 3,
                },
                "held",
                StatusCode::CONFLICT,
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.status()), (code, status), "{e:?}");
        }
    }

    #[test]
    fn the_store_rejection_codes_map_to_their_refusals() {
        let code = |c| from_rejection(c, "why".into()).code();
        assert_eq!(code(Rejection::HoldExpired), "hold_expired");
        assert_eq!(code(Rejection::HoldPending), "hold_pending");
        assert_eq!(code(Rejection::HoldInvalid), "hold_invalid");
        assert_eq!(code(Rejection::Unclassified), "unclassified");
        assert_eq!(code(Rejection::Replayed), "replayed");
    }

    #[tokio::test]
    async fn a_refusal_is_answered_as_json_with_its_decision() {
        let r = GatewayError::Denied("over the cap".into())
            .with_decision(7)
            .into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[DECISION_HEADER], "7");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"error": "denied", "reason": "over the cap", "decision_id": 7})
        );
    }
}
