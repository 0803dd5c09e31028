//! Rolling limits: caps on the USD value, asset amount or count of allowed intents over a
//! rolling window, per scope (client, venue, asset, or the whole treasury).
//!
//! A limit's scope is three selectors. `All` (the field left out) lumps everything together,
//! `Only(x)` applies the limit to x alone, and `Each` (`"*"`) gives every client, venue or asset
//! its own bucket. A window at time t covers (t − window, t]. To bound memory, debits are kept in
//! at most ~1024 slots per window: a debit may stay counted up to window/1024 longer than exact,
//! never shorter, so rounding only ever errs on the side of denying.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::intent::{Action, valid_name};
use crate::time::{Millis, format_duration};

/// The longest window a limit may have.
pub const MAX_WINDOW: Millis = 366 * crate::time::DAY;

/// Which clients, venues or assets a limit covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Everything together, in one bucket.
    All,
    /// This one only.
    Only(String),
    /// Each one in its own bucket.
    Each,
}

impl Selector {
    /// `None` -> All, `"*"` -> Each, a name -> Only.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None => Selector::All,
            Some("*") => Selector::Each,
            Some(v) => Selector::Only(v.to_string()),
        }
    }

    fn matches(&self, v: &str) -> bool {
        match self {
            Selector::Only(x) => x == v,
            Selector::All | Selector::Each => true,
        }
    }
}

/// One declared limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub name: String,
    pub client: Selector,
    pub venue: Selector,
    pub asset: Selector,
    /// The actions it counts (withdraw and transfer unless the config says otherwise).
    pub actions: Vec<Action>,
    pub window: Millis,
    pub max_usd_cents: Option<i64>,
    pub max_amount: Option<Decimal>,
    pub max_count: Option<u64>,
}

impl LimitSpec {
    /// Checks that the limit makes sense; the message names the limit and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if !valid_name(n) {
            return Err(format!(
                "limit name {n:?} is not valid (letters, digits, . _ - :)"
            ));
        }
        if self.window <= 0 || self.window > MAX_WINDOW {
            return Err(format!(
                "limit {n}: window must be longer than zero and at most 366d"
            ));
        }
        if self.max_usd_cents.is_none() && self.max_amount.is_none() && self.max_count.is_none() {
            return Err(format!(
                "limit {n}: set at least one of max_usd, max_amount, max_count"
            ));
        }
        if self.max_amount.is_some() && self.asset == Selector::All {
            return Err(format!(
                "limit {n}: max_amount counts units of one asset; set asset = \"SYMBOL\" or asset = \"*\""
            ));
        }
        if self.max_usd_cents.is_some_and(|c| c < 0)
            || self.max_amount.is_some_and(|a| a < Decimal::ZERO)
        {
            return Err(format!("limit {n}: a cap cannot be negative"));
        }
        if self.actions.is_empty() {
            return Err(format!(
                "limit {n}: actions is empty, so it would count nothing"
            ));
        }
        if let Some(a) = self.actions.iter().find(|a| !a.carries_value()) {
            return Err(format!(
                "limit {n}: a {a} carries no value to count; use trade, withdraw or transfer"
            ));
        }
        Ok(())
    }

    /// The bucket a move falls in under this limit, if the limit covers it.
    fn bucket(&self, m: &MoveRef<'_>) -> Option<String> {
        if !self.actions.contains(&m.action)
            || !self.client.matches(m.client)
            || !self.venue.matches(m.venue)
            || !self.asset.matches(m.asset)
        {
            return None;
        }
        let mut key = String::new();
        for (dim, sel, v) in [
            ("client", &self.client, m.client),
            ("venue", &self.venue, m.venue),
            ("asset", &self.asset, m.asset),
        ] {
            if *sel != Selector::All {
                if !key.is_empty() {
                    key.push(' ');
                }
                let _ = write!(key, "{dim}={v}");
            }
        }
        if key.is_empty() {
            key.push_str("treasury");
        }
        Some(key)
    }
}

/// A value-moving intent that was allowed: what limits count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Move {
    pub at: Millis,
    pub client: String,
    pub venue: String,
    pub asset: String,
    pub action: Action,
    pub amount: Decimal,
    pub usd_cents: i64,
}

