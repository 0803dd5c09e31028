//! Every parser of outside input takes arbitrary input without panicking, and what it accepts
//! round-trips. (Fuzzing stands in for cargo-fuzz, which needs a nightly toolchain.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::auth::{new_token, parse_token};
use keygate_core::intent::normalize_address;
use keygate_core::price::{format_usd, parse_usd_cents};
use keygate_core::time::{format_duration, parse_duration};
use keygate_core::{Action, Intent};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tokens(text in ".{0,120}", id in any::<[u8; 8]>(), secret in any::<[u8; 32]>()) {
        let _ = parse_token(&text);
        let t = new_token(id, secret);
        let p = parse_token(&t.text).unwrap();
        prop_assert_eq!(p.id, t.id);
        // One character changed anywhere: malformed or a different secret, never a panic.
        for i in 0..t.text.len() {
            let mut s = t.text.as_bytes().to_vec();
            s[i] = if s[i] == b'a' { b'b' } else { b'a' };
            let _ = parse_token(&String::from_utf8_lossy(&s));
        }
    }

    #[test]
    fn durations(text in "[0-9a-z ]{0,24}", ms in 1i64..10_000_000_000_000) {
        if let Ok(v) = parse_duration(&text) {
            prop_assert!(v > 0);
        }
        prop_assert_eq!(parse_duration(&format_duration(ms)), Ok(ms));
    }

    #[test]
    fn usd_amounts(text in "[-0-9.e]{0,30}", cents in 0i64..i64::MAX) {
        if let Ok(c) = parse_usd_cents(&text) {
            prop_assert!(c >= 0);
        }
        prop_assert_eq!(parse_usd_cents(&format_usd(cents)), Ok(cents));
    }

    #[test]
    fn intents(json in "\\{.{0,200}\\}", amount in "[0-9]{1,30}(\\.[0-9]{1,30})?", action in 0usize..5) {
        if let Ok(i) = serde_json::from_str::<Intent>(&json) {
            let _ = i.validate();
        }
        let text = format!(
            r#"{{"client":"c","venue":"v","action":"{}","asset":"USDT","amount":"{amount}","destination":"d"}}"#,
            Action::ALL[action]
        );
        if let Ok(i) = serde_json::from_str::<Intent>(&text) {
            let _ = i.validate();
        }
    }

    #[test]
    fn addresses(text in ".{0,64}") {
        let n = normalize_address(&text);
        prop_assert_eq!(normalize_address(&n), n.clone());
    }
}
