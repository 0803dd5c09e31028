//! Shared by the fuzz targets: how one fuzz input is cut into the parts of a request (method,
//! path, query, body, headers), and the checks each target makes on what the parsers return.
//! Every target must not panic, hang or allocate without bound on any input.

use keygate_venues::{Adapter, AdapterOptions, Keys, Request, VenueKind};

/// The methods a fuzz input's first byte chooses from.
const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "PUT"];

/// A request cut from fuzz bytes: byte 0 picks the method, then path, query and body are
/// separated by `\n` (the body is the rest, any bytes). The seeds (corpus/) are written so.
pub struct Cut<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    /// Lines after the body's first `\n\n`, as `name: value` headers (native_auth only).
    pub headers: Vec<(String, &'a str)>,
}

pub fn cut(data: &[u8]) -> Option<Cut<'_>> {
    let (&m, rest) = data.split_first()?;
    let method = METHODS[usize::from(m) % METHODS.len()];
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let path = std::str::from_utf8(parts.next()?).ok()?;
    let query = std::str::from_utf8(parts.next().unwrap_or_default()).ok()?;
    let tail = parts.next().unwrap_or_default();
    let (body, head) = match tail.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&tail[..i], &tail[i + 2..]),
        None => (tail, &b""[..]),
    };
    let headers = std::str::from_utf8(head)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    Some(Cut {
        method,
        path,
        query,
        body,
        headers,
    })
}

impl Cut<'_> {
    pub fn request(&self) -> Request<'_> {
        Request {
            method: self.method,
            path: self.path,
            query: self.query,
            body: self.body,
        }
    }
}

/// A fixed time for signing and time windows (2023-11-14).
pub const NOW: i64 = 1_700_000_000_000;

pub fn keys() -> Keys<'static> {
    Keys {
        api_key: "fuzz-key",
        secret: "fuzz-secret",
        passphrase: Some("fuzz-pass"),
    }
}

/// Classifies `data` at venue `kind`, and checks what an accepted request promises: a
/// withdrawal names a positive amount of an asset and a destination; what is forwarded can be
/// re-encoded and signed; classifying is deterministic.
pub fn classify(kind: VenueKind, data: &[u8]) {
    let Some(c) = cut(data) else { return };
    let adapter = Adapter::new(kind, AdapterOptions::default());
    let req = c.request();
    let Ok(classified) = adapter.classify(&req) else {
        return;
    };
    if classified.action == keygate_core::Action::Withdraw {
        assert!(classified.asset.is_some(), "a withdrawal without an asset");
        assert!(
            classified
                .amount
                .is_some_and(|a| a > rust_decimal::Decimal::ZERO),
            "a withdrawal without a positive amount"
        );
        assert!(
            classified.destination.is_some(),
            "a withdrawal without a destination"
        );
    }
    let again = adapter.classify(&req).ok();
    assert_eq!(
        again.map(|a| a.canonical()),
        Some(classified.canonical()),
        "classifying the same request twice gave two answers"
    );
    let _ = adapter.sign(&classified, &keys(), NOW);
}

/// A venue's answer cut from fuzz bytes: byte 0 picks the venue (bit 0) and, in its other bits,
/// what the target parses; byte 1 picks the HTTP status from `statuses`; the rest is the body.
pub struct Answer<'a> {
    pub kind: VenueKind,
    pub adapter: Adapter,
    pub pick: u8,
    pub status: u16,
    pub body: &'a [u8],
}

pub fn answer<'a>(data: &'a [u8], statuses: &[u16]) -> Option<Answer<'a>> {
    let [pick, status, body @ ..] = data else {
        return None;
    };
    let kind = if pick & 1 == 0 {
        VenueKind::Binance
    } else {
        VenueKind::Okx
    };
    Some(Answer {
        kind,
        adapter: Adapter::new(kind, AdapterOptions::default()),
        pick: *pick,
        status: *statuses.get(usize::from(*status) % statuses.len().max(1))?,
        body,
    })
}
