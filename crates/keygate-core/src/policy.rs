//! Policy in Cedar. Policies are validated against keygate's schema (`schema.cedarschema`) when
//! they are loaded; an invalid policy set is refused as a whole.
//!
//! Semantics: default deny, forbid wins, and a policy that fails to evaluate makes the answer a
//! deny (Cedar itself would skip it). A `forbid` annotated `@hold` turns a would-be allow into a
//! hold for approval instead of a deny. `@id("…")` names a policy; `@reason("…")` gives the text
//! shown when it decides.
//!
//! Each client is judged by its own slice: the policies whose principal is that client, plus every
//! policy not bound to one client. Evaluation cost grows with the number of policies evaluated,
//! so the slices keep `decide` fast as the policy set grows.
//!
//! Why one file of ~890 lines (plus tests): loading, slicing, context building and evaluation
//! share private types (`Slice`, `Types`, `Memo`) whose invariants hold only together. The next
//! change that adds context fields (the trades issue's instrument, side and notional) moves
//! context building to a module of its own.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde::Serialize;

use crate::intent::Action;

/// keygate's Cedar schema, in Cedar's schema syntax.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// A policy file's name and text.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// Why policies could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("policy {id} is defined twice; give each policy a unique @id")]
    Duplicate { id: String },
    #[error("{file}: policy templates are not supported; write static policies")]
    Template { file: String },
    #[error("the policies do not match keygate's schema:\n{0}")]
    Invalid(String),
    #[error("internal schema error: {0}")]
    Schema(String),
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Hold,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Hold => "hold",
            Outcome::Deny => "deny",
        }
    }
}

/// What the policies said, and which of them said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVerdict {
    pub outcome: Outcome,
    /// The ids of the policies that decided.
    pub policies: Vec<String>,
    /// One line per deciding policy (its `@reason`, or what it did), or why nothing decided.
    pub reasons: Vec<String>,
}

/// The context of one request, typed; turned into Cedar's context by [`PolicySet`] evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyContext {
    pub amount_micros: i64,
    pub usd_value_cents: i64,
    pub asset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationRef>,
    pub client_usd_cents_10m: i64,
    pub client_usd_cents_1h: i64,
    pub client_usd_cents_24h: i64,
    pub client_count_1h: i64,
    pub hour_utc: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    pub signals: Vec<String>,
    pub anomaly_score: i64,
    pub approvals: i64,
    /// A trade's order, "" and 0 for anything else (and a trade without order details).
    pub instrument: String,
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub side: String,
    pub order_type: String,
    pub price_micros: i64,
    pub quantity_micros: i64,
    pub notional_usd_cents: i64,
    pub reference_price_micros: i64,
    pub price_deviation_bps: i64,
}

/// The destination of a request as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRef {
    pub address: String,
    #[serde(default)]
    pub label: String,
    pub age_hours: i64,
}

/// Who asks to do what to which resource.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub client: &'a str,
    pub venue: &'a str,
    pub action: Action,
    pub asset: Option<&'a str>,
}

struct Slice {
    all: PolicySet,
    /// The slice without its `@hold` forbids, if it has any.
    without_holds: Option<PolicySet>,
    /// The context fields its policies mention; only these are built per request. (A policy can
    /// only read a context attribute by writing its name, so one not mentioned is never read.)
    uses: Vec<bool>,
}

/// A client's policies split by the action they can apply to (a policy whose action scope
/// excludes an action can never decide it, so it is not evaluated for it).
struct Actions {
    by_action: HashMap<Action, Slice>,
    /// How many policies judge the client, over all actions.
    count: usize,
}

fn applies_to(p: &Policy, action: &EntityUid) -> bool {
    match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => &a == action,
        ActionConstraint::In(list) => list.contains(action),
    }
}

/// Every context attribute, in the order of `Uses` indexes.
const CONTEXT_FIELDS: [&str; 25] = [
    "amount_micros",
    "usd_value_cents",
    "asset",
    "destination",
    "destination_age_hours",
    "client_usd_cents_10m",
    "client_usd_cents_1h",
    "client_usd_cents_24h",
    "client_count_1h",
    "hour_utc",
    "source_ip",
    "signals",
    "anomaly_score",
    "approvals",
    "instrument",
    "symbol",
    "base",
    "quote",
    "side",
    "order_type",
    "price_micros",
    "quantity_micros",
    "notional_usd_cents",
    "reference_price_micros",
    "price_deviation_bps",
];

