//! The policy loader: Cedar text parsed and validated against keygate's schema.
#![no_main]

use keygate_core::policy::{Policies, PolicySource};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Policies::load(&[PolicySource {
        name: "fuzz.cedar".into(),
        text: text.into(),
    }]);
});
