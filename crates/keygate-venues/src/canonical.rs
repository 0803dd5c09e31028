//! The canonical text of a classified request: exactly what keygate would send the venue for
//! it, before signing. A hold is bound to this text (keygate-core sees it as an opaque string),
//! and approvers are shown it, so what they approve is the request that can be carried out.
//!
//! The text is the request line and the body as keygate re-encodes them on the way out:
//!
//! ```text
//! POST /api/v3/order
//! symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000
//! ```
//!
//! `METHOD path[?query]`, a newline, then the body (empty when there is none). Binance
//! parameters ([`Forward::Form`]) are percent-encoded in the order sent, in the form body for
//! POST and PUT and in the query otherwise, as `binance::sign` sends them; OKX ([`Forward::Json`])
//! has its query the same way and its JSON body compact, as `okx::sign` sends it. Every
//! parameter the venue reads is in it: for a withdrawal the network or chain, the address tag
//! and the destination type too, since they are parameters. Left out is only what keygate adds
//! when it signs, which is not the bot's request: Binance's `recvWindow`, `timestamp` and
//! `signature`, OKX's `OK-ACCESS-*` headers, the API key, and the client id keygate gives a
//! withdrawal or new order the bot sent without one (`Adapter::tag`, after the decision). The text
//! holds no key, secret or signature: it is built before signing, from the classified request
//! alone.
//!
//! Two requests have the same canonical text if and only if keygate forwards the same bytes for
//! them (the tests below check it against `sign`): parameters in another order are another
//! request, a Binance parameter moved between the query and the form body is not.

use crate::{Classified, Forward, binance, okx};

impl Classified {
    /// The request as keygate would send it, before signing: `METHOD path[?query]`, a newline,
    /// the body (see the module's documentation).
    pub fn canonical(&self) -> String {
        let (query, body) = match &self.forward {
            Forward::Form(params) => {
                // As `binance::sign` does, which sets these itself (classification already
                // dropped a bot's own).
                let signing = |(n, _): (&str, &str)| binance::SIGNING_PARAMS.contains(&n);
                let encoded = if self.signed && params.iter().any(signing) {
                    let mut params = params.clone();
                    for p in binance::SIGNING_PARAMS {
                        params.remove(p);
                    }
                    params.encode()
                } else {
                    params.encode()
                };
                if binance::form_in_body(&self.method) {
                    (String::new(), encoded)
                } else {
                    (encoded, String::new())
                }
            }
            Forward::Json { query, body } => (
                query.encode(),
                body.as_ref().map(okx::json_body).unwrap_or_default(),
            ),
        };
        let mut text = String::with_capacity(
            self.method.len() + self.path.len() + query.len() + body.len() + 3,
        );
        text.push_str(&self.method);
        text.push(' ');
        text.push_str(&self.path);
        if !query.is_empty() {
            text.push('?');
            text.push_str(&query);
        }
        text.push('\n');
        text.push_str(&body);
        text
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::{Adapter, AdapterOptions, Classified, Keys, Outgoing, Request, VenueKind};

    const KEYS: Keys<'static> = Keys {
        api_key: "AKEY-visible-to-nobody",
        secret: "SECRET-visible-to-nobody",
        passphrase: Some("PASSPHRASE-visible-to-nobody"),
    };
    const NOW: i64 = 1_700_000_000_000;

    fn adapter(kind: VenueKind) -> Adapter {
        Adapter::new(kind, AdapterOptions::default())
    }

    fn classify(kind: VenueKind, method: &str, path: &str, query: &str, body: &str) -> Classified {
        adapter(kind)
            .classify(&Request {
                method,
                path,
                query,
                body: body.as_bytes(),
            })
            .unwrap_or_else(|e| panic!("{method} {path}?{query} {body}: {e}"))
    }

    /// What keygate sends for `c`, signed with fixed keys at a fixed time: equal for two
    /// requests exactly when the bytes before signing are equal.
    fn sent(kind: VenueKind, c: &Classified) -> Outgoing {
        adapter(kind).sign(c, &KEYS, NOW)
    }