fn field_uses(policies: &[Policy]) -> Vec<bool> {
    // Search the parsed form (JSON), not the source: there, escapes in attribute names
    // (`context["source\u{5f}ip"]`) are decoded. A policy that cannot be shown that way gets
    // every field.
    let mut texts = Vec::with_capacity(policies.len());
    for p in policies {
        let Ok(j) = p.to_json() else {
            return vec![true; CONTEXT_FIELDS.len()];
        };
        let j = j.to_string();
        // Every use of `context` must be an attribute access or a `has` test; a policy that uses
        // the record as a whole (say `context == {…}`) sees every field.
        let whole = j.matches(r#"{"Var":"context"}"#).count();
        let by_attr = j.matches(r#"{".":{"left":{"Var":"context"}"#).count()
            + j.matches(r#"{"has":{"left":{"Var":"context"}"#).count();
        if whole != by_attr {
            return vec![true; CONTEXT_FIELDS.len()];
        }
        texts.push(j);
    }
    CONTEXT_FIELDS
        .iter()
        .map(|f| texts.iter().any(|t| t.contains(f)))
        .collect()
}

/// Entity type names, parsed once.
struct Types {
    client: EntityTypeName,
    venue: EntityTypeName,
    asset: EntityTypeName,
    destination: EntityTypeName,
    actions: HashMap<Action, EntityUid>,
}

impl Types {
    fn new() -> Result<Self, PolicyError> {
        let t =
            |s: &str| EntityTypeName::from_str(s).map_err(|e| PolicyError::Schema(e.to_string()));
        let action_type = t("Keygate::Action")?;
        let actions = Action::ALL
            .into_iter()
            .map(|a| {
                (
                    a,
                    EntityUid::from_type_name_and_id(
                        action_type.clone(),
                        EntityId::new(a.as_str()),
                    ),
                )
            })
            .collect();
        Ok(Self {
            client: t("Keygate::Client")?,
            venue: t("Keygate::Venue")?,
            asset: t("Keygate::Asset")?,
            destination: t("Keygate::Destination")?,
            actions,
        })
    }
}

/// A loaded, validated policy set, split into per-client slices.
pub struct Policies {
    schema: Schema,
    types: Types,
    whole: PolicySet,
    /// For clients no policy names: the policies for each action.
    global: Actions,
    per_client: HashMap<String, Actions>,
    holds: HashSet<PolicyId>,
    reasons: HashMap<PolicyId, String>,
    authorizer: Authorizer,
    /// Cedar builds an `ip(…)` value slowly (it parses the function name each time), so the
    /// values of recently seen addresses are kept. A cache, not state: it never changes a verdict.
    ip_values: std::sync::Mutex<HashMap<IpAddr, RestrictedExpression>>,
    /// Which load this is, so a [`Memo`] never answers for another policy set.
    generation: u64,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Verdicts already worked out against one set of entities (a `State` owns one, and a new
/// state starts empty). Cedar is a pure function of the policy set, the request (principal,
/// action, resource, context) and the entities; the key holds the policy set's generation, the
/// client, action, venue and asset, and every context field the client's slice mentions (the
/// only ones its context is built from), so a remembered verdict is the one Cedar would give.
/// Reads and trades repeat the same few keys; an outflow's amount makes most of its keys new.
/// At most [`Memo::CAPACITY`] verdicts are kept.
#[derive(Debug, Default)]
pub struct Memo {
    inner: std::sync::Mutex<MemoInner>,
}

#[derive(Debug, Default)]
struct MemoInner {
    generation: u64,
    verdicts: HashMap<String, PolicyVerdict>,
}

impl Memo {
    pub const CAPACITY: usize = 8192;

    /// Forgets every verdict (for benchmarks that time Cedar's own work).
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.verdicts.clear();
        }
    }

    fn get(&self, generation: u64, key: &str) -> Option<PolicyVerdict> {
        let inner = self.inner.lock().ok()?;
        if inner.generation != generation {
            return None;
        }
        inner.verdicts.get(key).cloned()
    }

    fn put(&self, generation: u64, key: String, v: &PolicyVerdict) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation || inner.verdicts.len() >= Self::CAPACITY {
            inner.verdicts.clear();
            inner.generation = generation;
        }
        inner.verdicts.insert(key, v.clone());
    }
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policies({} policies)", self.len())
    }
}

/// keygate's schema, parsed.
pub fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _)| s)
        .map_err(|e| PolicyError::Schema(e.to_string()))
}

