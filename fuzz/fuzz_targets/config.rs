//! The config loader and the limit loader: keygate.toml text parsed (no environment override),
//! then everything the engine reads from it without a file (limits, pinned prices, trading,
//! detectors, approvals, containment), each refused with an error or accepted, never a panic.
#![no_main]

use keygate_config::Config;
use keygate_config::engine;
use keygate_core::policy::Policies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, |_| None) else {
        return;
    };
    if let Ok(limits) = engine::limits(&config) {
        for l in &limits {
            assert!(l.validate().is_ok(), "an accepted limit that is not valid: {l:?}");
        }
    }
    if let Ok(policies) = Policies::load(&[]) {
        let _ = engine::with_policies(&config, policies);
    }
    let _ = engine::approval_policy(&config);
    let _ = engine::contain(&config);
    let _ = keygate_config::containment::venues(&config);
});