    /// The canonical text and the bytes sent agree on which of `requests` are the same.
    fn same_iff_same_bytes(kind: VenueKind, requests: &[Classified]) {
        for a in requests {
            for b in requests {
                assert_eq!(
                    a.canonical() == b.canonical(),
                    sent(kind, a) == sent(kind, b),
                    "{:?} vs {:?}",
                    a.canonical(),
                    b.canonical()
                );
            }
        }
    }

    #[test]
    fn a_binance_order_is_its_request_line_and_form_body() {
        let c = classify(
            VenueKind::Binance,
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY",
            "type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
        );
        assert_eq!(
            c.canonical(),
            "POST /api/v3/order\nsymbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000"
        );
        // The body sent is the canonical body, then keygate's own signing parameters.
        let out = sent(VenueKind::Binance, &c);
        let body = String::from_utf8(out.body).unwrap();
        let text = c.canonical();
        let (_, canonical_body) = text.split_once('\n').unwrap();
        assert!(
            body.starts_with(&format!(
                "{canonical_body}&recvWindow=5000&timestamp={NOW}&signature="
            )),
            "{body}"
        );
        // A cancel goes in the query.
        let c = classify(
            VenueKind::Binance,
            "DELETE",
            "/api/v3/order",
            "symbol=BTCUSDT&orderId=42",
            "",
        );
        assert_eq!(
            c.canonical(),
            "DELETE /api/v3/order?symbol=BTCUSDT&orderId=42\n"
        );
    }

    #[test]
    fn binance_requests_are_the_same_exactly_when_keygate_forwards_the_same_bytes() {
        let b =
            |q: &str, body: &str| classify(VenueKind::Binance, "POST", "/api/v3/order", q, body);
        let requests = [
            b(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
                "",
            ),
            // The same parameters split between query and body: forwarded as one form body.
            b(
                "symbol=BTCUSDT&side=BUY",
                "type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
            ),
            b(
                "",
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
            ),
            // A bot's own timestamp and signature are dropped: the same request.
            b(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000&timestamp=5&signature=ab",
                "",
            ),
            // Another order of the parameters: forwarded in that order, another request.
            b(
                "side=BUY&symbol=BTCUSDT&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
                "",
            ),
            // Escaped differently on the way in, encoded the same on the way out.
            b(
                "symbol=%42TCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
                "",
            ),
            // The hold-swap: another symbol, the same value.
            b(
                "symbol=SHITUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
                "",
            ),
        ];
        same_iff_same_bytes(VenueKind::Binance, &requests);
        let first = requests[0].canonical();
        for (i, same) in [
            (1, true),
            (2, true),
            (3, true),
            (4, false),
            (5, true),
            (6, false),
        ] {
            assert_eq!(requests[i].canonical() == first, same, "request {i}");
        }
        // The swap has the same intent fields, and another canonical text.
        assert_eq!(
            (&requests[6].asset, requests[6].amount),
            (&requests[0].asset, requests[0].amount)
        );
    }

    #[test]
    fn a_change_of_any_parameter_changes_the_text() {
        let query = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000&newClientOrderId=a1";
        let base = classify(VenueKind::Binance, "POST", "/api/v3/order", query, "");
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .collect();
        for i in 0..pairs.len() {
            let changed: Vec<String> = pairs
                .iter()
                .enumerate()
                .map(|(j, (n, v))| match (j == i, *n) {
                    (false, _) => format!("{n}={v}"),
                    (true, "symbol") => "symbol=ETHUSDT".into(),
                    (true, "side") => "side=SELL".into(),
                    (true, "type") => "type=LIMIT_MAKER".into(),
                    (true, "timeInForce") => "timeInForce=IOC".into(),
                    (true, _) => format!("{n}={v}0"),
                })
                .collect();
            let c = classify(
                VenueKind::Binance,
                "POST",
                "/api/v3/order",
                &changed.join("&"),
                "",
            );
            assert_ne!(c.canonical(), base.canonical(), "{}", pairs[i].0);
        }
        // One more parameter is another request too.
        let more = classify(
            VenueKind::Binance,
            "POST",
            "/api/v3/order",
            &format!("{query}&selfTradePreventionMode=NONE"),
            "",
        );
        assert_ne!(more.canonical(), base.canonical());
    }

