//! The judgement of hand-built blocks, without a node or a store.

use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Bloom, U64};

use super::*;
use crate::Token;
use crate::rpc::BlockTx;
use crate::tx::Approval;

const TREASURY: Address = Address::repeat_byte(0x11);
const OTHER: Address = Address::repeat_byte(0x22);
const TOKEN: Address = Address::repeat_byte(0x33);
const SPENDER: Address = Address::repeat_byte(0x44);

fn venue() -> EvmVenue {
    EvmVenue {
        name: "eth".into(),
        rpc_url: "http://127.0.0.1:9".into(),
        chain_id: 31337,
        credential: "eth".into(),
        confirmations: 2,
        poll: Duration::from_millis(20),
        reorg_depth: 4,
        tokens: [(
            "USDT".to_string(),
            Token {
                contract: TOKEN,
                decimals: 6,
            },
        )]
        .into(),
        timeout: Duration::from_secs(5),
    }
}

fn block(n: u64, transactions: Vec<BlockTx>) -> Block {
    Block {
        number: U64::from(n),
        hash: B256::with_last_byte(n as u8),
        parent_hash: B256::with_last_byte(n as u8 - 1),
        timestamp: U64::from(1_700_000_000u64),
        logs_bloom: Bloom::default(),
        transactions,
    }
}

fn tx(id: u8, from: Address, value: u64, nonce: u64) -> BlockTx {
    BlockTx {
        hash: B256::repeat_byte(id),
        from,
        to: Some(OTHER),
        value: U256::from(value),
        nonce: U64::from(nonce),
    }
}

/// A treasury with no code whose nonce went from `before` (at the parent) to `after`.
fn state(b: &Block, before: u64, after: u64) -> TreasuryState {
    TreasuryState {
        address: TREASURY,
        code: Some(Bytes::new()),
        base: NonceBase {
            tip: b.parent_hash,
            count: Some(before),
            sent: 0,
            deferred_from: None,
        },
        after: Some(after),
    }
}

fn log(signature: B256, owner: Address, to: Address, units: u64, tx: u8, index: u64) -> Log {
    Log {
        address: TOKEN,
        topics: vec![signature, owner.into_word(), to.into_word()],
        data: U256::from(units).to_be_bytes::<32>().to_vec().into(),
        transaction_hash: B256::repeat_byte(tx),
        log_index: U64::from(index),
        removed: false,
    }
}

fn facts(treasuries: Vec<TreasuryState>, logs: Vec<Log>) -> Facts {
    Facts {
        treasuries,
        logs,
        ..Facts::default()
    }
}

#[test]
fn nothing_suspicious_is_no_outflow() {
    // A transfer keygate signed (its value was paid by a token call: zero native value), the
    // nonce moved by exactly it, no code, no logs.
    let b = block(5, vec![tx(1, TREASURY, 0, 7), tx(2, OTHER, 9, 0)]);
    let mut f = facts(vec![state(&b, 7, 8)], vec![]);
    f.ours.insert(B256::repeat_byte(1));
    let j = judge(&venue(), &[TREASURY], &b, &f);
    assert_eq!(j.outflows, vec![]);
    assert_eq!(j.notes, vec![]);
    assert_eq!(j.unlisted, vec![]);
    assert_eq!(
        j.nonces,
        vec![(
            TREASURY,
            NonceBase {
                tip: b.hash,
                count: Some(8),
                sent: 0,
                deferred_from: None,
            }
        )]
    );
}

#[test]
fn a_native_transfer_out_is_an_outflow_whoever_signed_it() {
    let b = block(
        5,
        vec![
            tx(1, TREASURY, 1_500_000_000_000_000_000, 7),
            tx(2, TREASURY, 3, 8),
        ],
    );
    let mut f = facts(vec![state(&b, 7, 9)], vec![]);
    // keygate signed the second one: its value still goes to reconciliation.
    f.ours.insert(B256::repeat_byte(2));
    let j = judge(&venue(), &[TREASURY], &b, &f);
    assert_eq!(j.outflows.len(), 2, "{:?}", j.outflows);
    let o = &j.outflows[0];
    assert_eq!(o.id, hash_text(&B256::repeat_byte(1)));
    assert_eq!(o.asset, "ETH");
    assert_eq!(o.amount, Decimal::from_str("1.5").unwrap());
    assert_eq!(o.destination, address_text(&OTHER));
    assert_eq!(o.at, 1_700_000_000_000);
    assert_eq!(o.reference.as_deref(), Some(o.id.as_str()));
    assert_eq!(
        j.outflows[1].amount,
        Decimal::from_str("0.000000000000000003").unwrap()
    );
    // Two transactions, nonce up by two: nothing unexplained.
    assert_eq!(j.notes, vec![]);
}

