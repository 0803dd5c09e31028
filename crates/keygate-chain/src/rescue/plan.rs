//! What a sweep moves, pure: from the treasury's balances (each listed token, and ETH), the gas
//! each transfer needs and the ladder's ceiling, the transfers to sign, in order: largest USD
//! value first (an asset without a price after every priced one, then by name), each token's
//! full balance, and the ETH that is left once the gas of every transfer of the sweep is
//! reserved at the ceiling (so every rung of every transfer stays payable).
//!
//! It must not do IO: balances, gas, fees and prices are passed in.

use alloy::primitives::{Address, U256};
use rust_decimal::Decimal;

/// One asset the treasury holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// ETH or a token symbol.
    pub asset: String,
    /// None for ETH.
    pub token: Option<Address>,
    pub decimals: u8,
    pub units: U256,
    /// The gas a transfer of it to the rescue address takes (with its margin).
    pub gas: u64,
}

/// One transfer of the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub asset: String,
    pub token: Option<Address>,
    pub units: U256,
    pub gas: u64,
}

/// The USD value of `units` of an asset with `decimals` at `usd` per whole unit, if it has a
/// price (beyond a decimal: the largest).
fn value(units: U256, decimals: u8, usd: Option<Decimal>) -> Option<Decimal> {
    let usd = usd?;
    let amount = crate::amount::from_units(units, decimals).unwrap_or(Decimal::MAX);
    Some(amount.checked_mul(usd).unwrap_or(Decimal::MAX))
}

/// The sweep of `holdings` (ETH's `units` is the balance), the ETH's gas reserved for every
/// transfer at `max_fee` (the ladder's ceiling), in order. `price` gives an asset's USD price.
/// A token with nothing, and ETH that would not cover its reserve, is left out.
pub fn sweep(
    holdings: &[Holding],
    max_fee: u128,
    price: impl Fn(&str) -> Option<Decimal>,
) -> Vec<Sweep> {
    let tokens: Vec<&Holding> = holdings
        .iter()
        .filter(|h| h.token.is_some() && !h.units.is_zero())
        .collect();
    let eth = holdings.iter().find(|h| h.token.is_none());
    let mut out: Vec<(Option<Decimal>, Sweep)> = tokens
        .iter()
        .map(|h| {
            (
                value(h.units, h.decimals, price(&h.asset)),
                Sweep {
                    asset: h.asset.clone(),
                    token: h.token,
                    units: h.units,
                    gas: h.gas,
                },
            )
        })
        .collect();
    if let Some(e) = eth {
        let gas: u64 = tokens
            .iter()
            .map(|h| h.gas)
            .fold(e.gas, |a, g| a.saturating_add(g));
        let reserve = U256::from(gas).saturating_mul(U256::from(max_fee));
        if e.units > reserve {
            let units = e.units - reserve;
            out.push((
                value(units, e.decimals, price(&e.asset)),
                Sweep {
                    asset: e.asset.clone(),
                    token: None,
                    units,
                    gas: e.gas,
                },
            ));
        }
    }
    // Largest value first; unpriced after priced; then by name, for one order everywhere.
    out.sort_by(|(va, a), (vb, b)| {
        vb.is_some()
            .cmp(&va.is_some())
            .then(vb.cmp(va))
            .then(a.asset.cmp(&b.asset))
    });
    out.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(asset: &str, token: Option<u8>, decimals: u8, units: u128, gas: u64) -> Holding {
        Holding {
            asset: asset.into(),
            token: token.map(Address::repeat_byte),
            decimals,
            units: U256::from(units),
            gas,
        }
    }

    const ETH: u128 = 1_000_000_000_000_000_000;

    #[test]
    fn largest_value_first_and_eth_less_the_gas_of_every_transfer_at_the_ceiling() {
        let holdings = [
            h("ETH", None, 18, 2 * ETH, 21_000),
            h("USDC", Some(1), 6, 10_000_000_000, 60_000), // 10,000 USDC
            h("DAI", Some(2), 18, 5 * ETH, 60_000),        // 5 DAI
            h("NONE", Some(3), 18, 0, 60_000),
            h("ODD", Some(4), 0, 7, 60_000), // no price
        ];
        let price = |a: &str| match a {
            "ETH" => Some(Decimal::from(3000)),
            "USDC" | "DAI" => Some(Decimal::ONE),
            _ => None,
        };
        let fee = 100_000_000_000u128; // 100 gwei
        let s = sweep(&holdings, fee, price);
        let order: Vec<&str> = s.iter().map(|s| s.asset.as_str()).collect();
        assert_eq!(order, ["USDC", "ETH", "DAI", "ODD"]);
        let eth = &s[1];
        let reserve = U256::from(21_000u64 + 3 * 60_000) * U256::from(fee);
        assert_eq!(eth.units, U256::from(2 * ETH) - reserve);
        assert_eq!(s[0].units, U256::from(10_000_000_000u64));
    }

    #[test]
    fn eth_that_does_not_cover_its_gas_is_left_and_an_empty_treasury_sweeps_nothing() {
        let fee = 10u128;
        let s = sweep(&[h("ETH", None, 18, 21_000 * 10, 21_000)], fee, |_| None);
        assert!(s.is_empty());
        let s = sweep(&[h("ETH", None, 18, 21_000 * 10 + 1, 21_000)], fee, |_| {
            None
        });
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].units, U256::from(1u8));
        assert!(sweep(&[h("USDC", Some(1), 6, 0, 1)], fee, |_| None).is_empty());
    }
}
