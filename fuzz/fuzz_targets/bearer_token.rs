//! Bearer tokens (`kgt_<id>_<secret>`): parsed, and a parsed token's id is 16 lower-case hex.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = keygate_core::auth::parse_token(text) {
        let id = &p.id;
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "a token parsed with the id {id:?}"
        );
    }
});
