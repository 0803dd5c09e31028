//! Decimal token amounts to integer units and back, exactly: never through a float, and never
//! silently rounding (an amount with more decimals than the token has is refused).

use alloy::primitives::U256;
use rust_decimal::Decimal;

/// Why an amount cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount {0} is not positive")]
    NotPositive(Decimal),
    #[error("the amount {amount} has more decimals than the asset's {decimals}")]
    TooPrecise { amount: Decimal, decimals: u8 },
    #[error("the amount {0} is too large")]
    TooLarge(Decimal),
}

/// `amount` in the asset's smallest units (`amount * 10^decimals`), exactly.
pub fn to_units(amount: Decimal, decimals: u8) -> Result<U256, AmountError> {
    if amount <= Decimal::ZERO {
        return Err(AmountError::NotPositive(amount));
    }
    let normal = amount.normalize();
    let scale = normal.scale();
    if scale > u32::from(decimals) {
        return Err(AmountError::TooPrecise { amount, decimals });
    }
    // normal = mantissa * 10^-scale, mantissa < 2^96: units = mantissa * 10^(decimals - scale).
    let mantissa = U256::from(normal.mantissa().unsigned_abs());
    let exp = U256::from(u32::from(decimals) - scale);
    let factor = U256::from(10u8)
        .checked_pow(exp)
        .ok_or(AmountError::TooLarge(amount))?;
    mantissa
        .checked_mul(factor)
        .ok_or(AmountError::TooLarge(amount))
}

/// `units` of an asset with `decimals`, as a decimal; None when it does not fit one (beyond
/// about 7.9e28 in the smallest unit's mantissa, such as an "unlimited" ERC-20 allowance).
pub fn from_units(units: U256, decimals: u8) -> Option<Decimal> {
    let m: u128 = units.try_into().ok()?;
    if m >= 1u128 << 96 || decimals > 28 {
        return None;
    }
    let m = i128::try_from(m).ok()?;
    Some(Decimal::from_i128_with_scale(m, u32::from(decimals)).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn converts_exactly_both_ways() {
        assert_eq!(to_units(d("1.5"), 6).unwrap(), U256::from(1_500_000u64));
        assert_eq!(to_units(d("72"), 6).unwrap(), U256::from(72_000_000u64));
        assert_eq!(to_units(d("0.000001"), 6).unwrap(), U256::from(1u64));
        assert_eq!(
            to_units(d("1.500000"), 6).unwrap(),
            U256::from(1_500_000u64)
        );
        assert_eq!(
            to_units(d("1.000000000000000001"), 18).unwrap(),
            U256::from(1_000_000_000_000_000_001u128)
        );
        assert_eq!(from_units(U256::from(1_500_000u64), 6), Some(d("1.5")));
        assert_eq!(
            from_units(U256::from(1u64), 18),
            Some(d("0.000000000000000001"))
        );
        assert_eq!(from_units(U256::MAX, 6), None);
        for s in ["0.1", "123.456789", "99999999999.999999"] {
            assert_eq!(from_units(to_units(d(s), 6).unwrap(), 6), Some(d(s)));
        }
    }

    #[test]
    fn refuses_what_would_round() {
        assert!(matches!(
            to_units(d("0.0000001"), 6),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            to_units(d("0"), 6),
            Err(AmountError::NotPositive(_))
        ));
        assert!(matches!(
            to_units(d("-1"), 6),
            Err(AmountError::NotPositive(_))
        ));
        assert!(to_units(d("1.5"), 0).is_err());
        assert_eq!(to_units(d("2"), 0).unwrap(), U256::from(2u8));
    }
}