/// A borrowed view of a move, so a check allocates nothing it does not keep.
#[derive(Debug, Clone, Copy)]
pub struct MoveRef<'a> {
    pub at: Millis,
    pub client: &'a str,
    pub venue: &'a str,
    pub asset: &'a str,
    pub action: Action,
    pub amount: Decimal,
    pub usd_cents: i64,
}

impl Move {
    pub fn as_ref(&self) -> MoveRef<'_> {
        MoveRef {
            at: self.at,
            client: &self.client,
            venue: &self.venue,
            asset: &self.asset,
            action: self.action,
            amount: self.amount,
            usd_cents: self.usd_cents,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    at: Millis,
    usd: i128,
    amount: Decimal,
    count: u64,
}

/// Totals in one bucket's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub usd_cents: i128,
    pub amount: Decimal,
    pub count: u64,
}

#[derive(Debug, Clone)]
struct Window {
    len: Millis,
    grain: Millis,
    slots: VecDeque<Slot>,
    total: Usage,
}

impl Window {
    fn new(len: Millis) -> Self {
        Self {
            len,
            grain: (len / 1024).max(1),
            slots: VecDeque::new(),
            total: Usage::default(),
        }
    }

    fn expired(&self, slot: &Slot, now: Millis) -> bool {
        slot.at <= now.saturating_sub(self.len)
    }

    /// The totals at `now`, leaving out slots that have expired since the last record.
    fn usage(&self, now: Millis) -> Usage {
        let mut u = self.total;
        for s in self.slots.iter().take_while(|s| self.expired(s, now)) {
            u.usd_cents -= s.usd;
            u.amount = u.amount.checked_sub(s.amount).unwrap_or(Decimal::ZERO);
            u.count -= s.count;
        }
        u
    }

    fn record(&mut self, at: Millis, usd: i64, amount: Decimal) {
        while self.slots.front().is_some_and(|s| self.expired(s, at)) {
            if let Some(s) = self.slots.pop_front() {
                self.total.usd_cents -= s.usd;
                self.total.amount = self
                    .total
                    .amount
                    .checked_sub(s.amount)
                    .unwrap_or(Decimal::ZERO);
                self.total.count -= s.count;
            }
        }
        // Round the debit's time up to its slot: it expires a little late, never early.
        let slot_at = at
            .div_euclid(self.grain)
            .saturating_add(1)
            .saturating_mul(self.grain);
        match self.slots.back_mut() {
            Some(last) if last.at >= slot_at => {
                last.usd += i128::from(usd);
                last.amount = last.amount.checked_add(amount).unwrap_or(Decimal::MAX);
                last.count += 1;
            }
            _ => self.slots.push_back(Slot {
                at: slot_at,
                usd: i128::from(usd),
                amount,
                count: 1,
            }),
        }
        self.total.usd_cents += i128::from(usd);
        // Amounts are at most 10^18 per move (intent validation), so this saturates only
        // after ~10^10 moves in one window; saturating keeps it an over-count.
        self.total.amount = self
            .total
            .amount
            .checked_add(amount)
            .unwrap_or(Decimal::MAX);
        self.total.count += 1;
    }
}

/// Which cap a move would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    Usd,
    Amount,
    Count,
}

/// One limit's verdict on one move: what was used in the window before it, and the caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LimitCheck {
    pub limit: String,
    pub bucket: String,
    /// `window_ms` and the `asked_*` fields came after the first entries were written: an older
    /// entry reads back with them 0.
    #[serde(default)]
    pub window_ms: Millis,
    pub used_usd_cents: i128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd_cents: Option<i64>,
    pub used_amount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<Decimal>,
    pub used_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// The cap this move would break, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceeded: Option<Cap>,
    /// What this move asks for.
    #[serde(default)]
    pub asked_usd_cents: i64,
    #[serde(default)]
    pub asked_amount: Decimal,
}

