//! The sub-account's internal-transfer history, for reconciliation: a transfer the key makes to
//! another sub-account of the same master takes the funds out of the sweep's reach without
//! leaving the venue, so it is judged like a withdrawal. Binance only (an OKX sub-account key
//! cannot transfer to another sub-account).
//!
//! - Binance `GET /sapi/v1/sub-account/transfer/subUserHistory` (for the sub-account's own
//!   key; IP weight 1; `type` 2 = transfer out, `startTime`, `limit` default 500; rows carry
//!   `counterParty`, `email`, `type`, `asset`, `qty`, `status` PROCESS/SUCCESS/FAILURE,
//!   `tranId`, `time`):
//!   <https://developers.binance.com/docs/sub_account/asset-management/Sub-account-Transfer-History>.
//!   What the key can send: `POST /sapi/v1/sub-account/transfer/subToSub` (`toEmail`, `asset`,
//!   `amount`; the key needs "Enable Spot & Margin Trading"):
//!   <https://developers.binance.com/docs/sub_account/asset-management/Transfer-to-Sub-account-of-Same-Master>.
//!
//! A transfer to the master (`counterParty` `master`, containment's sweep among them) keeps the
//! funds in the firm's reach and is not an outflow. A failed one moved nothing.

use keygate_core::outflow::Outflow;
use rust_decimal::Decimal;

use crate::{Adapter, Keys, Outgoing, Params, VenueKind, binance};

/// The most rows one read returns (Binance's default `limit`).
pub const BINANCE_PAGE: usize = 500;

impl Adapter {
    /// Whether the venue has a sub-account transfer history keygate reads (Binance).
    pub fn reads_sub_transfers(&self) -> bool {
        self.kind == VenueKind::Binance
    }

    /// The signed read of the transfers out of the sub-account since `since_ms`; `None` where
    /// the venue has no such history (OKX).
    pub fn sub_transfer_history(
        &self,
        since_ms: i64,
        keys: &Keys<'_>,
        now_ms: i64,
    ) -> Option<Outgoing> {
        if !self.reads_sub_transfers() {
            return None;
        }
        let mut p = Params::new();
        let _ = p.push("type".into(), "2".into(), "");
        let _ = p.push("startTime".into(), since_ms.max(0).to_string(), "");
        let _ = p.push("limit".into(), BINANCE_PAGE.to_string(), "");
        let c = binance::internal(
            "subaccount.transfers",
            "/sapi/v1/sub-account/transfer/subUserHistory",
            p,
        );
        Some(self.sign(&c, keys, now_ms))
    }

    /// The transfers out of the sub-account in an answer, as outflows of `venue`: each to
    /// another sub-account, not failed. Their ids are `subtransfer:<tranId>` (never a
    /// withdrawal's) and their destination `sub-account:<email>`. Such a transfer whose `qty`
    /// is not positive makes the answer an error, naming it (an outflow never lowers a sum).
    pub fn parse_sub_transfers(&self, venue: &str, body: &[u8]) -> Result<Vec<Outflow>, String> {
        let rows: Vec<BinanceSubTransfer> = serde_json::from_slice(body).map_err(|e| {
            format!("the sub-account transfer history is not the list Binance documents: {e}")
        })?;
        rows.into_iter()
            .filter(|r| r.kind == 2 && r.counter_party != "master" && r.status != "FAILURE")
            .map(|r| {
                if r.qty <= Decimal::ZERO {
                    return Err(format!(
                        "sub-account transfer {} has qty {}, not a positive amount",
                        r.tran_id, r.qty
                    ));
                }
                Ok(Outflow {
                    venue: venue.to_string(),
                    id: format!("subtransfer:{}", r.tran_id),
                    // As withdrawal histories: intents carry upper-case assets.
                    asset: r.asset.to_ascii_uppercase(),
                    amount: r.qty,
                    destination: format!("sub-account:{}", r.email),
                    at: r.time,
                    reference: None,
                })
            })
            .collect()
    }

