//! The `[detectors]` section: each detector's rule and thresholds, as written. Plain data; the
//! checked detector settings are built in `engine`.

use serde::Deserialize;

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
}
