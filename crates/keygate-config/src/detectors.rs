//! The `[detectors]` section: each detector's rule and thresholds, as written. Plain data; the
//! checked outflow detector settings are built in `engine`, the trade detectors' here
//! ([`trade_detectors`]).

use keygate_core::detect::Rule;
use keygate_core::detect::trade::TradeDetectorConfig;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::{Result, bail, invalid};

/// The anomaly detectors; every field left out keeps its default (docs/detection.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    pub window: Option<String>,
    pub min_samples: Option<usize>,
    /// A request whose signals' scores add up to at least this is held, denied, or frozen
    /// (its client), whatever each signal asks for.
    pub score_hold: Option<i64>,
    pub score_deny: Option<i64>,
    pub score_freeze: Option<i64>,
    pub new_destination: Option<RuleConfig>,
    pub size_jump: Option<SizeJumpConfig>,
    pub velocity: Option<VelocityConfig>,
    pub test_then_drain: Option<DrainConfig>,
    pub off_hours: Option<RuleConfig>,
    /// The trade detectors' history window and baseline (docs/detection.md#trade-detectors).
    pub trade_window: Option<String>,
    pub trade_min_samples: Option<usize>,
    pub new_instrument: Option<RuleConfig>,
    pub trade_size_jump: Option<SizeJumpConfig>,
    pub trade_velocity: Option<VelocityConfig>,
    pub off_market: Option<OffMarketConfig>,
    pub dormant_wake: Option<DormantConfig>,
}

/// A detector's switch, score and response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub enabled: Option<bool>,
    pub score: Option<i64>,
    pub response: Option<keygate_core::detect::Response>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeJumpConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub factor: Option<String>,
    pub mads: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub window: Option<String>,
    pub factor: Option<i64>,
    pub min_count: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub within: Option<String>,
    pub test_max_usd: Option<String>,
    pub ratio: Option<i64>,
    pub drain_min_usd: Option<String>,
}

/// `[detectors.off_market]`: how far from the reference price an order may be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffMarketConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    /// More than this many basis points against the client raises the signal.
    pub bps: Option<i64>,
    /// At this many or more, the signal asks for `far_response` (when stronger).
    pub far_bps: Option<i64>,
    pub far_response: Option<keygate_core::detect::Response>,
}

/// `[detectors.dormant_wake]`: how large an order wakes a dormant client.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DormantConfig {
    #[serde(flatten)]
    pub rule: RuleConfig,
    pub min_usd: Option<String>,
}

/// Applies a detector's switch, score and response as written over its defaults.
pub(crate) fn apply_rule(r: &mut Rule, cfg: Option<&RuleConfig>, name: &str) -> Result<()> {
    let Some(cfg) = cfg else {
        return Ok(());
    };
    if let Some(e) = cfg.enabled {
        r.enabled = e;
    }
    if let Some(s) = cfg.score {
        if !(0..=1000).contains(&s) {
            bail!("detectors.{name}.score must be between 0 and 1000");
        }
        r.score = s;
    }
    if let Some(resp) = cfg.response {
        r.response = resp;
    }
    Ok(())
}

/// A positive decimal field (`detectors.FIELD`).
pub(crate) fn positive_decimal(field: &str, v: &str) -> Result<Decimal> {
    let d: Decimal = v
        .parse()
        .map_err(|_| invalid!("detectors.{field} {v:?} is not a decimal"))?;
    if d <= Decimal::ZERO {
        bail!("detectors.{field} must be positive");
    }
    Ok(d)
}

