//! The scenario reader (keygate-harness replay files): the header line, then each event line
//! read against it.
#![no_main]

use keygate_core::replay::{parse_event, parse_header};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(first) = lines.next() else { return };
    let Ok(header) = parse_header(first) else {
        return;
    };
    for (i, line) in lines.enumerate().take(64) {
        let _ = parse_event(&header, line, i + 2);
    }
});
