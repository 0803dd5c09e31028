//! Request parameters: strict parsing of query strings and form bodies, and the percent-encoding
//! venues sign over.
//!
//! Parsing is strict on purpose. keygate classifies a request from its parameters and then
//! forwards a re-encoding of exactly those parameters, so nothing the venue reads can differ
//! from what was decided: a duplicate name, a bad escape or invalid UTF-8 is an error, never a
//! guess.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::ClassifyError;

/// Everything but RFC 3986's unreserved characters is escaped (as Binance's signing examples do).
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The most parameters one request may carry.
const MAX_PARAMS: usize = 64;

/// Name-value pairs in the order they were sent. Names are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `a=1&b=2` (a query string or a form body). `+` is a space, as in forms.
    pub fn parse(text: &str, what: &'static str) -> Result<Self, ClassifyError> {
        let mut out = Params::new();
        if text.is_empty() {
            return Ok(out);
        }
        for pair in text.split('&') {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(ClassifyError::Malformed {
                    what,
                    detail: format!("{:?} is not name=value", truncate(pair)),
                });
            };
            let name = decode(name, what)?;
            let value = decode(value, what)?;
            if name.is_empty() {
                return Err(ClassifyError::Malformed {
                    what,
                    detail: "a parameter has an empty name".into(),
                });
            }
            out.push(name, value, what)?;
        }
        Ok(out)
    }

    /// Adds a parameter; a name given twice is an error.
    pub fn push(
        &mut self,
        name: String,
        value: String,
        what: &'static str,
    ) -> Result<(), ClassifyError> {
        if self.0.iter().any(|(n, _)| *n == name) {
            return Err(ClassifyError::Malformed {
                what,
                detail: format!("parameter {name:?} is given twice; send each parameter once"),
            });
        }
        if self.0.len() >= MAX_PARAMS {
            return Err(ClassifyError::Malformed {
                what,
                detail: format!("more than {MAX_PARAMS} parameters"),
            });
        }
        self.0.push((name, value));
        Ok(())
    }

    /// Appends the parameters of `other`; a name in both is an error.
    pub fn extend(&mut self, other: Params, what: &'static str) -> Result<(), ClassifyError> {
        for (n, v) in other.0 {
            self.push(n, v, what)?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Removes a parameter, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `a=1&b=2`, each name and value percent-encoded (UTF-8, upper-case hex).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            s.extend(utf8_percent_encode(n, ESCAPE));
            s.push('=');
            s.extend(utf8_percent_encode(v, ESCAPE));
        }
        s
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn decode(s: &str, what: &'static str) -> Result<String, ClassifyError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(ClassifyError::Malformed {
                    what,
                    detail: format!("bad percent-escape in {:?}", truncate(s)),
                });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ClassifyError::Malformed {
            what,
            detail: format!("{:?} does not decode to UTF-8", truncate(s)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_escapes_non_ascii_as_binance_documents() {
        let p = Params::parse("symbol=%EF%BC%91%EF%BC%92&side=BUY", "query").unwrap();
        assert_eq!(p.get("symbol"), Some("１２"));
        assert_eq!(p.encode(), "symbol=%EF%BC%91%EF%BC%92&side=BUY");
    }

    #[test]
    fn strict_about_what_is_ambiguous() {
        for bad in ["a=1&a=2", "a", "=1", "a=%zz", "a=%4", "a=%FF"] {
            assert!(Params::parse(bad, "query").is_err(), "{bad} was accepted");
        }
        assert_eq!(Params::parse("", "query").unwrap(), Params::new());
        let p = Params::parse("a=x+y&b=", "query").unwrap();
        assert_eq!(p.get("a"), Some("x y"));
        assert_eq!(p.get("b"), Some(""));
        assert_eq!(p.encode(), "a=x%20y&b=");
    }

    proptest::proptest! {
        #[test]
        fn encode_then_parse_is_identity(pairs in proptest::collection::vec(("[a-zA-Z]{1,8}", "\\PC{0,12}"), 0..8)) {
            let mut p = Params::new();
            for (n, v) in pairs {
                let _ = p.push(n, v, "query");
            }
            let back = Params::parse(&p.encode(), "query").unwrap();
            proptest::prop_assert_eq!(back, p);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = Params::parse(&s, "query");
        }
    }
}
