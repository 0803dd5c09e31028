//! Every Cedar block in docs/policy.md validates against keygate's schema, as the page says.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failed unwrap is a failed test

use keygate_core::policy::{Policies, PolicySource};

#[test]
fn every_policy_in_the_docs_validates() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
            .unwrap();
    let mut blocks = 0;
    for (i, block) in text.split("```cedar\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap();
        // Each block on its own: ids may repeat between blocks.
        Policies::load(&[PolicySource {
            name: format!("docs/policy.md block {}", i + 1),
            text: body.to_string(),
        }])
        .unwrap_or_else(|e| panic!("docs/policy.md cedar block {}: {e}\n{body}", i + 1));
        blocks += 1;
    }
    assert!(blocks >= 5, "only {blocks} cedar blocks found");
}
