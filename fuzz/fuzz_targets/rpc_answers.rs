//! JSON-RPC node answers (keygate-chain): the envelope, a node's error, and each result type the
//! watcher and transfers read (quantities, blocks with their transactions, headers, logs,
//! receipts, transactions, hashes). Byte 0 picks the type; the rest is the answer's body.
#![no_main]

use keygate_chain::rpc::{Block, Header, Log, Receipt, TxInfo, parse_answer};
use keygate_chain::{Address, B256, U256};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [pick, body @ ..] = data else {
        return;
    };
    let m = "fuzz";
    match pick % 9 {
        0 => drop(parse_answer::<Option<Address>>(m, 200, body)),
        1 => drop(parse_answer::<U256>(m, 200, body)),
        2 => drop(parse_answer::<Option<Block>>(m, 200, body)),
        3 => drop(parse_answer::<Option<Header>>(m, 200, body)),
        4 => drop(parse_answer::<Vec<Log>>(m, 200, body)),
        5 => drop(parse_answer::<Option<Receipt>>(m, 200, body)),
        6 => drop(parse_answer::<Option<TxInfo>>(m, 200, body)),
        7 => drop(parse_answer::<Vec<B256>>(m, 200, body)),
        _ => drop(parse_answer::<B256>(m, 500, body)),
    }
});