    #[test]
    fn a_withdrawal_binds_its_network_tag_and_destination_type() {
        let w = |q: &str| {
            classify(
                VenueKind::Binance,
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                q,
                "",
            )
        };
        let eth = w("coin=USDT&network=ETH&address=0xab&amount=500");
        assert_eq!(
            eth.canonical(),
            "POST /sapi/v1/capital/withdraw/apply\ncoin=USDT&network=ETH&address=0xab&amount=500"
        );
        let tron = w("coin=USDT&network=TRX&address=0xab&amount=500");
        let tagged = w("coin=USDT&network=ETH&address=0xab&addressTag=7&amount=500");
        let spot = w("coin=USDT&network=ETH&address=0xab&amount=500&walletType=1");
        for other in [&tron, &tagged, &spot] {
            assert_ne!(other.canonical(), eth.canonical());
        }
        // The network is in the route as well as in the canonical text.
        assert_eq!(
            (&tron.asset, tron.amount, &tron.destination),
            (&eth.asset, eth.amount, &eth.destination)
        );
        assert_ne!(tron.route, eth.route);
        assert!(tagged.canonical().contains("addressTag=7"));

        let o = |body: &str| classify(VenueKind::Okx, "POST", "/api/v5/asset/withdrawal", "", body);
        let on_chain =
            o(r#"{"ccy":"USDT","amt":"500","dest":"4","toAddr":"0xab","chain":"USDT-ERC20"}"#);
        assert_eq!(
            on_chain.canonical(),
            "POST /api/v5/asset/withdrawal\n{\"ccy\":\"USDT\",\"amt\":\"500\",\"dest\":\"4\",\"toAddr\":\"0xab\",\"chain\":\"USDT-ERC20\"}"
        );
        let other_chain =
            o(r#"{"ccy":"USDT","amt":"500","dest":"4","toAddr":"0xab","chain":"USDT-TRC20"}"#);
        let internal = o(r#"{"ccy":"USDT","amt":"500","dest":"3","toAddr":"0xab"}"#);
        for other in [&other_chain, &internal] {
            assert_ne!(other.canonical(), on_chain.canonical());
            assert_ne!(other.route, on_chain.route);
            assert_eq!(
                (&other.asset, other.amount, &other.destination),
                (&on_chain.asset, on_chain.amount, &on_chain.destination)
            );
        }
    }

    #[test]
    fn okx_requests_are_the_same_exactly_when_keygate_forwards_the_same_bytes() {
        let o = |body: &str| classify(VenueKind::Okx, "POST", "/api/v5/trade/order", "", body);
        let requests = [
            o(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"100000"}"#,
            ),
            // Whitespace and fields OKX reads as not sent: the same bytes forwarded.
            o(
                r#"{ "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "1", "px": "100000", "tag": "" }"#,
            ),
            // Another field order: forwarded in that order.
            o(
                r#"{"tdMode":"cash","instId":"BTC-USDT","side":"buy","ordType":"limit","sz":"1","px":"100000"}"#,
            ),
            o(
                r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"100001"}"#,
            ),
            o(
                r#"{"instId":"SHIT-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"1","px":"100000"}"#,
            ),
        ];
        same_iff_same_bytes(VenueKind::Okx, &requests);
        assert_eq!(requests[0].canonical(), requests[1].canonical());
        for other in &requests[2..] {
            assert_ne!(other.canonical(), requests[0].canonical());
        }
        // The body as sent, byte for byte.
        let out = sent(VenueKind::Okx, &requests[0]);
        assert_eq!(
            requests[0].canonical(),
            format!(
                "POST /api/v5/trade/order\n{}",
                String::from_utf8(out.body).unwrap()
            )
        );
        // A read: its query as sent.
        let r = classify(
            VenueKind::Okx,
            "GET",
            "/api/v5/trade/order",
            "instId=BTC-USDT&ordId=9",
            "",
        );
        assert_eq!(
            r.canonical(),
            "GET /api/v5/trade/order?instId=BTC-USDT&ordId=9\n"
        );
        assert_eq!(
            sent(VenueKind::Okx, &r).path_and_query,
            "/api/v5/trade/order?instId=BTC-USDT&ordId=9"
        );
    }

    #[test]
    fn the_text_holds_no_key_secret_signature_or_signing_time() {
        let requests = [
            (
                VenueKind::Binance,
                classify(
                    VenueKind::Binance,
                    "POST",
                    "/api/v3/order",
                    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
                    "recvWindow=60000&timestamp=1&signature=deadbeef",
                ),
            ),
            (
                VenueKind::Okx,
                classify(
                    VenueKind::Okx,
                    "POST",
                    "/api/v5/asset/withdrawal",
                    "",
                    r#"{"ccy":"USDT","amt":"5","dest":"4","toAddr":"0xab"}"#,
                ),
            ),
        ];
        for (kind, c) in &requests {
            let text = c.canonical();
            let out = sent(*kind, c);
            let mut secrets: Vec<String> = vec![
                KEYS.api_key.into(),
                KEYS.secret.into(),
                "PASSPHRASE".into(),
                NOW.to_string(),
                "deadbeef".into(),
                "signature".into(),
                "timestamp".into(),
                "recvWindow".into(),
            ];
            // Whatever the signed request carries besides: its headers (key, signature, time,
            // passphrase) and Binance's signature parameter.
            secrets.extend(
                out.headers
                    .iter()
                    .filter(|(h, _)| *h != "Content-Type")
                    .map(|(_, v)| v.clone()),
            );
            let sent_body = String::from_utf8(out.body).unwrap();
            if let Some((_, sig)) = sent_body.split_once("&signature=") {
                secrets.push(sig.to_string());
            }
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{s:?} in {text:?}");
            }
        }
    }