impl LimitCheck {
    /// A one-line reason, for a deny.
    pub fn describe(&self) -> String {
        let usd = |c: i128| crate::price::format_usd(i64::try_from(c).unwrap_or(i64::MAX));
        let what = match self.exceeded {
            Some(Cap::Usd) => format!(
                "USD {} used + {} asked is over the cap of {}",
                usd(self.used_usd_cents),
                usd(i128::from(self.asked_usd_cents)),
                usd(i128::from(self.max_usd_cents.unwrap_or(0)))
            ),
            Some(Cap::Amount) => format!(
                "{} used + {} asked is over the cap of {}",
                self.used_amount,
                self.asked_amount,
                self.max_amount.unwrap_or_default()
            ),
            Some(Cap::Count) => format!(
                "{} used, the cap is {}",
                self.used_count,
                self.max_count.unwrap_or(0)
            ),
            None => "within its caps".to_string(),
        };
        format!(
            "limit {} ({}, {} window): {what}",
            self.limit,
            self.bucket,
            format_duration(self.window_ms)
        )
    }
}

/// The live state of every limit: the windows of allowed moves. Rebuilt from the stored moves
/// whenever the limits change or another instance has written.
#[derive(Debug, Clone)]
pub struct LimitState {
    /// The configured limits, then uncapped statistics windows (counted, never checked).
    specs: Vec<LimitSpec>,
    configured: usize,
    /// Per spec (by index), the windows of its buckets.
    windows: Vec<HashMap<String, Window>>,
}

impl LimitState {
    pub fn new(specs: Vec<LimitSpec>) -> Self {
        Self::with_stats(specs, vec![])
    }

    /// Configured limits plus statistics windows, whose usage [`LimitState::stat`] reads.
    pub fn with_stats(mut specs: Vec<LimitSpec>, stats: Vec<LimitSpec>) -> Self {
        let configured = specs.len();
        specs.extend(stats);
        Self {
            windows: vec![HashMap::new(); specs.len()],
            specs,
            configured,
        }
    }

    /// The configured limits.
    pub fn specs(&self) -> &[LimitSpec] {
        &self.specs[..self.configured]
    }

    /// The usage of the `n`th statistics window's bucket for a move like `m`.
    pub fn stat(&self, n: usize, m: &MoveRef<'_>) -> Usage {
        let i = self.configured + n;
        let Some(bucket) = self.specs.get(i).and_then(|s| s.bucket(m)) else {
            return Usage::default();
        };
        self.windows[i]
            .get(&bucket)
            .map(|w| w.usage(m.at))
            .unwrap_or_default()
    }

    /// The longest window: how far back the stored moves must be read to rebuild the state.
    pub fn longest_window(&self) -> Millis {
        self.specs.iter().map(|s| s.window).max().unwrap_or(0)
    }

    /// What every limit covering `m` says about it, in declaration order.
    pub fn check(&self, m: &MoveRef<'_>) -> Vec<LimitCheck> {
        let mut out = Vec::new();
        for (i, spec) in self.specs[..self.configured].iter().enumerate() {
            let Some(bucket) = spec.bucket(m) else {
                continue;
            };
            let used = self.windows[i]
                .get(&bucket)
                .map(|w| w.usage(m.at))
                .unwrap_or_default();
            let exceeded = if spec
                .max_usd_cents
                .is_some_and(|cap| used.usd_cents + i128::from(m.usd_cents) > i128::from(cap))
            {
                Some(Cap::Usd)
            } else if spec.max_amount.is_some_and(|cap| {
                used.amount
                    .checked_add(m.amount)
                    .is_none_or(|total| total > cap)
            }) {
                Some(Cap::Amount)
            } else if spec.max_count.is_some_and(|cap| used.count + 1 > cap) {
                Some(Cap::Count)
            } else {
                None
            };
            out.push(LimitCheck {
                limit: spec.name.clone(),
                bucket,
                window_ms: spec.window,
                used_usd_cents: used.usd_cents,
                max_usd_cents: spec.max_usd_cents,
                used_amount: used.amount,
                max_amount: spec.max_amount,
                used_count: used.count,
                max_count: spec.max_count,
                exceeded,
                asked_usd_cents: m.usd_cents,
                asked_amount: m.amount,
            });
        }
        out
    }