/// Parses policy files into one set, naming each policy by its `@id` or `FILE#N`.
pub fn parse(sources: &[PolicySource]) -> Result<PolicySet, PolicyError> {
    let mut set = PolicySet::new();
    let mut seen = HashSet::new();
    for src in sources {
        let parsed = PolicySet::from_str(&src.text).map_err(|e| PolicyError::Parse {
            file: src.name.clone(),
            message: e.to_string(),
        })?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Template {
                file: src.name.clone(),
            });
        }
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        // Cedar names unnamed policies policy0, policy1, ... in file order.
        policies.sort_by_key(|p| {
            AsRef::<str>::as_ref(p.id())
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        for (n, p) in policies.into_iter().enumerate() {
            let id = match p.annotation("id") {
                Some(id) => id.to_string(),
                None => format!("{}#{}", src.name, n + 1),
            };
            if !seen.insert(id.clone()) {
                return Err(PolicyError::Duplicate { id });
            }
            set.add(p.new_id(PolicyId::new(id.clone())))
                .map_err(|_| PolicyError::Duplicate { id })?;
        }
    }
    Ok(set)
}

/// Validates a policy set against keygate's schema; the error lists every problem, one per line.
pub fn validate(set: &PolicySet) -> Result<(), PolicyError> {
    let validator = Validator::new(schema()?);
    let result = validator.validate(set, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let lines: Vec<String> = result
        .validation_errors()
        .map(|e| format!("  policy {}: {e}", e.policy_id()))
        .collect();
    Err(PolicyError::Invalid(lines.join("\n")))
}

impl Policies {
    /// Parses, validates and slices policy files.
    pub fn load(sources: &[PolicySource]) -> Result<Self, PolicyError> {
        let set = parse(sources)?;
        validate(&set)?;
        Self::from_set(set)
    }

    fn from_set(whole: PolicySet) -> Result<Self, PolicyError> {
        let types = Types::new()?;
        let mut holds = HashSet::new();
        let mut reasons = HashMap::new();
        let mut global = Vec::new();
        let mut by_client: HashMap<String, Vec<Policy>> = HashMap::new();
        for p in whole.policies() {
            if p.effect() == Effect::Forbid && p.annotation("hold").is_some() {
                holds.insert(p.id().clone());
            }
            if let Some(r) = p.annotation("reason") {
                reasons.insert(p.id().clone(), r.to_string());
            }
            match p.principal_constraint() {
                PrincipalConstraint::Eq(uid) if uid.type_name() == &types.client => {
                    by_client
                        .entry(uid.id().unescaped().to_string())
                        .or_default()
                        .push(p.clone());
                }
                _ => global.push(p.clone()),
            }
        }
        let make = |policies: Vec<Policy>| -> Result<Slice, PolicyError> {
            let has_holds = policies.iter().any(|p| holds.contains(p.id()));
            let without_holds = if has_holds {
                Some(
                    PolicySet::from_policies(
                        policies.iter().filter(|p| !holds.contains(p.id())).cloned(),
                    )
                    .map_err(|e| PolicyError::Schema(e.to_string()))?,
                )
            } else {
                None
            };
            Ok(Slice {
                uses: field_uses(&policies),
                all: PolicySet::from_policies(policies)
                    .map_err(|e| PolicyError::Schema(e.to_string()))?,
                without_holds,
            })
        };
        let action_uids = types.actions.clone();
        let split = |policies: Vec<Policy>| -> Result<Actions, PolicyError> {
            let count = policies.len();
            let mut by_action = HashMap::new();
            for (action, uid) in &action_uids {
                let mine = policies
                    .iter()
                    .filter(|p| applies_to(p, uid))
                    .cloned()
                    .collect();
                by_action.insert(*action, make(mine)?);
            }
            Ok(Actions { by_action, count })
        };
        let mut per_client = HashMap::new();
        for (client, mut own) in by_client {
            own.extend(global.iter().cloned());
            per_client.insert(client, split(own)?);
        }
        Ok(Self {
            schema: schema()?,
            types,
            global: split(global)?,
            whole,
            per_client,
            holds,
            reasons,
            authorizer: Authorizer::new(),
            ip_values: std::sync::Mutex::new(HashMap::new()),
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    pub fn len(&self) -> usize {
        self.whole.policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole set (for benchmarks and listings).
    pub fn whole(&self) -> &PolicySet {
        &self.whole
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// How many policies judge this client (over all actions).
    pub fn slice_len(&self, client: &str) -> usize {
        self.per_client.get(client).unwrap_or(&self.global).count
    }

    /// How many policies are evaluated for this client and action.
    pub fn slice_len_for(&self, client: &str, action: Action) -> usize {
        self.slice(client, action)
            .map_or(0, |s| s.all.policies().count())
    }

    fn slice(&self, client: &str, action: Action) -> Option<&Slice> {
        self.per_client
            .get(client)
            .unwrap_or(&self.global)
            .by_action
            .get(&action)
    }

    pub fn client_uid(&self, name: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.types.client.clone(), EntityId::new(name))
    }

    pub fn venue_uid(&self, venue: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.types.venue.clone(), EntityId::new(venue))
    }

    pub fn asset_uid(&self, venue: &str, asset: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(
            self.types.asset.clone(),
            EntityId::new(format!("{venue}/{asset}")),
        )
    }

    pub fn destination_uid(&self, venue: &str, asset: &str, address: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(
            self.types.destination.clone(),
            EntityId::new(format!("{venue}/{asset}/{address}")),
        )
    }

    fn action_uid(&self, a: Action) -> EntityUid {
        // Every action is in the map by construction.
        self.types
            .actions
            .get(&a)
            .cloned()
            .unwrap_or_else(|| self.venue_uid("?"))
    }

    /// The entities policies may refer to: clients, venues, assets and destinations.
    pub fn entities(&self, world: &World<'_>) -> Result<Entities, String> {
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let mut out = Vec::new();
        let mut venues = HashSet::new();
        for c in world.clients {
            let tags = RestrictedExpression::new_set(c.tags.iter().map(|t| s(t)));
            out.push(
                Entity::new(
                    self.client_uid(&c.name),
                    HashMap::from([("name".into(), s(&c.name)), ("tags".into(), tags)]),
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())?,
            );
            venues.extend(c.venues.iter().map(String::as_str));
        }
        let mut assets = HashSet::new();
        for (v, a) in world.assets {
            venues.insert(v);
            assets.insert((*v, *a));
        }
        // One entity per address: entries for the same address on other routes (networks,
        // destination types) share it, the first one's label naming it.
        let mut seen = HashSet::new();
        for d in world.destinations {
            venues.insert(&d.venue);
            assets.insert((&d.venue, &d.asset));
            if !seen.insert((&d.venue, &d.asset, &d.address)) {
                continue;
            }
            out.push(
                Entity::new(
                    self.destination_uid(&d.venue, &d.asset, &d.address),
                    HashMap::from([
                        ("address".into(), s(&d.address)),
                        ("asset".into(), s(&d.asset)),
                        ("label".into(), s(&d.label)),
                    ]),
                    HashSet::from([self.venue_uid(&d.venue)]),
                )
                .map_err(|e| e.to_string())?,
            );
        }
        for (v, a) in assets {
            out.push(self.asset_entity(v, a)?);
        }
        for v in venues {
            out.push(self.venue_entity(v)?);
        }
        Entities::from_entities(out, Some(&self.schema)).map_err(|e| e.to_string())
    }

    fn venue_entity(&self, venue: &str) -> Result<Entity, String> {
        Entity::new(
            self.venue_uid(venue),
            HashMap::from([(
                "name".into(),
                RestrictedExpression::new_string(venue.into()),
            )]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())
    }

    fn asset_entity(&self, venue: &str, asset: &str) -> Result<Entity, String> {
        Entity::new(
            self.asset_uid(venue, asset),
            HashMap::from([
                (
                    "symbol".into(),
                    RestrictedExpression::new_string(asset.into()),
                ),
                (
                    "venue".into(),
                    RestrictedExpression::new_string(venue.into()),
                ),
            ]),
            HashSet::from([self.venue_uid(venue)]),
        )
        .map_err(|e| e.to_string())
    }

    /// Judges one request against its client's slice. Never fails: anything that goes wrong
    /// (a bad context, a policy that errors) is a deny that says why.
    pub fn evaluate(
        &self,
        subject: &Subject<'_>,
        ctx: &PolicyContext,
        entities: &Entities,
    ) -> PolicyVerdict {
        let resource = match subject.asset {
            Some(a) => self.asset_uid(subject.venue, a),
            None => self.venue_uid(subject.venue),
        };
        // An asset or venue nobody declared still gets its entity, so `resource in Venue` and
        // its attributes work for it too.
        let extended;
        let entities = if entities.get(&resource).is_none() {
            let mut extra = vec![];
            if let Some(a) = subject.asset {
                extra.push(self.asset_entity(subject.venue, a));
            }
            if entities.get(&self.venue_uid(subject.venue)).is_none() {
                extra.push(self.venue_entity(subject.venue));
            }
            let extra: Result<Vec<Entity>, String> = extra.into_iter().collect();
            match extra.and_then(|x| {
                entities
                    .clone()
                    .add_entities(x, Some(&self.schema))
                    .map_err(|e| e.to_string())
            }) {
                Ok(e) => {
                    extended = e;
                    &extended
                }
                Err(e) => {
                    return deny_error(format!(
                        "cannot describe {}/{:?} to the policies: {e}",
                        subject.venue, subject.asset
                    ));
                }
            }
        } else {
            entities
        };
        let request = match self.request(subject, ctx) {
            Ok(r) => r,
            Err(e) => return deny_error(e),
        };
        let Some(slice) = self.slice(subject.client, subject.action) else {
            return deny_error(format!("no policy slice for {}", subject.action));
        };
        let response = self
            .authorizer
            .is_authorized(&request, &slice.all, entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            return PolicyVerdict {
                outcome: Outcome::Deny,
                policies: response
                    .diagnostics()
                    .errors()
                    .map(|e| match e {
                        cedar_policy::AuthorizationError::PolicyEvaluationError(p) => {
                            p.policy_id().to_string()
                        }
                    })
                    .collect(),
                reasons: errors
                    .into_iter()
                    .map(|e| format!("a policy failed to evaluate, which counts as a deny: {e}"))
                    .collect(),
            };
        }
        let deciding: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        match response.decision() {
            Decision::Allow => self.verdict(Outcome::Allow, &deciding, "permits"),
            Decision::Deny if deciding.is_empty() => PolicyVerdict {
                outcome: Outcome::Deny,
                policies: vec![],
                reasons: vec![format!(
                    "no policy permits client {} to {} on {} (default deny)",
                    subject.client, subject.action, subject.venue
                )],
            },
            Decision::Deny => {
                let only_holds = deciding.iter().all(|id| self.holds.contains(id));
                if only_holds && let Some(rest) = &slice.without_holds {
                    let again = self.authorizer.is_authorized(&request, rest, entities);
                    if again.diagnostics().errors().next().is_some() {
                        return deny_error(
                            "a policy failed to evaluate, which counts as a deny".into(),
                        );
                    }
                    if again.decision() == Decision::Allow {
                        return self.verdict(Outcome::Hold, &deciding, "holds");
                    }
                    // Nothing permits it anyway: say so, rather than name the hold.
                    return PolicyVerdict {
                        outcome: Outcome::Deny,
                        policies: vec![],
                        reasons: vec![format!(
                            "no policy permits client {} to {} on {} (default deny)",
                            subject.client, subject.action, subject.venue
                        )],
                    };
                }
                let forbids: Vec<PolicyId> = deciding
                    .into_iter()
                    .filter(|id| !self.holds.contains(id) || only_holds)
                    .collect();
                self.verdict(Outcome::Deny, &forbids, "forbids")
            }
        }
    }

    /// [`Policies::evaluate`], answered from `memo` when the same question was asked against
    /// the same entities before.
    pub fn evaluate_memo(
        &self,
        subject: &Subject<'_>,
        ctx: &PolicyContext,
        entities: &Entities,
        memo: &Memo,
    ) -> PolicyVerdict {
        let key = self.memo_key(subject, ctx);
        if let Some(v) = memo.get(self.generation, &key) {
            return v;
        }
        let v = self.evaluate(subject, ctx, entities);
        memo.put(self.generation, key, &v);
        v
    }

    /// Everything a verdict depends on besides the policy set and the entities: the request's
    /// principal, action and resource, and the context fields the slice's context is built from.
    fn memo_key(&self, subject: &Subject<'_>, c: &PolicyContext) -> String {
        use std::fmt::Write;
        let uses = self
            .slice(subject.client, subject.action)
            .map(|s| s.uses.as_slice());
        let used = |i: usize| uses.and_then(|u| u.get(i)).copied().unwrap_or(true);
        // Every context field must be in the key (a verdict remembered without one would answer
        // for requests that differ in it): a field added to the context without a line below
        // does not compile.
        let PolicyContext {
            amount_micros: _,
            usd_value_cents: _,
            asset: _,
            destination: _,
            client_usd_cents_10m: _,
            client_usd_cents_1h: _,
            client_usd_cents_24h: _,
            client_count_1h: _,
            hour_utc: _,
            source_ip: _,
            signals: _,
            anomaly_score: _,
            approvals: _,
            instrument: _,
            symbol: _,
            base: _,
            quote: _,
            side: _,
            order_type: _,
            price_micros: _,
            quantity_micros: _,
            notional_usd_cents: _,
            reference_price_micros: _,
            price_deviation_bps: _,
        } = c;
        let mut k = String::with_capacity(96);
        // Names cannot hold the separator (keygate's names are letters, digits, . _ - :).
        let _ = write!(
            k,
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            subject.client,
            subject.action,
            subject.venue,
            subject.asset.unwrap_or("\u{0}")
        );
        let mut long = |i: usize, v: i64| {
            if used(i) {
                let _ = write!(k, "\u{1f}{i}={v}");
            }
        };
        long(0, c.amount_micros);
        long(1, c.usd_value_cents);
        long(4, c.destination.as_ref().map(|d| d.age_hours).unwrap_or(-1));
        long(5, c.client_usd_cents_10m);
        long(6, c.client_usd_cents_1h);
        long(7, c.client_usd_cents_24h);
        long(8, c.client_count_1h);
        long(9, c.hour_utc);
        long(12, c.anomaly_score);
        long(13, c.approvals);
        long(20, c.price_micros);
        long(21, c.quantity_micros);
        long(22, c.notional_usd_cents);
        long(23, c.reference_price_micros);
        long(24, c.price_deviation_bps);
        if used(2) {
            let _ = write!(k, "\u{1f}2={:?}", c.asset);
        }
        if used(3) {
            match &c.destination {
                Some(d) => {
                    let _ = write!(k, "\u{1f}3={:?}", d.address);
                }
                None => k.push_str("\u{1f}3-"),
            }
        }
        if used(10) {
            match c.source_ip {
                Some(ip) => {
                    let _ = write!(k, "\u{1f}10={ip}");
                }
                None => k.push_str("\u{1f}10-"),
            }
        }
        if used(11) {
            let _ = write!(k, "\u{1f}11={:?}", c.signals);
        }
        let strings = [
            (14, &c.instrument),
            (15, &c.symbol),
            (16, &c.base),
            (17, &c.quote),
            (18, &c.side),
            (19, &c.order_type),
        ];
        for (i, v) in strings {
            if used(i) {
                let _ = write!(k, "\u{1f}{i}={v:?}");
            }
        }
        k
    }

    /// The Cedar request for a subject and context (for benchmarks and tools).
    pub fn request(&self, subject: &Subject<'_>, ctx: &PolicyContext) -> Result<Request, String> {
        let resource = match subject.asset {
            Some(a) => self.asset_uid(subject.venue, a),
            None => self.venue_uid(subject.venue),
        };
        let context = self
            .context(subject, ctx)
            .map_err(|e| format!("cannot build the policy context: {e}"))?;
        Request::new(
            self.client_uid(subject.client),
            self.action_uid(subject.action),
            resource,
            context,
            None,
        )
        .map_err(|e| format!("cannot build the policy request: {e}"))
    }

    fn verdict(&self, outcome: Outcome, ids: &[PolicyId], verb: &str) -> PolicyVerdict {
        PolicyVerdict {
            outcome,
            policies: ids.iter().map(ToString::to_string).collect(),
            reasons: ids
                .iter()
                .map(|id| match self.reasons.get(id) {
                    Some(r) => format!("{id}: {r}"),
                    None => format!("policy {id} {verb} this"),
                })
                .collect(),
        }
    }

    fn ip_value(&self, ip: IpAddr) -> RestrictedExpression {
        let Ok(mut cache) = self.ip_values.lock() else {
            return RestrictedExpression::new_ip(ip.to_string());
        };
        if let Some(v) = cache.get(&ip) {
            return v.clone();
        }
        if cache.len() >= 4096 {
            cache.clear();
        }
        let v = RestrictedExpression::new_ip(ip.to_string());
        cache.insert(ip, v.clone());
        v
    }

    fn context(&self, subject: &Subject<'_>, c: &PolicyContext) -> Result<Context, String> {
        let uses = self
            .slice(subject.client, subject.action)
            .map(|s| s.uses.as_slice());
        let used = |i: usize| uses.and_then(|u| u.get(i)).copied().unwrap_or(true);
        let long = RestrictedExpression::new_long;
        let mut pairs: Vec<(String, RestrictedExpression)> =
            Vec::with_capacity(CONTEXT_FIELDS.len());
        let mut push = |i: usize, v: &dyn Fn() -> RestrictedExpression| {
            if used(i) {
                pairs.push((CONTEXT_FIELDS[i].to_string(), v()));
            }
        };
        push(0, &|| long(c.amount_micros));
        push(1, &|| long(c.usd_value_cents));
        push(2, &|| RestrictedExpression::new_string(c.asset.clone()));
        if let Some(d) = &c.destination {
            let asset = subject.asset.unwrap_or_default();
            push(3, &|| {
                RestrictedExpression::new_entity_uid(self.destination_uid(
                    subject.venue,
                    asset,
                    &d.address,
                ))
            });
            push(4, &|| long(d.age_hours));
        }
        push(5, &|| long(c.client_usd_cents_10m));
        push(6, &|| long(c.client_usd_cents_1h));
        push(7, &|| long(c.client_usd_cents_24h));
        push(8, &|| long(c.client_count_1h));
        push(9, &|| long(c.hour_utc));
        if let Some(ip) = c.source_ip {
            push(10, &|| self.ip_value(ip));
        }
        push(11, &|| {
            RestrictedExpression::new_set(
                c.signals
                    .iter()
                    .map(|s| RestrictedExpression::new_string(s.clone())),
            )
        });
        push(12, &|| long(c.anomaly_score));
        push(13, &|| long(c.approvals));
        let string = |v: &String| RestrictedExpression::new_string(v.clone());
        push(14, &|| string(&c.instrument));
        push(15, &|| string(&c.symbol));
        push(16, &|| string(&c.base));
        push(17, &|| string(&c.quote));
        push(18, &|| string(&c.side));
        push(19, &|| string(&c.order_type));
        push(20, &|| long(c.price_micros));
        push(21, &|| long(c.quantity_micros));
        push(22, &|| long(c.notional_usd_cents));
        push(23, &|| long(c.reference_price_micros));
        push(24, &|| long(c.price_deviation_bps));
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }
}

fn deny_error(reason: String) -> PolicyVerdict {
    PolicyVerdict {
        outcome: Outcome::Deny,
        policies: vec![],
        reasons: vec![reason],
    }
}

/// What the policies may refer to, borrowed from the engine's state.
pub struct World<'a> {
    pub clients: &'a [crate::auth::ClientRecord],
    /// (venue, asset) pairs known from the config.
    pub assets: &'a [(&'a str, &'a str)],
    pub destinations: &'a [&'a crate::book::Destination],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(text: &str) -> Vec<&'static str> {
        let set = PolicySet::from_str(text).unwrap();
        let policies: Vec<Policy> = set.policies().cloned().collect();
        field_uses(&policies)
            .into_iter()
            .zip(CONTEXT_FIELDS)
            .filter(|(u, _)| *u)
            .map(|(_, f)| f)
            .collect()
    }

    #[test]
    fn only_mentioned_context_fields_are_built() {
        assert_eq!(
            uses(
                r#"permit(principal, action, resource) when { context.hour_utc < 3 && context has source_ip };"#
            ),
            vec!["hour_utc", "source_ip"]
        );
        assert_eq!(
            uses(r#"permit(principal, action, resource) when { context["approvals"] > 1 };"#),
            vec!["approvals"]
        );
        assert!(uses("permit(principal, action, resource);").is_empty());
        // The record used whole: every field.
        assert_eq!(
            uses("permit(principal, action, resource) when { context == context };").len(),
            CONTEXT_FIELDS.len()
        );
    }
}