#[test]
fn an_erc20_transfer_log_of_a_listed_token_is_an_outflow_and_others_are_not() {
    let b = block(5, vec![]);
    let sig = Transfer::SIGNATURE_HASH;
    let mut unlisted = log(sig, TREASURY, OTHER, 5, 3, 2);
    unlisted.address = Address::repeat_byte(0x99);
    let mut removed = log(sig, TREASURY, OTHER, 5, 3, 3);
    removed.removed = true;
    let logs = vec![
        log(sig, TREASURY, OTHER, 2_500_000, 3, 1),
        // A transfer of nothing: anyone can make one from any address.
        log(sig, TREASURY, OTHER, 0, 3, 0),
        unlisted,
        removed,
    ];
    let j = judge(
        &venue(),
        &[TREASURY],
        &b,
        &facts(vec![state(&b, 0, 0)], logs),
    );
    assert_eq!(j.outflows.len(), 1, "{:?}", j.outflows);
    let o = &j.outflows[0];
    // Its position among the transaction's logs, in block order (the zero one came first).
    assert_eq!(o.id, format!("{}:1", hash_text(&B256::repeat_byte(3))));
    assert_eq!(o.asset, "USDT");
    assert_eq!(o.amount, Decimal::from_str("2.5").unwrap());
    assert_eq!(o.destination, address_text(&OTHER));
    assert_eq!(
        j.unlisted,
        vec![(Address::repeat_byte(0x99), B256::repeat_byte(3))]
    );
}

#[test]
fn an_approval_is_an_outflow_unless_the_spender_is_an_active_book_entry_for_the_token() {
    let b = block(5, vec![]);
    let sig = Approval::SIGNATURE_HASH;
    let logs = vec![log(sig, TREASURY, SPENDER, 1_000_000, 4, 0)];
    let v = venue();
    assert!(needs_book(&v, &logs));
    let j = judge(
        &v,
        &[TREASURY],
        &b,
        &facts(vec![state(&b, 0, 0)], logs.clone()),
    );
    assert_eq!(j.outflows.len(), 1);
    assert_eq!(j.outflows[0].asset, "allowance:USDT");
    assert_eq!(j.outflows[0].amount, Decimal::ONE);
    assert_eq!(j.outflows[0].destination, address_text(&SPENDER));
    // An active entry of this venue for this very token vouches for the spender; one for
    // another asset or venue, or not yet active, does not.
    let entry = |venue: &str, asset: &str, usable_from: i64| Destination {
        route: Default::default(),
        id: 1,
        venue: venue.into(),
        asset: asset.into(),
        address: address_text(&SPENDER),
        label: "desk".into(),
        added_at: 0,
        added_by: "ops".into(),
        usable_from,
        approved_at: Some(0),
        approved_by: Some("risk".into()),
    };
    let others = Book::active(
        vec![
            entry("other", "USDT", 0),
            entry("eth", "ETH", 0),
            entry("eth", "USDT", 99),
        ],
        "eth",
        10,
    );
    let mut f = facts(vec![state(&b, 0, 0)], logs.clone());
    f.book = others;
    assert_eq!(judge(&v, &[TREASURY], &b, &f).outflows.len(), 1);
    f.book = Book::active(vec![entry("eth", "USDT", 0)], "eth", 10);
    assert_eq!(judge(&v, &[TREASURY], &b, &f).outflows, vec![]);
    // A revoked allowance needs no book and is no outflow.
    let revoked = vec![log(sig, TREASURY, SPENDER, 0, 4, 0)];
    assert!(!needs_book(&v, &revoked));
    let j = judge(&v, &[TREASURY], &b, &facts(vec![state(&b, 0, 0)], revoked));
    assert_eq!(j.outflows, vec![]);
}

