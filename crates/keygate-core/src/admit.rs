//! Admission of a gateway request inside one decider batch: who is asking (the token), whether
//! the request may be decided at all (it was classified, its request id is new, the hold it
//! names is approved and unused), and then its decision with the detectors watching.
//!
//! Pure: the store loads what a batch needs (tokens, hold records with their approval counts,
//! the first use of each request id) and passes it in; time is an argument. What one request
//! of a batch changes for the next (a hold carried out, a request id used) is kept in
//! [`Batch`]. This module must not know SQL, the audit log's format or HTTP.
//!
//! A hold is bound to the intent and to the canonical request keygate would forward for it (the
//! venue adapter's text; an opaque string here): carrying it out with any other request, even
//! one of the same intent, is refused.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::auth::{self, AuthError, ClientRecord, Presented, TokenRecord};
use crate::decide::{Engine, Extra, State, Watched, decide_watched};
use crate::intent::{Action, Intent};
use crate::policy::Outcome;
use crate::time::Millis;

/// Why a request was refused before any decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The venue adapter could not classify it.
    Unclassified,
    /// Its request id was used before for its client and venue.
    Replayed,
    /// The hold it names does not exist, is for another request (or binds none), or was
    /// carried out.
    HoldInvalid,
    /// The hold it names is not approved by a quorum yet.
    HoldPending,
    /// The hold it names expired.
    HoldExpired,
}

impl Rejection {
    /// The code bots and the audit log know it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unclassified => "unclassified",
            Rejection::Replayed => "replayed",
            Rejection::HoldInvalid => "hold_invalid",
            Rejection::HoldPending => "hold_pending",
            Rejection::HoldExpired => "hold_expired",
        }
    }

    /// The `event` of its audit entry.
    pub fn event(self) -> &'static str {
        match self {
            Rejection::Unclassified => "request.unclassified",
            Rejection::Replayed => "request.replayed",
            Rejection::HoldInvalid => "request.hold_invalid",
            Rejection::HoldPending => "request.hold_pending",
            Rejection::HoldExpired => "request.hold_expired",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gateway request as admission sees it (borrowed from the store's request).
#[derive(Debug, Clone, Copy)]
pub struct RequestRef<'a> {
    pub token: &'a Presented,
    pub ip: IpAddr,
    pub venue: &'a str,
    /// The intent as the venue adapter classified it, or why it could not.
    pub intent: &'a Result<Intent, String>,
    /// The client's own id for the request.
    pub request_id: Option<&'a str>,
    /// The approved hold this request carries out.
    pub hold: Option<i64>,
    /// The request as keygate would forward it, before signing (the venue adapter's canonical
    /// text), or None if it has none (it could not be classified).
    pub request_text: Option<&'a str>,
}

/// A hold as the store holds it, with the number of approvals it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub id: i64,
    pub client: String,
    pub venue: String,
    /// [`hold_digest`] of the held intent and request.
    pub digest: String,
    /// The held request as keygate would forward it; None for a hold that binds no request
    /// (kept from before holds were bound to requests, or set by a decision without one), which
    /// cannot be carried out.
    pub request_text: Option<String>,
    pub request_id: Option<String>,
    pub expires_ms: Millis,
    pub approved_ms: Option<Millis>,
    pub executed_by: Option<i64>,
    pub approvals: i64,
}

/// A request id as it is kept unique: per client and venue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub client: String,
    pub venue: String,
    pub request_id: String,
}

/// The digest a hold is known by, and approvers sign: SHA-256 (hex) of the canonical JSON of
/// the intent without its token and source address (the same request may come back with
/// another token, from another host of the client's) and the request text keygate would
/// forward, and without the reference price of an order (it is valued at the market of the
/// moment it is carried out).
pub fn hold_digest(intent: &Intent, request_text: &str) -> String {
    use sha2::{Digest, Sha256};
    #[derive(serde::Serialize)]
    struct Held<'a> {
        intent: &'a Intent,
        request: &'a str,
    }
    // Nor the market price keygate read when it came: the request carried out later is valued
    // at the market then.
    let order = intent.order.clone().map(|o| crate::order::Order {
        reference: None,
        ..o
    });
    let intent = Intent {
        token_id: None,
        source_ip: None,
        order,
        ..intent.clone()
    };
    let json = serde_json::to_vec(&Held {
        intent: &intent,
        request: request_text,
    })
    .unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Checks the token a request presents: for a classified request its scope too, else only