/// The trade detectors' settings: the defaults, with what `[detectors]` sets.
pub fn trade_detectors(c: &DetectorsConfig) -> Result<TradeDetectorConfig> {
    let mut d = TradeDetectorConfig::default();
    if let Some(w) = &c.trade_window {
        d.window = crate::engine::duration("detectors.trade_window", w)?;
    }
    if let Some(n) = c.trade_min_samples {
        d.min_samples = n.max(1);
    }
    apply_rule(
        &mut d.new_instrument,
        c.new_instrument.as_ref(),
        "new_instrument",
    )?;
    if let Some(s) = &c.trade_size_jump {
        apply_rule(&mut d.trade_size_jump, Some(&s.rule), "trade_size_jump")?;
        if let Some(f) = &s.factor {
            d.size_factor = positive_decimal("trade_size_jump.factor", f)?;
        }
        if let Some(m) = &s.mads {
            d.size_mads = positive_decimal("trade_size_jump.mads", m)?;
        }
    }
    if let Some(v) = &c.trade_velocity {
        apply_rule(&mut d.trade_velocity, Some(&v.rule), "trade_velocity")?;
        if let Some(w) = &v.window {
            d.velocity_window = crate::engine::duration("detectors.trade_velocity.window", w)?;
        }
        if let Some(f) = v.factor {
            d.velocity_factor = f.max(1);
        }
        if let Some(n) = v.min_count {
            d.velocity_min_count = n.max(1);
        }
    }
    if let Some(o) = &c.off_market {
        off_market(o, &mut d)?;
    }
    if let Some(w) = &c.dormant_wake {
        apply_rule(&mut d.dormant_wake, Some(&w.rule), "dormant_wake")?;
        if let Some(u) = &w.min_usd {
            d.dormant_min_usd_cents = keygate_core::price::parse_usd_cents(u)
                .map_err(|e| invalid!("detectors.dormant_wake.min_usd: {e}"))?;
        }
    }
    if d.velocity_window >= d.window {
        bail!("detectors.trade_velocity.window must be shorter than detectors.trade_window");
    }
    Ok(d)
}

fn off_market(o: &OffMarketConfig, d: &mut TradeDetectorConfig) -> Result<()> {
    apply_rule(&mut d.off_market, Some(&o.rule), "off_market")?;
    if let Some(b) = o.bps {
        if !(1..=1_000_000).contains(&b) {
            bail!(
                "detectors.off_market.bps must be between 1 and 1000000 (basis points: 500 is 5%)"
            );
        }
        d.off_market_bps = b;
    }
    if let Some(b) = o.far_bps {
        if !(1..=1_000_000_000).contains(&b) {
            bail!(
                "detectors.off_market.far_bps must be between 1 and 1000000000 (basis points: 2000 is 20%)"
            );
        }
        d.off_market_far_bps = b;
    }
    if let Some(r) = o.far_response {
        d.off_market_far_response = r;
    }
    if d.off_market_far_bps <= d.off_market_bps {
        bail!(
            "detectors.off_market.far_bps ({}) must be more than detectors.off_market.bps ({}); to never escalate, set far_response to the rule's response",
            d.off_market_far_bps,
            d.off_market_bps
        );
    }
    Ok(())
}

#[cfg(test)]
mod detector_config_tests {
    use crate::Config;

    #[test]
    fn detector_sections_parse_and_typos_are_errors() {
        let c = Config::parse(
            "[detectors.size_jump]\nresponse = \"deny\"\nfactor = \"20\"\n[detectors.test_then_drain]\nwithin = \"30m\"\nscore = 80\n",
            |_| None,
        )
        .unwrap();
        let s = c.detectors.size_jump.unwrap();
        assert_eq!(s.rule.response, Some(keygate_core::detect::Response::Deny));
        assert_eq!(s.factor.as_deref(), Some("20"));
        assert_eq!(c.detectors.test_then_drain.unwrap().rule.score, Some(80));
        for bad in [
            "[detectors.size_jump]\nfactr = \"20\"\n",
            "[detectors.size_jump]\nresponse = \"panic\"\n",
            "[detectors]\nwindw = \"1d\"\n",
        ] {
            assert!(Config::parse(bad, |_| None).is_err(), "{bad}");
        }
    }

    fn trade(text: &str) -> crate::Result<keygate_core::detect::trade::TradeDetectorConfig> {
        super::trade_detectors(&Config::parse(text, |_| None)?.detectors)
    }