    /// Counts an allowed move in every limit that covers it. Moves must come in time order;
    /// the decide step guarantees that by never letting its clock go backwards.
    pub fn record(&mut self, m: &MoveRef<'_>) {
        for (i, spec) in self.specs.iter().enumerate() {
            if let Some(bucket) = spec.bucket(m) {
                self.windows[i]
                    .entry(bucket)
                    .or_insert_with(|| Window::new(spec.window))
                    .record(m.at, m.usd_cents, m.amount);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{HOUR, MINUTE};

    #[test]
    fn a_limit_check_written_before_window_and_asked_fields_reads_back() {
        let old = r#"{"limit":"l","bucket":"b","used_usd_cents":5,"max_usd_cents":10,"used_amount":"1","used_count":1}"#;
        let c: LimitCheck = serde_json::from_str(old).unwrap();
        assert_eq!((c.window_ms, c.asked_usd_cents), (0, 0));
        assert_eq!(c.asked_amount, Decimal::ZERO);
        assert_eq!(c.max_usd_cents, Some(10));
        assert!(serde_json::from_str::<LimitCheck>(r#"{"limit":"l"}"#).is_err());
    }

    fn spec(name: &str, client: Selector, window: Millis, usd: i64) -> LimitSpec {
        LimitSpec {
            name: name.into(),
            client,
            venue: Selector::All,
            asset: Selector::All,
            actions: vec![Action::Withdraw, Action::Transfer],
            window,
            max_usd_cents: Some(usd),
            max_amount: None,
            max_count: None,
        }
    }

    fn mv(at: Millis, client: &str, usd: i64) -> Move {
        Move {
            at,
            client: client.into(),
            venue: "binance".into(),
            asset: "USDT".into(),
            action: Action::Withdraw,
            amount: Decimal::from(usd / 100),
            usd_cents: usd,
        }
    }

    #[test]
    fn a_window_forgets_old_moves() {
        let mut s = LimitState::new(vec![spec("h", Selector::All, HOUR, 10_000)]);
        let a = mv(0, "a", 6_000);
        assert_eq!(s.check(&a.as_ref())[0].exceeded, None);
        s.record(&a.as_ref());
        assert_eq!(
            s.check(&mv(MINUTE, "a", 6_000).as_ref())[0].exceeded,
            Some(Cap::Usd)
        );
        assert_eq!(s.check(&mv(MINUTE, "a", 4_000).as_ref())[0].exceeded, None);
        // A debit is never forgotten early, and is forgotten within a 1/1024 slot after its hour.
        assert_eq!(
            s.check(&mv(HOUR, "a", 6_000).as_ref())[0].exceeded,
            Some(Cap::Usd)
        );
        assert_eq!(
            s.check(&mv(HOUR + HOUR / 1024 + 1, "a", 6_000).as_ref())[0].exceeded,
            None
        );
    }

    #[test]
    fn each_gives_every_client_its_own_bucket() {
        let mut s = LimitState::new(vec![spec("per-client", Selector::Each, HOUR, 10_000)]);
        s.record(&mv(0, "a", 10_000).as_ref());
        let checks = s.check(&mv(1, "b", 10_000).as_ref());
        assert_eq!(checks[0].bucket, "client=b");
        assert_eq!(checks[0].exceeded, None);
        assert_eq!(s.check(&mv(1, "a", 1).as_ref())[0].exceeded, Some(Cap::Usd));
        // Only(x) covers x alone.
        let s = LimitState::new(vec![spec("only-a", Selector::Only("a".into()), HOUR, 1)]);
        assert!(s.check(&mv(1, "b", 100).as_ref()).is_empty());
    }

    #[test]
    fn amount_and_count_caps() {
        let mut l = spec("c", Selector::All, HOUR, i64::MAX);
        l.max_usd_cents = None;
        l.max_count = Some(2);
        l.asset = Selector::Only("USDT".into());
        l.max_amount = Some(Decimal::from(150));
        let mut s = LimitState::new(vec![l]);
        s.record(&mv(0, "a", 10_000).as_ref());
        assert_eq!(
            s.check(&mv(1, "a", 6_000).as_ref())[0].exceeded,
            Some(Cap::Amount)
        );
        s.record(&mv(1, "a", 100).as_ref());
        assert_eq!(
            s.check(&mv(2, "a", 100).as_ref())[0].exceeded,
            Some(Cap::Count)
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut l = spec("x", Selector::All, HOUR, 1);
        l.max_usd_cents = None;
        assert!(l.validate().unwrap_err().contains("at least one"));
        l.max_amount = Some(Decimal::ONE);
        assert!(l.validate().unwrap_err().contains("asset"));
        let mut l = spec("x", Selector::All, HOUR, 1);
        l.actions = vec![Action::Read];
        assert!(l.validate().unwrap_err().contains("read"));
    }
}
