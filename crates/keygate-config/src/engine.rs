//! Building the decision engine from the config: policy files, limits and prices.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail, invalid, msg};
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicySource};
use keygate_core::price::parse_usd_cents;
use keygate_core::time::parse_duration;
use keygate_core::{Action, Engine, Millis};
use rust_decimal::Decimal;

use crate::{Config, LimitConfig, resolve_path};

/// A duration field of the config, with the field named in the error.
pub fn duration(field: &str, text: &str) -> Result<Millis> {
    parse_duration(text).map_err(|e| invalid!("{field}: {e}"))
}

/// The policy files a list of paths names: files as given, directories as their `*.cedar` files
/// sorted by name. A path that does not exist is an error: policies never silently vanish.
pub fn policy_files(paths: &[PathBuf], base: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for p in paths {
        let p = resolve_path(p, base);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("cannot read policy directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "cedar"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p);
        } else {
            bail!(
                "policy path {} does not exist; create it or fix [policy] files in the config",
                p.display()
            );
        }
    }
    Ok(out)
}

/// Reads policy files into sources named by their file names.
pub fn read_policies(files: &[PathBuf]) -> Result<Vec<PolicySource>> {
    files
        .iter()
        .map(|f| {
            Ok(PolicySource {
                name: f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.display().to_string()),
                text: std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read policy file {}", f.display()))?,
            })
        })
        .collect()
}

fn limit(l: &LimitConfig) -> Result<LimitSpec> {
    let ctx = || format!("limit {}", l.name);
    let spec = LimitSpec {
        name: l.name.clone(),
        client: Selector::parse(l.client.as_deref()),
        venue: Selector::parse(l.venue.as_deref()),
        asset: Selector::parse(l.asset.as_deref()),
        actions: l
            .actions
            .clone()
            .unwrap_or_else(|| vec![Action::Withdraw, Action::Transfer]),
        window: duration(&format!("limit {} window", l.name), &l.window)?,
        max_usd_cents: l
            .max_usd
            .as_deref()
            .map(parse_usd_cents)
            .transpose()
            .map_err(msg)
            .with_context(ctx)?,
        max_amount: l
            .max_amount
            .as_deref()
            .map(|a| {
                a.parse::<Decimal>()
                    .map_err(|_| invalid!("max_amount {a:?} is not a decimal"))
            })
            .transpose()
            .with_context(ctx)?,
        max_count: l.max_count,
    };
    spec.validate().map_err(msg)?;
    Ok(spec)
}

/// The engine the config describes, with policies loaded and validated.
pub fn build(config: &Config, base: &Path) -> Result<Engine> {
    let files = policy_files(&config.policy.files, base)?;
    let policies = Policies::load(&read_policies(&files)?)?;
    with_policies(config, policies)
}

/// The limits the config declares (`[[limits]]`), each checked.
pub fn limits(config: &Config) -> Result<Vec<LimitSpec>> {
    config.limits.iter().map(limit).collect()
}

/// The engine the config describes, with `policies` (read no file): limits, pinned prices,
/// trading settings and detectors, each checked as [`build`] checks them.
pub fn with_policies(config: &Config, policies: Policies) -> Result<Engine> {
    let limits = limits(config)?;
    let pinned = config
        .prices
        .pinned
        .iter()
        .map(|(asset, usd)| {
            let d: Decimal = usd
                .parse()
                .map_err(|_| invalid!("[prices.pinned] {asset} = {usd:?} is not a decimal"))?;
            if d <= Decimal::ZERO {
                bail!("[prices.pinned] {asset} must be positive");
            }
            Ok((asset.clone(), d))
        })
        .collect::<Result<Vec<_>>>()?;
    let engine = Engine {
        trading: trading(config)?,
        policies,
        limits,
        pinned,
        price_max_age: duration("prices.max_age", &config.prices.max_age)?,
        max_clock_skew: duration("decide.max_clock_skew", &config.decide.max_clock_skew)?,
        assets: vec![],
        venue_credentials: config
            .venues
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    v.credential.clone().unwrap_or_else(|| name.clone()),
                )
            })
            .collect(),
        detectors: detectors(config)?,
    };
    engine.validate()?;
    Ok(engine)
}

/// The policy the config written by `init` points at: nothing but reads, trades and cancels,
/// and only within each client's scope (which the engine checks before any policy).
pub const DEFAULT_POLICY: &str = r#"// keygate policies, in Cedar (https://docs.cedarpolicy.com). See docs/policy.md.
// Nothing is allowed unless a policy permits it; a forbid always wins; a forbid marked @hold
// turns an allow into a hold for approval. Check every change before it goes live:
//   keygate policy validate            (against keygate's schema)
//   keygate policy test FILE CASES.jsonl