    #[test]
    fn trade_detectors_default_to_the_documented_settings() {
        use keygate_core::detect::Response;
        let d = trade("").unwrap();
        assert_eq!(
            d,
            keygate_core::detect::trade::TradeDetectorConfig::default()
        );
        assert_eq!(d.window, 14 * keygate_core::time::DAY);
        assert_eq!(d.off_market.response, Response::Deny);
        assert_eq!(d.off_market_bps, 500);
        assert_eq!(d.off_market_far_response, Response::FreezeClient);
        assert!(d.any_enabled());
        // What `keygate init` writes says the same.
        let text = crate::default_config_text("sqlite://keygate.db", crate::MasterKeySource::File);
        assert_eq!(trade(&text).unwrap(), d);
    }

    #[test]
    fn trade_detector_sections_parse() {
        use keygate_core::detect::Response;
        let d = trade(
            "[detectors]\ntrade_window = \"7d\"\ntrade_min_samples = 50\n\
             [detectors.new_instrument]\nresponse = \"hold\"\n\
             [detectors.trade_size_jump]\nfactor = \"20\"\nmads = \"5\"\nscore = 70\n\
             [detectors.trade_velocity]\nwindow = \"5m\"\nfactor = 4\nmin_count = 100\n\
             [detectors.off_market]\nbps = 300\nfar_bps = 1000\nfar_response = \"freeze-credential\"\n\
             [detectors.dormant_wake]\nmin_usd = \"25000\"\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(d.window, 7 * keygate_core::time::DAY);
        assert_eq!(d.min_samples, 50);
        assert_eq!(d.new_instrument.response, Response::Hold);
        assert_eq!(d.size_factor, rust_decimal::Decimal::from(20));
        assert_eq!(d.size_mads, rust_decimal::Decimal::from(5));
        assert_eq!(d.trade_size_jump.score, 70);
        assert_eq!(d.velocity_window, 5 * keygate_core::time::MINUTE);
        assert_eq!((d.velocity_factor, d.velocity_min_count), (4, 100));
        assert_eq!((d.off_market_bps, d.off_market_far_bps), (300, 1000));
        assert_eq!(d.off_market_far_response, Response::FreezeCredential);
        assert_eq!(d.dormant_min_usd_cents, 2_500_000);
        assert!(!d.dormant_wake.enabled);
    }

    #[test]
    fn bad_trade_detector_settings_are_refused_and_say_what_to_fix() {
        // Typos and unknown keys: refused by the parser.
        for bad in [
            "[detectors.off_market]\nbsp = 500\n",
            "[detectors.dormant_wake]\nmin_usd_cents = 5\n",
            "[detectors.trade_velocity]\nresponse = \"panic\"\n",
            "[detectors]\ntrade_windw = \"1d\"\n",
            "[detectors.trade]\nwindow = \"1d\"\n",
        ] {
            assert!(Config::parse(bad, |_| None).is_err(), "{bad}");
        }
        // Values out of range: refused when the settings are built, naming the field.
        for (bad, says) in [
            (
                "[detectors.off_market]\nbps = 0\n",
                "detectors.off_market.bps",
            ),
            (
                "[detectors.off_market]\nbps = 3000\n",
                "far_bps (2000) must be more",
            ),
            (
                "[detectors.off_market]\nfar_bps = -1\n",
                "detectors.off_market.far_bps",
            ),
            (
                "[detectors.new_instrument]\nscore = 5000\n",
                "new_instrument.score",
            ),
            (
                "[detectors.trade_size_jump]\nfactor = \"-1\"\n",
                "trade_size_jump.factor",
            ),
            (
                "[detectors.dormant_wake]\nmin_usd = \"ten\"\n",
                "dormant_wake.min_usd",
            ),
            (
                "[detectors]\ntrade_window = \"forever\"\n",
                "detectors.trade_window",
            ),
            (
                "[detectors]\ntrade_window = \"5m\"\n",
                "trade_velocity.window must be shorter",
            ),
        ] {
            let e = trade(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
