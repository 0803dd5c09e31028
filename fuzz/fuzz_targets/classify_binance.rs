//! Binance's request classification (method, path, query, form and JSON bodies): see
//! keygate_fuzz::classify for what is asserted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_fuzz::classify(keygate_venues::VenueKind::Binance, data);
});