    /// The time the next read starts from, when a read came back full (rows sharing the last
    /// millisecond are read again; reconciliation judges each once).
    pub fn next_sub_transfer_since(&self, rows_read: usize, last_at: Option<i64>) -> Option<i64> {
        (rows_read >= BINANCE_PAGE).then_some(last_at?)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BinanceSubTransfer {
    counter_party: String,
    email: String,
    #[serde(rename = "type")]
    kind: u8,
    asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    qty: Decimal,
    status: String,
    tran_id: u64,
    time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdapterOptions;

    #[test]
    fn only_transfers_out_to_another_sub_account_that_did_not_fail_are_outflows() {
        let a = Adapter::new(VenueKind::Binance, AdapterOptions::default());
        // The docs' example rows, and one of each kind keygate leaves out.
        let body = br#"[
          {"counterParty":"subAccount","email":"sub2@test.com","type":2,"asset":"ETH","qty":"2",
           "fromAccountType":"SPOT","toAccountType":"SPOT","status":"SUCCESS","tranId":11798829519,"time":1544433326000},
          {"counterParty":"master","email":"master@test.com","type":2,"asset":"BTC","qty":"1",
           "fromAccountType":"SPOT","toAccountType":"SPOT","status":"SUCCESS","tranId":11798835829,"time":1544433325000},
          {"counterParty":"subAccount","email":"sub3@test.com","type":1,"asset":"BTC","qty":"1",
           "fromAccountType":"SPOT","toAccountType":"SPOT","status":"SUCCESS","tranId":3,"time":1544433325000},
          {"counterParty":"subAccount","email":"sub3@test.com","type":2,"asset":"BTC","qty":"1",
           "fromAccountType":"SPOT","toAccountType":"SPOT","status":"FAILURE","tranId":4,"time":1544433325000}
        ]"#;
        let out = a.parse_sub_transfers("binance", body).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, "subtransfer:11798829519");
        assert_eq!(out[0].destination, "sub-account:sub2@test.com");
        assert_eq!(out[0].amount, Decimal::from(2));
        assert_eq!(out[0].at, 1544433326000);
        assert_eq!(out[0].asset, "ETH");
        let lower = br#"[{"counterParty":"subAccount","email":"a","type":2,"asset":"eth","qty":"2","status":"SUCCESS","tranId":1,"time":1}]"#;
        let out = a.parse_sub_transfers("binance", lower).unwrap();
        assert_eq!(
            out[0].asset, "ETH",
            "matched against intents, which carry upper case"
        );
        for bad in [
            &b"{}"[..],
            br#"[{"counterParty":"subAccount","email":"a","type":2,"asset":"ETH","qty":2,"status":"SUCCESS","tranId":1,"time":1}]"#,
            br#"[{"email":"a","type":2,"asset":"ETH","qty":"2","status":"SUCCESS","tranId":1,"time":1}]"#,
            // A transfer out of nothing, or of less (against the fuzz target venue_histories'
            // invariant; the first is its seed sub-transfer-zero-qty).
            br#"[{"counterParty":"subAccount","email":"a","type":2,"asset":"ETH","qty":"0","status":"SUCCESS","tranId":1,"time":1}]"#,
            br#"[{"counterParty":"subAccount","email":"a","type":2,"asset":"ETH","qty":"-2","status":"PROCESS","tranId":1,"time":1}]"#,
        ] {
            assert!(a.parse_sub_transfers("binance", bad).is_err());
        }
    }

    #[test]
    fn the_read_is_binance_only_and_pages_on_from_the_last_time() {
        let okx = Adapter::new(VenueKind::Okx, AdapterOptions::default());
        let keys = Keys {
            api_key: "k",
            secret: "s",
            passphrase: None,
        };
        assert!(okx.sub_transfer_history(0, &keys, 1).is_none());
        let b = Adapter::new(VenueKind::Binance, AdapterOptions::default());
        let out = b.sub_transfer_history(1_000, &keys, 2_000).unwrap();
        assert!(
            out.path_and_query.starts_with(
                "/sapi/v1/sub-account/transfer/subUserHistory?type=2&startTime=1000&limit=500&"
            ),
            "{}",
            out.path_and_query
        );
        assert_eq!(b.next_sub_transfer_since(500, Some(7)), Some(7));
        assert_eq!(b.next_sub_transfer_since(499, Some(7)), None);
    }
}
