//! The containment and sub-account answers not in venue_answers: a key's lock (IP restriction or
//! deletion), the OKX transfer-out switch, and a containment key's permissions. Byte 0 picks the
//! venue and the parser, byte 1 the HTTP status; the rest is the body. Whatever the body, an
//! answer is judged (never a panic), and only a 2xx answer can confirm a step.
#![no_main]

use keygate_venues::containment::{Lock, Needs, Outcome, Target};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(keygate_fuzz::Answer {
        kind: _,
        adapter: a,
        pick,
        status,
        body,
    }) = keygate_fuzz::answer(data, &[200, 201, 400, 401, 403, 404, 429, 500])
    else {
        return;
    };
    let t = Target {
        sub_account: "desk-7",
        api_key: "leakedkey",
    };
    let judged = match (pick >> 1) % 4 {
        0 => Some(a.parse_lock(
            &t,
            &Lock::IpRestrict {
                addresses: vec!["192.0.2.1".into()],
            },
            status,
            body,
        )),
        1 => Some(a.parse_lock(&t, &Lock::Delete, status, body)),
        2 => Some(a.parse_stop_transfers(&t, status, body)),
        _ => {
            let needs = Needs {
                lock: pick & 0x10 != 0,
                stop_transfers: pick & 0x20 != 0,
                sweep: pick & 0x40 != 0,
            };
            let _ = a.parse_containment_permissions(&needs, body);
            None
        }
    };
    if let Some(Outcome::Confirmed { .. }) = judged {
        assert!(
            (200..300).contains(&status),
            "HTTP {status} confirmed a containment step"
        );
    }
});