/// the token itself (who sent it matters to the audit). Gives the token's client.
pub fn authenticate<'t>(
    req: &RequestRef<'_>,
    token: Option<&'t TokenRecord>,
    client: Option<&ClientRecord>,
    now: Millis,
) -> Result<&'t str, AuthError> {
    let checked = match req.intent {
        Ok(i) => auth::authenticate(req.token, token, client, req.ip, req.venue, i.action, now),
        Err(_) => auth::check_token(req.token, token, client, req.ip, now).map(|_| ()),
    };
    checked.map(|()| token.map(|t| t.client.as_str()).unwrap_or_default())
}

/// The request id whose earlier use must be looked up: the request's own, unless it is the
/// held request's id (which the request carrying the hold out may use again).
pub fn request_key(
    req: &RequestRef<'_>,
    client: &str,
    hold: Option<&HoldRecord>,
) -> Option<RequestKey> {
    let rid = req.request_id?;
    if hold.is_some_and(|h| h.request_id.as_deref() == Some(rid)) {
        return None;
    }
    Some(RequestKey {
        client: client.to_string(),
        venue: req.venue.to_string(),
        request_id: rid.to_string(),
    })
}

/// An approved hold a request may carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsableHold {
    pub id: i64,
    pub approvals: i64,
}

/// A request as [`check_hold`] compares it with the hold: where it goes, its intent, and the
/// request text keygate would forward (None if it has none).
#[derive(Debug, Clone, Copy)]
pub struct HeldRequest<'a> {
    pub venue: &'a str,
    pub intent: &'a Intent,
    pub request_text: Option<&'a str>,
}

/// Checks the hold a request names: the same client, venue, intent and request text, approved
/// by a quorum, not expired, not used. `record` is what the store holds under `hid` (None if
/// nothing).
pub fn check_hold(
    hid: i64,
    record: Option<&HoldRecord>,
    req: &HeldRequest<'_>,
    store_now: Millis,
) -> Result<UsableHold, (Rejection, String)> {
    let Some(h) = record else {
        return Err((Rejection::HoldInvalid, format!("there is no hold {hid}")));
    };
    let intent = req.intent;
    if h.client != intent.client || h.venue != req.venue {
        return Err((
            Rejection::HoldInvalid,
            format!("hold {hid} is for another request; send exactly the request that was held"),
        ));
    }
    if h.request_text.is_none() {
        return Err((
            Rejection::HoldInvalid,
            format!(
                "hold {hid} binds no request keygate would forward (as holds set before keygate bound them to the exact request do not), so it cannot be carried out; send the request again without x-keygate-hold for a new hold"
            ),
        ));
    }
    let same = req
        .request_text
        .is_some_and(|text| h.request_text.as_deref() == Some(text))
        && h.digest == hold_digest(intent, req.request_text.unwrap_or_default());
    if !same {
        return Err((
            Rejection::HoldInvalid,
            format!(
                "hold {hid} is for another request; send exactly the request that was held (every parameter, in the same order)"
            ),
        ));
    }
    if let Some(d) = h.executed_by {
        return Err((
            Rejection::HoldInvalid,
            format!("hold {hid} was already carried out (decision {d})"),
        ));
    }
    if h.expires_ms <= store_now {
        return Err((
            Rejection::HoldExpired,
            format!(
                "hold {hid} expired at {}; send the request without x-keygate-hold for a new decision",
                crate::time::format_millis(h.expires_ms)
            ),
        ));
    }
    if h.approved_ms.is_none() {
        return Err((
            Rejection::HoldPending,
            format!(
                "hold {hid} is not approved by a quorum yet: keygate approve hold:{hid} --key FILE"
            ),
        ));
    }
    Ok(UsableHold {
        id: hid,
        approvals: h.approvals,
    })
}

/// What a batch is decided with besides the state: the hold records the store loaded for it,
/// the store's clock (hold expiry, clock skew), and what one request of the batch changes for
/// the rest of it.
#[derive(Debug)]
pub struct Batch<'a> {
    holds: &'a [HoldRecord],
    store_now: Millis,
    /// Request ids used by requests decided earlier in the batch.
    used_ids: HashSet<&'a RequestKey>,
    /// Holds carried out earlier in the batch.
    spent_holds: HashSet<i64>,
}

impl<'a> Batch<'a> {
    pub fn new(holds: &'a [HoldRecord], store_now: Millis) -> Self {
        Self {
            holds,
            store_now,
            used_ids: HashSet::new(),
            spent_holds: HashSet::new(),
        }
    }
}

/// What the store loaded about a request's id.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The request id to keep unique, if any (see [`request_key`]).
    pub key: Option<RequestKey>,
    /// The audit entry that first used `key`, if the store has one.
    pub first_use: Option<i64>,
}