    #[test]
    fn signing_parameters_are_never_in_the_text_as_sign_never_sends_a_bots_own() {
        let c = classify(
            VenueKind::Binance,
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100000",
            "",
        );
        // Parameters keygate sets when it signs, found in the forwarded set however they got
        // there: `sign` replaces them, and the text leaves them out.
        let mut with = c.clone();
        if let crate::Forward::Form(p) = &mut with.forward {
            p.push("timestamp".into(), "1".into(), "").unwrap();
            p.push("signature".into(), "00".into(), "").unwrap();
        }
        assert_eq!(with.canonical(), c.canonical());
        assert_eq!(
            sent(VenueKind::Binance, &with),
            sent(VenueKind::Binance, &c)
        );
    }

    proptest::proptest! {
        /// Any split of a Binance order between query and body, in any order of its
        /// parameters: the text is the same exactly when the bytes sent are.
        #[test]
        fn binance_text_follows_the_bytes_sent(
            order in Just(vec![0usize, 1, 2, 3, 4, 5]).prop_shuffle(),
            other in Just(vec![0usize, 1, 2, 3, 4, 5]).prop_shuffle(),
            split in 0usize..7,
            split2 in 0usize..7,
        ) {
            const P: [&str; 6] = ["symbol=BTCUSDT", "side=BUY", "type=LIMIT", "timeInForce=GTC", "quantity=1", "price=100000"];
            let build = |order: &[usize], split: usize| {
                let parts: Vec<&str> = order.iter().map(|i| P[*i]).collect();
                let (q, b) = parts.split_at(split.min(parts.len()));
                classify(VenueKind::Binance, "POST", "/api/v3/order", &q.join("&"), &b.join("&"))
            };
            let (a, b) = (build(&order, split), build(&other, split2));
            prop_assert_eq!(a.canonical() == b.canonical(), sent(VenueKind::Binance, &a) == sent(VenueKind::Binance, &b));
            prop_assert_eq!(a.canonical() == b.canonical(), order == other);
        }
    }
}