@id("read-trade-cancel")
@reason("bots may read, trade and cancel within their scope")
permit (
  principal,
  action in [Keygate::Action::"read", Keygate::Action::"trade", Keygate::Action::"cancel"],
  resource
);

@id("trades-near-the-market")
@reason("an order priced more than 5% from the market against the client (a buy above it, a sell below it) is how a leaked key empties an account into a thief's own book (3Commas, 2022)")
forbid (principal, action == Keygate::Action::"trade", resource)
when { context.price_deviation_bps > 500 };

// A client trades only the instruments its scope names (`keygate client add … --instrument
// BTC/USDT`, or `keygate client instruments`). To narrow a bot further, or cap each order:
//
// @id("mm-bot-majors")
// @reason("mm-bot trades BTC/USDT and ETH/USDT, up to $50,000 an order")
// forbid (principal == Keygate::Client::"mm-bot", action == Keygate::Action::"trade", resource)
// unless { ["BTC/USDT", "ETH/USDT"].contains(context.instrument) &&
//          context.notional_usd_cents <= 5000000 };

// Withdrawals and transfers are not permitted until you write a policy for them, for example:
//
// @id("mm-rebalance")
// @reason("the market maker rebalances to its own cold wallet, in office hours")
// permit (principal == Keygate::Client::"mm-bot", action == Keygate::Action::"withdraw", resource)
// when { context has destination && context.destination.label == "cold" &&
//        context.hour_utc >= 6 && context.hour_utc < 20 };
//
// @id("big-withdrawals-need-approval")
// @hold
// @reason("withdrawals over $100,000 need approval")
// forbid (principal, action in [Keygate::Action::"withdraw", Keygate::Action::"transfer"], resource)
// when { context.usd_value_cents > 10000000 } unless { context.approvals >= 2 };
"#;

/// How orders are valued: `[trading]`.
fn trading(config: &Config) -> Result<keygate_core::order::TradeSettings> {
    let t = &config.trading;
    if !(0..=5_000).contains(&t.slippage_bps) {
        bail!(
            "trading.slippage_bps = {} must be between 0 and 5000 (50%)",
            t.slippage_bps
        );
    }
    let reference_max_age = duration("trading.reference_max_age", &t.reference_max_age)?;
    let poll = duration("trading.reference_poll", &t.reference_poll)?;
    if poll >= reference_max_age {
        bail!(
            "trading.reference_poll ({}) must be shorter than trading.reference_max_age ({}), or every reference price is stale before the next reading",
            t.reference_poll,
            t.reference_max_age
        );
    }
    Ok(keygate_core::order::TradeSettings {
        slippage_bps: t.slippage_bps,
        reference_max_age,
    })
}

/// The detectors' settings: the defaults, with what the config sets.
fn detectors(config: &Config) -> Result<keygate_core::detect::DetectorConfig> {
    use crate::detectors::{apply_rule as rule, positive_decimal as positive};
    let c = &config.detectors;
    let mut d = keygate_core::detect::DetectorConfig::default();
    if let Some(w) = &c.window {
        d.window = duration("detectors.window", w)?;
    }
    if let Some(n) = c.min_samples {
        d.min_samples = n.max(1);
    }
    rule(
        &mut d.new_destination,
        c.new_destination.as_ref(),
        "new_destination",
    )?;
    rule(&mut d.off_hours, c.off_hours.as_ref(), "off_hours")?;
    if let Some(s) = &c.size_jump {
        rule(&mut d.size_jump, Some(&s.rule), "size_jump")?;
        if let Some(f) = &s.factor {
            d.size_factor = positive("size_jump.factor", f)?;
        }
        if let Some(m) = &s.mads {
            d.size_mads = positive("size_jump.mads", m)?;
        }
    }
    if let Some(v) = &c.velocity {
        rule(&mut d.velocity, Some(&v.rule), "velocity")?;
        if let Some(w) = &v.window {
            d.velocity_window = duration("detectors.velocity.window", w)?;
        }
        if let Some(f) = v.factor {
            d.velocity_factor = f.max(1);
        }
        if let Some(n) = v.min_count {
            d.velocity_min_count = n.max(1);
        }
    }
    if let Some(t) = &c.test_then_drain {
        rule(&mut d.test_then_drain, Some(&t.rule), "test_then_drain")?;
        if let Some(w) = &t.within {
            d.drain_within = duration("detectors.test_then_drain.within", w)?;
        }
        if let Some(u) = &t.test_max_usd {
            d.test_max_usd_cents = keygate_core::price::parse_usd_cents(u).map_err(msg)?;
        }
        if let Some(r) = t.ratio {
            d.drain_ratio = r.max(1);
        }
        if let Some(u) = &t.drain_min_usd {
            d.drain_min_usd_cents = keygate_core::price::parse_usd_cents(u).map_err(msg)?;
        }
    }
    use keygate_core::detect::Response;
    for (field, at, r) in [
        ("score_hold", c.score_hold, Response::Hold),
        ("score_deny", c.score_deny, Response::Deny),
        ("score_freeze", c.score_freeze, Response::FreezeClient),
    ] {
        if let Some(at) = at {
            if at <= 0 {
                bail!("detectors.{field} must be positive");
            }
            d.score_responses.push((at, r));
        }
    }
    if d.velocity_window >= d.window {
        bail!("detectors.velocity.window must be shorter than detectors.window");
    }
    d.trade = crate::detectors::trade_detectors(c)?;
    Ok(d)
}

