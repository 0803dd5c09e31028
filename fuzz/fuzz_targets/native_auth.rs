//! Native-key authentication: the venue's key, signature, timestamp and passphrase headers and
//! parameters, read (`claim`), checked (`verify`) and decoded (`presented_mac`), for each venue.
//! A request the fuzzer did not sign with the fixed secret must never verify.
#![no_main]

use keygate_venues::VenueKind;
use keygate_venues::native::{claim, presented_mac, verify};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(c) = keygate_fuzz::cut(data) else {
        return;
    };
    let req = c.request();
    let header = |name: &str| c.headers.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    for kind in [VenueKind::Binance, VenueKind::Okx] {
        let _ = claim(kind, &req, &header);
        let _ = presented_mac(kind, &req, &header);
        let _ = verify(
            kind,
            &req,
            &header,
            &keygate_fuzz::keys(),
            keygate_fuzz::NOW,
        );
    }
});
