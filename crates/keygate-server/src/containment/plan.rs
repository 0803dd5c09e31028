//! What containment does, decided without IO: which freeze starts a venue's containment, the
//! steps it plans, which step may run now, how sweeps are ordered (largest USD value first),
//! what state each outcome leaves a step in, and the backoff between attempts.

use std::collections::HashMap;

use keygate_core::Millis;
use keygate_core::freeze::{Freeze, Scope};
use keygate_store::containment::{ContainmentRow, NewStep, StepRow, StepState};
use keygate_venues::containment::{Holding, Lock, Outcome, Wallet};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Policy;

/// A step's action with its parameters, as stored (`action` names the variant, `params` holds
/// its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "params", rename_all = "kebab-case")]
pub enum Action {
    /// Lock the leaked sub-account key.
    LockKey { lock: Lock },
    /// Stop transfers out of the sub-account (OKX).
    StopTransfers {},
    /// Read the sub-account's balances and plan a sweep of each.
    SweepRound { round: u32 },
    /// Move one balance to the master account.
    Sweep {
        asset: String,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        wallet: Wallet,
        /// Its value when planned, if a price was known (for the order and for people).
        usd_cents: Option<i64>,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::LockKey { .. } => "lock-key",
            Action::StopTransfers {} => "stop-transfers",
            Action::SweepRound { .. } => "sweep-round",
            Action::Sweep { .. } => "sweep",
        }
    }

    /// The step that plans it.
    pub fn new_step(&self) -> NewStep {
        let params = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("params").unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        NewStep {
            action: self.name().to_string(),
            params,
            client_id: matches!(self, Action::Sweep { .. }),
        }
    }

    /// The action of a stored step.
    pub fn of(step: &StepRow) -> Result<Action, String> {
        serde_json::from_value(serde_json::json!({"action": step.action, "params": step.params}))
            .map_err(|e| {
                format!(
                    "containment {} step {} ({}) cannot be read: {e}",
                    step.containment_id, step.seq, step.action
                )
            })
    }

    fn is_sweep(action: &str) -> bool {
        action == "sweep" || action == "sweep-round"
    }
}

/// Whether `f` covers `venue`, which signs with `credential`. A client's freeze does not: it
/// says nothing of the venue's key.
pub fn covers(f: &Freeze, venue: &str, credential: &str) -> bool {
    match &f.scope {
        Scope::All => true,
        Scope::Venue(v) => v == venue,
        Scope::Credential(c) => c == credential,
        Scope::Client(_) => false,
    }
}

/// The freeze that should start a containment of `venue` now, if one should: the earliest
/// active freeze covering it, unless a containment of the venue started while that freeze
/// (and so the venue's whole frozen spell) held. One containment per frozen spell: a second
/// freeze of an already-contained venue starts nothing, and lifting one does not undo it.
pub fn due(
    freezes: &[Freeze],
    containments: &[ContainmentRow],
    venue: &str,
    credential: &str,
) -> Option<i64> {
    let earliest = freezes
        .iter()
        .filter(|f| covers(f, venue, credential))
        .min_by_key(|f| (f.set_at, f.id))?;
    let contained = containments.iter().any(|c| {
        c.venue == venue && (c.freeze_id == earliest.id || c.started_ms >= earliest.set_at)
    });
    (!contained).then_some(earliest.id)
}

/// The steps a containment starts with, in order: lock the key, a first sweep round, stop
/// transfers out (last: it waits for the sweeps, so a switch that might also stop the master's
/// own transfer never comes before them).
pub fn initial_steps(policy: &Policy, can_stop_transfers: bool) -> Vec<NewStep> {
    let mut out = vec![];
    if let Some(lock) = &policy.lock {
        out.push(Action::LockKey { lock: lock.clone() }.new_step());
    }
    if policy.sweep {
        out.push(Action::SweepRound { round: 1 }.new_step());
    }
    if policy.stop_transfers && can_stop_transfers {
        out.push(Action::StopTransfers {}.new_step());
    }
    out
}

