//! The gateway's last step: a request the decider allowed (and recorded) is tagged, signed
//! with the venue credential and sent; public market data goes unsigned within the venue's
//! anonymous rate. The venue's answer comes back unchanged, with the decision id header.
//!
//! Must not know: why the request was allowed.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use keygate_venues::{Classified, Keys};

use super::Incoming;
use crate::refusal::{ForwardError, GatewayError, Internal, Refusal, with_decision};
use crate::{Gateway, VenueSetup, metrics};

/// Forwards public market data unsigned, within the venue's `anonymous_rate` for the caller.
pub(super) async fn public(inc: &Incoming<'_>, c: &Classified) -> Result<Response, GatewayError> {
    let setup = inc.setup.ok_or(GatewayError::Internal(Internal::NoVenue))?;
    if !inc
        .gw
        .public_limit
        .admit(inc.venue, inc.ip, setup.anonymous_rate)
    {
        return Err(GatewayError::TooManyRequests {
            venue: inc.venue.to_string(),
            per_second: setup.anonymous_rate,
        });
    }
    let keys = Keys {
        api_key: "",
        secret: "",
        passphrase: None,
    };
    send(inc.gw, setup, c, &keys)
        .await
        .map_err(GatewayError::VenueUnreachable)
}

/// Signs the allowed request `id` with the venue credential and sends it.
pub(super) async fn allowed(
    inc: &Incoming<'_>,
    id: i64,
    mut classified: Classified,
) -> Result<Response, Refusal> {
    let Some(setup) = inc.setup else {
        return Err(GatewayError::Internal(Internal::NotForwardable).with_decision(id));
    };
    setup.adapter.tag(
        &mut classified,
        &keygate_core::outflow::gateway_reference(id),
    );
    let secret = inc.gw.credentials.get(&setup.credential).await.map_err(|reason| {
        tracing::error!(venue = inc.venue, decision = id, %reason, "the venue credential cannot be opened");
        GatewayError::CredentialUnavailable(reason).with_decision(id)
    })?;
    let forwarded = match crate::keys(&secret, &setup.credential) {
        Ok(keys) => send(inc.gw, setup, &classified, &keys).await,
        Err(e) => Err(ForwardError::NotApiKey(e)),
    };
    drop(secret);
    match forwarded {
        Ok(r) => Ok(with_decision(r, Some(id))),
        Err(e) => {
            tracing::warn!(venue = inc.venue, decision = id, reason = %e, "forwarding an allowed request failed");
            Err(GatewayError::VenueUnreachable(e).with_decision(id))
        }
    }
}

/// Signs with `keys` (unless the endpoint is public) and sends; the venue's answer comes back
/// unchanged.
async fn send(
    gw: &Gateway,
    setup: &VenueSetup,
    c: &Classified,
    keys: &Keys<'_>,
) -> Result<Response, ForwardError> {
    let out = setup.adapter.sign(c, keys, gw.store.clock().now());
    let req = crate::venue_request(&gw.http, &setup.base_url, out, setup.timeout)?;
    let started = Instant::now();
    let resp = req.send().await.map_err(|e| ForwardError::Send {
        venue: setup.name.clone(),
        cause: crate::send_error(&e),
    })?;
    let status = resp.status();
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let bytes: Bytes = resp.bytes().await.map_err(|e| ForwardError::Read {
        venue: setup.name.clone(),
        cause: crate::send_error(&e),
    })?;
    metrics::timing("venue", started.elapsed().as_secs_f64());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type
        && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
    {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
    }
    Ok(r)
}
