//! JSON-RPC node answers (keygate-chain): the envelope, a node's error, and each result type the
//! watcher and transfers read (quantities, blocks with their transactions, headers, logs,
//! receipts, transactions, hashes, code and call output, fee histories) and the rescue's pending
//! pool answers (`txpool_contentFrom`, `txpool_content`, the pending block): what is taken from
//! a pool answer is the treasury's own transactions, lowest nonce first. Byte 0 picks the type;
//! the rest is the answer's body.
#![no_main]

use keygate_chain::rescue::pool::{AllSections, PendingBlock, PoolTx, Sections};
use keygate_chain::rpc::{Block, FeeHistory, Header, Log, Receipt, TxInfo, parse_answer};
use keygate_chain::{Address, B256, U256};

/// The treasury the pool answers are read for (the seeds' sender).
const TREASURY: Address = Address::repeat_byte(0xaa);

fn treasurys(txs: &[PoolTx]) {
    assert!(txs.iter().all(|t| t.from == TREASURY), "{txs:?}");
    assert!(txs.windows(2).all(|w| w[0].nonce <= w[1].nonce), "{txs:?}");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [pick, body @ ..] = data else {
        return;
    };
    let m = "fuzz";
    match pick % 15 {
        0 => drop(parse_answer::<Option<Address>>(m, 200, body)),
        1 => drop(parse_answer::<U256>(m, 200, body)),
        2 => drop(parse_answer::<Option<Block>>(m, 200, body)),
        3 => drop(parse_answer::<Option<Header>>(m, 200, body)),
        4 => drop(parse_answer::<Vec<Log>>(m, 200, body)),
        5 => drop(parse_answer::<Option<Receipt>>(m, 200, body)),
        6 => drop(parse_answer::<Option<TxInfo>>(m, 200, body)),
        7 => drop(parse_answer::<Vec<B256>>(m, 200, body)),
        8 => drop(parse_answer::<B256>(m, 500, body)),
        9 => drop(parse_answer::<keygate_chain::U64>(m, 200, body)),
        10 => drop(parse_answer::<keygate_chain::Bytes>(m, 200, body)),
        11 => drop(parse_answer::<FeeHistory>(m, 200, body).map(|h| h.next_base_fee())),
        12 => {
            if let Ok(s) = parse_answer::<Sections>(m, 200, body) {
                treasurys(&s.sent_by(&TREASURY));
            }
        }
        13 => {
            if let Ok(s) = parse_answer::<AllSections>(m, 200, body) {
                treasurys(&s.sent_by(&TREASURY));
            }
        }
        _ => {
            if let Ok(Some(b)) = parse_answer::<Option<PendingBlock>>(m, 200, body) {
                treasurys(&b.sent_by(&TREASURY));
            }
        }
    }
});