/// The approval policy the config describes, checked.
pub fn approval_policy(config: &Config) -> Result<keygate_core::freeze::ApprovalPolicy> {
    let policy = keygate_core::freeze::ApprovalPolicy {
        approvers: config
            .approvals
            .approvers
            .iter()
            .map(|k| k.trim().to_ascii_lowercase())
            .collect(),
        quorum: config.approvals.quorum,
        max_validity: duration("approvals.max_validity", &config.approvals.max_validity)?,
    };
    for k in &policy.approvers {
        if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "approvals.approvers: {k:?} is not an Ed25519 public key (64 hex digits); `keygate approver keygen` prints one"
            );
        }
    }
    policy.validate().map_err(msg)?;
    Ok(policy)
}

/// What an unapproved outflow freezes, as `[containment] unapproved_outflow` says.
pub fn contain(config: &Config) -> Result<keygate_core::replay::Contain> {
    use keygate_core::replay::Contain;
    Ok(match config.containment.unapproved_outflow.as_str() {
        "all" => Contain::All,
        "venue" => Contain::Venue,
        "credential" => Contain::Credential,
        "none" => Contain::Nothing,
        other => bail!(
            "containment.unapproved_outflow {other:?} is not one of all, venue, credential, none"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_and_policy_build_an_engine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/default.cedar"), DEFAULT_POLICY).unwrap();
        let text = crate::default_config_text("sqlite://keygate.db", crate::MasterKeySource::File);
        let config = Config::parse(&text, |_| None).unwrap();
        let e = build(&config, dir.path()).unwrap();
        assert_eq!(e.policies.len(), 2);
        assert_eq!(e.limits.len(), 3);
        assert_eq!(e.limits[1].client, Selector::Each);
        // The trade limit counts trades only, per client, by notional.
        assert_eq!(e.limits[2].actions, vec![keygate_core::Action::Trade]);
        assert_eq!(e.limits[2].client, Selector::Each);
        assert_eq!(e.limits[2].max_usd_cents, Some(50_000_000));
        assert_eq!(e.price_max_age, 5 * 60_000);
        assert_eq!(e.trading.slippage_bps, 100);
        assert_eq!(e.trading.reference_max_age, 30_000);
    }

    #[test]
    fn trading_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/default.cedar"), DEFAULT_POLICY).unwrap();
        for (text, want) in [
            ("[trading]\nslippage_bps = -1", "between 0 and 5000"),
            (
                "[trading]\nreference_poll = \"1m\"\nreference_max_age = \"30s\"",
                "must be shorter",
            ),
            (
                "[trading]\nreference_max_age = \"soon\"",
                "reference_max_age",
            ),
        ] {
            let config = Config::parse(text, |_| None).unwrap();
            let e = build(&config, dir.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn the_limit_loader_reads_limits_without_any_file() {
        let text = "[[limits]]\nname = \"a\"\nwindow = \"1h\"\nmax_usd = \"100\"\n";
        let config = Config::parse(text, |_| None).unwrap();
        let read = limits(&config).unwrap();
        assert_eq!((read.len(), read[0].max_usd_cents), (1, Some(10_000)));
        let policies = Policies::load(&[]).unwrap();
        assert_eq!(with_policies(&config, policies).unwrap().limits.len(), 1);
        let bad = Config::parse(&text.replace("1h", "soon"), |_| None).unwrap();
        assert!(limits(&bad).is_err());
    }

    #[test]
    fn bad_limits_and_missing_policies_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse("", |_| None).unwrap();
        let e = build(&config, dir.path()).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let bad = Config::parse(
            "[[limits]]\nname = \"x\"\nwindow = \"1h\"\nmax_usd = \"1.001\"\n",
            |_| None,
        )
        .unwrap();
        let e = format!("{:#}", build(&bad, dir.path()).unwrap_err());
        assert!(e.contains("limit x") && e.contains("two decimal"), "{e}");
        let bad = Config::parse("[[limits]]\nname = \"x\"\nwindow = \"1h\"\n", |_| None).unwrap();
        let e = format!("{:#}", build(&bad, dir.path()).unwrap_err());
        assert!(e.contains("at least one"), "{e}");
    }
}