/// The steps that may be tried at `now`, in order: not final, due, and (for a sweep round or
/// the transfer-out switch) with every sweep before them final. A sweep round also waits for
/// the sweeps before it; the transfer-out switch for every sweep step of the containment.
pub fn runnable(steps: &[StepRow], now: Millis) -> Vec<i64> {
    let sweeping_before = |seq: i64| {
        steps
            .iter()
            .any(|s| s.seq < seq && Action::is_sweep(&s.action) && !s.state.is_final())
    };
    let sweeping = steps
        .iter()
        .any(|s| Action::is_sweep(&s.action) && !s.state.is_final());
    steps
        .iter()
        .filter(|s| !s.state.is_final() && s.next_ms <= now)
        .filter(|s| match s.action.as_str() {
            "sweep-round" => !sweeping_before(s.seq),
            "stop-transfers" => !sweeping,
            _ => true,
        })
        .map(|s| s.seq)
        .collect()
}

/// The sweeps of a round, largest USD value first (balances without a price last, by asset),
/// and the next round after them while rounds are left and anything was found.
pub fn sweeps(
    holdings: Vec<Holding>,
    prices: &HashMap<String, Decimal>,
    round: u32,
    rounds: u32,
) -> Vec<NewStep> {
    let mut valued: Vec<(Option<i64>, Holding)> = holdings
        .into_iter()
        .map(|h| {
            let usd = prices
                .get(&h.asset)
                .and_then(|p| keygate_core::price::usd_cents(h.amount, *p));
            (usd, h)
        })
        .collect();
    valued.sort_by(|(a, ha), (b, hb)| {
        b.cmp(a)
            .then_with(|| ha.asset.cmp(&hb.asset))
            .then_with(|| ha.wallet.cmp(&hb.wallet))
    });
    let found = !valued.is_empty();
    let mut out: Vec<NewStep> = valued
        .into_iter()
        .map(|(usd_cents, h)| {
            Action::Sweep {
                asset: h.asset,
                amount: h.amount,
                wallet: h.wallet,
                usd_cents,
            }
            .new_step()
        })
        .collect();
    if found && round < rounds {
        out.push(Action::SweepRound { round: round + 1 }.new_step());
    }
    out
}

/// The wait before attempt `attempts + 1`: the policy's minimum, doubled per attempt, at most
/// its maximum.
pub fn backoff(policy: &Policy, attempts: i64) -> Millis {
    let min = policy.retry_min.as_millis().min(i64::MAX as u128) as i64;
    let max = policy.retry_max.as_millis().min(i64::MAX as u128) as i64;
    let doublings = attempts.clamp(1, 32) - 1;
    min.max(1)
        .saturating_mul(1i64 << doublings)
        .min(max.max(min))
}

/// The state a lock or transfer-out step is left in: confirmed, or tried again (a refusal
/// too: an operator may fix the key's permissions, and the step must not be given up).
pub fn key_step_state(o: &Outcome) -> StepState {
    match o {
        Outcome::Confirmed { .. } => StepState::Confirmed,
        _ => StepState::Retry,
    }
}

/// The state a sweep is left in by the answer to sending it: a refusal is final (nothing
/// moved; the next round sweeps what is left), an unknown answer is read back by its client id
/// before anything is sent again, a limit is sent again as it is.
pub fn sweep_state(o: &Outcome) -> StepState {
    match o {
        Outcome::Confirmed { .. } => StepState::Confirmed,
        Outcome::Pending { .. } => StepState::Pending,
        Outcome::Refused { .. } => StepState::Refused,
        Outcome::Limited { .. } | Outcome::Absent { .. } => StepState::Retry,
        Outcome::Unknown { .. } => StepState::Unknown,
    }
}