#[test]
fn a_7702_delegation_at_the_treasury_is_an_outflow_to_its_delegate() {
    let b = block(5, vec![]);
    let mut t = state(&b, 3, 3);
    let mut code = vec![0xef, 0x01, 0x00];
    code.extend_from_slice(SPENDER.as_slice());
    t.code = Some(code.clone().into());
    let j = judge(&venue(), &[TREASURY], &b, &facts(vec![t.clone()], vec![]));
    assert_eq!(j.outflows.len(), 1);
    let o = &j.outflows[0];
    assert_eq!(o.asset, "code");
    assert_eq!(o.amount, Decimal::ZERO);
    assert_eq!(o.destination, address_text(&SPENDER));
    assert_eq!(
        o.id,
        format!(
            "code:{}:{}",
            address_text(&TREASURY),
            hash_text(&keccak256(&code))
        )
    );
    // Other code is an outflow too; no state for the block (None) is looked at later.
    t.code = Some(vec![0x60, 0x00].into());
    let j = judge(&venue(), &[TREASURY], &b, &facts(vec![t.clone()], vec![]));
    assert_eq!(j.outflows[0].destination, "code");
    t.code = None;
    assert_eq!(
        judge(&venue(), &[TREASURY], &b, &facts(vec![t], vec![])).outflows,
        vec![]
    );
}

#[test]
fn a_nonce_jump_its_transactions_do_not_explain_is_an_outflow() {
    // One transaction of the treasury's, nonce up by three: an authorization moved it by two.
    let b = block(5, vec![tx(1, TREASURY, 0, 4)]);
    let mut f = facts(vec![state(&b, 4, 7)], vec![]);
    f.ours.insert(B256::repeat_byte(1));
    let j = judge(&venue(), &[TREASURY], &b, &f);
    assert_eq!(j.outflows.len(), 1);
    let o = &j.outflows[0];
    assert_eq!(o.asset, "nonce");
    assert_eq!(o.amount, Decimal::from(2));
    assert_eq!(
        o.id,
        format!("nonce:{}:{}", address_text(&TREASURY), hash_text(&b.hash))
    );
    assert_eq!(
        j.notes,
        vec![(
            TREASURY,
            NonceNote::Unexplained {
                before: 4,
                after: 7,
                transactions: 1
            }
        )]
    );
    assert_eq!(j.nonces[0].1.count, Some(7));
}

#[test]
fn a_block_without_state_defers_the_nonce_comparison_to_the_next_one_with_state() {
    let b5 = block(5, vec![tx(1, TREASURY, 0, 4)]);
    let mut t = state(&b5, 4, 0);
    t.after = None;
    let mut f = facts(vec![t], vec![]);
    f.ours.insert(B256::repeat_byte(1));
    let j = judge(&venue(), &[TREASURY], &b5, &f);
    assert_eq!(j.outflows, vec![]);
    assert_eq!(j.notes, vec![(TREASURY, NonceNote::Deferred)]);
    let base = j.nonces[0].1;
    assert_eq!(
        base,
        NonceBase {
            tip: b5.hash,
            count: Some(4),
            sent: 1,
            deferred_from: Some(5),
        }
    );
    // The next block has state: compared over both, one transaction in each, nonce up by 3.
    let b6 = block(6, vec![tx(2, TREASURY, 0, 5)]);
    let mut f = facts(
        vec![TreasuryState {
            address: TREASURY,
            code: Some(Bytes::new()),
            base,
            after: Some(7),
        }],
        vec![],
    );
    f.ours.insert(B256::repeat_byte(2));
    let j = judge(&venue(), &[TREASURY], &b6, &f);
    assert_eq!(j.outflows.len(), 1);
    assert_eq!(j.outflows[0].amount, Decimal::ONE);
    assert_eq!(j.notes[0], (TREASURY, NonceNote::Resumed { from: 5 }));
    // No nonce from before at all: a gap, an alarm, not an outflow.
    let mut t = state(&b6, 0, 7);
    t.base.count = None;
    t.base.deferred_from = Some(5);
    let mut f = facts(vec![t], vec![]);
    f.ours.insert(B256::repeat_byte(2));
    let j = judge(&venue(), &[TREASURY], &b6, &f);
    assert_eq!(j.outflows, vec![]);
    assert_eq!(j.notes, vec![(TREASURY, NonceNote::Gap { since: Some(5) })]);
    assert_eq!(j.nonces[0].1.count, Some(7));
}