/// A request that may be decided, decided.
#[derive(Debug)]
pub struct Admitted<'a> {
    /// The intent decided: the classified one, with the token's client, id and source address.
    pub intent: Intent,
    pub watched: Watched,
    /// The policy context from outside the intent (an approved hold's approvals).
    pub extra: Extra,
    /// The hold this allow carries out.
    pub carried_out: Option<i64>,
    /// The request id this decision uses (none for a deny: the bot may retry it).
    pub uses_id: Option<&'a RequestKey>,
}

/// What became of a gateway request in a batch.
#[derive(Debug)]
pub enum Admission<'a> {
    /// The token was refused.
    Refused {
        error: AuthError,
        action: Option<Action>,
    },
    /// Refused before a decision.
    Rejected {
        client: &'a str,
        rejection: Rejection,
        reason: String,
    },
    Decided(Box<Admitted<'a>>),
}

/// Admits and decides one gateway request, in batch order. `auth` is what [`authenticate`]
/// gave for it, `facts` what the store knows of its request id.
pub fn admit<'a>(
    engine: &Engine,
    state: &State,
    batch: &mut Batch<'a>,
    req: &RequestRef<'_>,
    auth: Result<&'a str, AuthError>,
    facts: &'a RequestFacts,
    now: Millis,
) -> Admission<'a> {
    let store_now = batch.store_now;
    let client = match (auth, req.intent) {
        (Err(error), intent) => {
            return Admission::Refused {
                error,
                action: intent.as_ref().ok().map(|i| i.action),
            };
        }
        (Ok(client), Err(reason)) => {
            return Admission::Rejected {
                client,
                rejection: Rejection::Unclassified,
                reason: reason.clone(),
            };
        }
        (Ok(client), Ok(intent)) => (client, intent),
    };
    let (client, intent) = client;
    let intent = client_intent(req, client, intent);
    let hold = req.hold.map(|hid| usable_hold(batch, hid, req, &intent));
    if let Some(Err((rejection, reason))) = hold {
        return Admission::Rejected {
            client,
            rejection,
            reason,
        };
    }
    if let Some(reason) = replayed(batch, req, facts) {
        return Admission::Rejected {
            client,
            rejection: Rejection::Replayed,
            reason,
        };
    }
    let hold = hold.and_then(Result::ok);
    let extra = match hold {
        Some(h) => Extra {
            approvals: h.approvals,
            approved: true,
            ..Extra::default()
        },
        None => Extra::default(),
    };
    let with_clock = Extra {
        reference_now: Some(store_now),
        ..extra.clone()
    };
    let watched = decide_watched(engine, state, &intent, now, &with_clock);
    let outcome = watched.verdict.outcome;
    let carried_out = hold.filter(|_| outcome == Outcome::Allow).map(|h| h.id);
    if let Some(hid) = carried_out {
        batch.spent_holds.insert(hid);
    }
    let uses_id = facts.key.as_ref().filter(|_| outcome != Outcome::Deny);
    if let Some(k) = uses_id {
        batch.used_ids.insert(k);
    }
    Admission::Decided(Box::new(Admitted {
        intent,
        watched,
        extra,
        carried_out,
        uses_id,
    }))
}

/// The classified intent as the token's client sends it.
fn client_intent(req: &RequestRef<'_>, client: &str, intent: &Intent) -> Intent {
    Intent {
        client: client.to_string(),
        token_id: Some(req.token.id.clone()),
        source_ip: Some(req.ip),
        ..intent.clone()
    }
}

/// The hold a request names, checked (a hold carried out earlier in this batch is spent).
fn usable_hold(
    batch: &Batch<'_>,
    hid: i64,
    req: &RequestRef<'_>,
    intent: &Intent,
) -> Result<UsableHold, (Rejection, String)> {
    if batch.spent_holds.contains(&hid) {
        return Err((
            Rejection::HoldInvalid,
            format!("hold {hid} was already carried out"),
        ));
    }
    let record = batch.holds.iter().find(|h| h.id == hid);
    let held = HeldRequest {
        venue: req.venue,
        intent,
        request_text: req.request_text,
    };
    check_hold(hid, record, &held, batch.store_now)
}

/// Why a request's id counts as used, if it does: earlier in this batch, or by an audit entry.
fn replayed(batch: &Batch<'_>, req: &RequestRef<'_>, facts: &RequestFacts) -> Option<String> {
    let key = facts.key.as_ref()?;
    let rid = req.request_id.unwrap_or_default();
    if batch.used_ids.contains(key) {
        return Some(format!(
            "request id {rid:?} was already used; use a new id for each request"
        ));
    }
    let id = facts.first_use?;
    Some(format!(
        "request id {rid:?} was already used (audit entry {id}); use a new id for each request"
    ))
}