/// Whether a sweep in `state` must be read back by its client id before it may be sent: it
/// may have been carried out already.
pub fn must_read_back(state: StepState) -> bool {
    matches!(
        state,
        StepState::Sending | StepState::Unknown | StepState::Pending
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> Policy {
        Policy {
            lock: Some(Lock::IpRestrict {
                addresses: vec!["127.0.0.1".into()],
            }),
            stop_transfers: true,
            sweep: true,
            sweep_rounds: 2,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            every: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(15),
            pinned: vec![],
        }
    }

    fn freeze(id: i64, scope: Scope, set_at: Millis) -> Freeze {
        Freeze {
            id,
            scope,
            reason: "r".into(),
            set_by: "t".into(),
            set_at,
        }
    }

    fn step(seq: i64, action: &str, state: StepState, next_ms: Millis) -> StepRow {
        StepRow {
            containment_id: 1,
            seq,
            action: action.into(),
            params: serde_json::Value::Null,
            client_id: None,
            state,
            attempts: 0,
            last_error: None,
            venue_ref: None,
            next_ms,
            updated_ms: 0,
        }
    }

    fn containment(freeze_id: i64, started_ms: Millis) -> ContainmentRow {
        ContainmentRow {
            id: 1,
            venue: "bn".into(),
            freeze_id,
            started_ms,
            done_ms: Some(started_ms),
            steps: vec![],
        }
    }

    #[test]
    fn freezes_that_cover_the_venue_start_one_containment_per_frozen_spell() {
        let fs = vec![
            freeze(3, Scope::Client("mm".into()), 10),
            freeze(4, Scope::Credential("cr".into()), 20),
            freeze(5, Scope::All, 30),
        ];
        assert!(!covers(&fs[0], "bn", "cr"));
        assert!(covers(&fs[1], "bn", "cr") && !covers(&fs[1], "okx", "cr2"));
        assert!(covers(&freeze(9, Scope::Venue("bn".into()), 0), "bn", "x"));
        assert_eq!(due(&fs, &[], "bn", "cr"), Some(4));
        assert_eq!(due(&fs, &[], "okx", "cr2"), Some(5));
        assert_eq!(
            due(&fs[..1], &[], "bn", "cr"),
            None,
            "a client freeze contains nothing"
        );
        // Contained during this spell: nothing new, even for the later freeze.
        assert_eq!(due(&fs, &[containment(4, 21)], "bn", "cr"), None);
        // Freeze 4 lifted, 5 still holds, contained after 5 was set: nothing new.
        assert_eq!(due(&fs[2..], &[containment(4, 31)], "bn", "cr"), None);
        // A containment from an earlier spell does not count.
        assert_eq!(due(&fs[2..], &[containment(1, 5)], "bn", "cr"), Some(5));
    }

    #[test]
    fn steps_are_planned_as_the_policy_says_and_run_in_their_order() {
        let names = |s: Vec<NewStep>| s.into_iter().map(|s| s.action).collect::<Vec<_>>();
        assert_eq!(
            names(initial_steps(&policy(), true)),
            ["lock-key", "sweep-round", "stop-transfers"]
        );
        assert_eq!(
            names(initial_steps(&policy(), false)),
            ["lock-key", "sweep-round"]
        );
        let off = Policy {
            lock: None,
            sweep: false,
            ..policy()
        };
        assert_eq!(names(initial_steps(&off, true)), ["stop-transfers"]);
        let steps = vec![
            step(1, "lock-key", StepState::Retry, 50),
            step(2, "sweep-round", StepState::Confirmed, 0),
            step(3, "stop-transfers", StepState::Planned, 0),
            step(4, "sweep", StepState::Pending, 0),
            step(5, "sweep", StepState::Planned, 0),
            step(6, "sweep-round", StepState::Planned, 0),
        ];
        // The lock waits for its backoff; the switch and the next round for the sweeps.
        assert_eq!(runnable(&steps, 10), vec![4, 5]);
        assert_eq!(runnable(&steps, 50), vec![1, 4, 5]);
        let mut done = steps.clone();
        done[3].state = StepState::Confirmed;
        done[4].state = StepState::Refused;
        assert_eq!(runnable(&done, 10), vec![6]);
        done[5].state = StepState::Confirmed;
        assert_eq!(runnable(&done, 10), vec![3]);
    }

    #[test]
    fn sweeps_go_largest_usd_value_first_then_the_next_round() {
        let h = |asset: &str, amount: i64, wallet| Holding {
            asset: asset.into(),
            amount: Decimal::from(amount),
            wallet,
        };
        let prices: HashMap<String, Decimal> = [
            ("BTC".to_string(), Decimal::from(60_000)),
            ("USDT".to_string(), Decimal::ONE),
        ]
        .into_iter()
        .collect();
        let planned = sweeps(
            vec![
                h("USDT", 90_000, Wallet::Trading),
                h("XYZ", 5, Wallet::Trading),
                h("BTC", 1, Wallet::Funding),
                h("BTC", 2, Wallet::Trading),
            ],
            &prices,
            1,
            2,
        );
        let order: Vec<String> = planned
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.action,
                    s.params.get("asset").and_then(|a| a.as_str()).unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                "sweep BTC",
                "sweep USDT",
                "sweep BTC",
                "sweep XYZ",
                "sweep-round "
            ]
        );
        assert_eq!(planned[0].params["usd_cents"], 12_000_000);
        assert!(planned[0].client_id && !planned[4].client_id);
        assert!(
            sweeps(vec![], &prices, 1, 2).is_empty(),
            "nothing left: no next round"
        );
        assert_eq!(
            sweeps(vec![h("USDT", 1, Wallet::Spot)], &prices, 2, 2).len(),
            1,
            "the last round"
        );
    }

    #[test]
    fn actions_round_trip_through_their_stored_form() {
        let a = Action::Sweep {
            asset: "USDT".into(),
            amount: "1.5".parse().unwrap(),
            wallet: Wallet::Trading,
            usd_cents: Some(150),
        };
        let s = a.new_step();
        assert_eq!(s.action, "sweep");
        let mut row = step(1, "sweep", StepState::Planned, 0);
        row.params = s.params;
        assert_eq!(Action::of(&row).unwrap(), a);
        let l = Action::LockKey {
            lock: Lock::IpRestrict {
                addresses: vec!["127.0.0.1".into()],
            },
        };
        let mut row = step(1, "lock-key", StepState::Planned, 0);
        row.params = l.new_step().params;
        assert_eq!(Action::of(&row).unwrap(), l);
        row.action = "launch".into();
        assert!(Action::of(&row).is_err());
        assert_eq!(
            Action::of(&step(1, "stop-transfers", StepState::Planned, 0)).ok(),
            None,
            "params null"
        );
        let mut st = step(1, "stop-transfers", StepState::Planned, 0);
        st.params = Action::StopTransfers {}.new_step().params;
        assert_eq!(Action::of(&st).unwrap(), Action::StopTransfers {});
    }

    #[test]
    fn outcomes_leave_steps_in_the_right_state_and_backoff_doubles_to_its_cap() {
        let r = |s: &str| Outcome::Refused { reason: s.into() };
        assert_eq!(key_step_state(&r("no")), StepState::Retry);
        assert_eq!(
            key_step_state(&Outcome::Confirmed { venue_ref: None }),
            StepState::Confirmed
        );
        assert_eq!(sweep_state(&r("poor")), StepState::Refused);
        assert_eq!(
            sweep_state(&Outcome::Unknown { reason: "?".into() }),
            StepState::Unknown
        );
        assert_eq!(
            sweep_state(&Outcome::Pending { venue_ref: None }),
            StepState::Pending
        );
        assert_eq!(
            sweep_state(&Outcome::Limited {
                retry_after_ms: None,
                reason: "".into()
            }),
            StepState::Retry
        );
        assert!(must_read_back(StepState::Sending) && !must_read_back(StepState::Retry));
        let p = policy();
        assert_eq!(
            (1..=8).map(|a| backoff(&p, a)).collect::<Vec<_>>(),
            [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        assert_eq!(backoff(&p, 0), 1000);
        assert_eq!(backoff(&p, i64::MAX), 60000);
    }
}
