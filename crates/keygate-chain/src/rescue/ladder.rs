//! The fee ladder of a rescue transaction, pure: the first rung (the node's fees, or above the
//! pending transaction it must replace), a bump per new block, and the ceiling it stops at.
//!
//! A node takes a replacement at the same nonce only if it pays enough more: go-ethereum's pool
//! wants a price bump of `PriceBump` percent (10 by default; Erigon's pool keeps the same
//! default, "to be compatible with Geth": <https://github.com/ledgerwatch/erigon-lib/pull/1075>)
//! on both the fee cap and the tip, Besu as set by
//! `--tx-pool-price-bump` (<https://besu.hyperledger.org/stable/public-networks/concepts/transactions/pool>),
//! OpenEthereum wanted 12.5 % (as web3.py's 12.5 % bump records,
//! <https://github.com/ethereum/web3.py/issues/1570>); anvil takes any higher fee. Every rung
//! here is at least 12.5 % (and 1 wei) above the one before on both, which all of them take.

/// An EIP-1559 transaction's fees, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee: u128,
    pub tip: u128,
}

/// The bump, as a fraction: 9/8 = +12.5 %.
const BUMP_NUM: u128 = 9;
const BUMP_DEN: u128 = 8;

/// How far above its first rung a transaction's fee cap may climb: the ceiling of the ladder.
/// The ETH left behind for gas is reserved at this ceiling, so every rung stays payable.
pub const CEILING_TIMES_FIRST: u128 = 4;

/// `v` raised by the bump, rounded up, and at least 1 wei more.
fn raised(v: u128) -> u128 {
    let up = v.saturating_mul(BUMP_NUM).saturating_add(BUMP_DEN - 1) / BUMP_DEN;
    up.max(v.saturating_add(1))
}

/// The next rung above `f`.
pub fn bump(f: Fees) -> Fees {
    Fees {
        max_fee: raised(f.max_fee),
        tip: raised(f.tip),
    }
}

/// The first rung: the node's fees (`base` of the next block, suggested `tip`: twice the base
/// plus the tip, as keygate's transfers), raised above `replacing` (a pending transaction at
/// the same nonce) when there is one.
pub fn first(base: u128, tip: u128, replacing: Option<Fees>) -> Fees {
    let own = Fees {
        max_fee: base.saturating_mul(2).saturating_add(tip),
        tip,
    };
    let Some(other) = replacing else {
        return own;
    };
    let above = bump(other);
    let tip = own.tip.max(above.tip);
    Fees {
        max_fee: own.max_fee.max(above.max_fee).max(tip),
        tip,
    }
}

/// The ceiling of a ladder whose first rung is `first`.
pub fn ceiling(first: Fees) -> Fees {
    Fees {
        max_fee: first.max_fee.saturating_mul(CEILING_TIMES_FIRST),
        tip: first.tip.saturating_mul(CEILING_TIMES_FIRST),
    }
}

/// The rung after `current` (at least above `replacing`, a pending transaction at the nonce
/// that is not ours), or None when that would pass `ceiling`: the ladder stops there.
pub fn next(current: Fees, replacing: Option<Fees>, ceiling: Fees) -> Option<Fees> {
    let mut n = bump(current);
    if let Some(other) = replacing {
        let above = bump(other);
        n.tip = n.tip.max(above.tip);
        n.max_fee = n.max_fee.max(above.max_fee);
    }
    n.max_fee = n.max_fee.max(n.tip);
    (n.max_fee <= ceiling.max_fee).then(|| Fees {
        max_fee: n.max_fee,
        tip: n.tip.min(ceiling.tip).min(n.max_fee),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;

    #[test]
    fn every_rung_is_at_least_an_eighth_above_the_last_on_both_fees() {
        let mut f = first(10 * GWEI, GWEI, None);
        assert_eq!(
            f,
            Fees {
                max_fee: 21 * GWEI,
                tip: GWEI
            }
        );
        let top = ceiling(f);
        let mut rungs = 0;
        while let Some(n) = next(f, None, top) {
            assert!(n.max_fee * 8 >= f.max_fee * 9, "{n:?} after {f:?}");
            assert!(
                n.tip * 8 >= f.tip * 9 || n.tip == top.tip,
                "{n:?} after {f:?}"
            );
            assert!(n.max_fee <= top.max_fee && n.tip <= n.max_fee);
            f = n;
            rungs += 1;
        }
        // 1.125^11 < 4 < 1.125^12: the ladder has 11 rungs above the first, then stops.
        assert_eq!(rungs, 11);
        assert!(next(f, None, top).is_none());
    }

    #[test]
    fn a_pending_transaction_is_outbid_on_both_fees() {
        let thief = Fees {
            max_fee: 100 * GWEI,
            tip: 50 * GWEI,
        };
        let f = first(GWEI, GWEI, Some(thief));
        assert!(f.max_fee * 8 >= thief.max_fee * 9 && f.tip * 8 >= thief.tip * 9);
        assert!(f.max_fee > thief.max_fee && f.tip > thief.tip);
        // A thief who outbids a rung is outbid again at the next one (within the ceiling).
        let top = ceiling(f);
        let higher = Fees {
            max_fee: f.max_fee * 2,
            tip: f.tip * 2,
        };
        let n = next(f, Some(higher), top).unwrap();
        assert!(n.max_fee > higher.max_fee && n.tip > higher.tip);
        // Beyond the ceiling, nothing: keygate does not follow a tip war without end.
        let war = Fees {
            max_fee: top.max_fee,
            tip: top.tip,
        };
        assert!(next(f, Some(war), top).is_none());
        // Tiny fees still go up by at least a wei.
        assert_eq!(
            bump(Fees { max_fee: 1, tip: 0 }),
            Fees { max_fee: 2, tip: 1 }
        );
    }
}
