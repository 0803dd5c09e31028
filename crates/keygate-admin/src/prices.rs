//! Observed asset prices in USD: set one (audited), list all with whether each is fresh.

use keygate_config::StateHandle;
use keygate_config::engine::duration;
use keygate_core::Millis;
use keygate_core::price::PriceError;
use rust_decimal::Decimal;

use crate::checkpoint::checkpoint_if_due;
use crate::error::{AdminError, Result, bail};

/// Records `asset`'s price (`usd` per unit, a decimal), observed `now`; returns the audit entry.
pub async fn set_price(
    h: &StateHandle,
    actor: &str,
    asset: &str,
    usd: &str,
    now: Millis,
) -> Result<(Decimal, i64)> {
    if !keygate_core::intent::valid_name(asset) {
        bail!("asset {asset:?} is not a valid symbol");
    }
    let usd: Decimal = usd.parse().map_err(|_| {
        AdminError::Invalid(format!(
            "{usd:?} is not a price; write USD per unit as a decimal, such as 43000.50"
        ))
    })?;
    if usd <= Decimal::ZERO {
        bail!("a price must be positive");
    }
    if h.config.prices.pinned.contains_key(asset) {
        bail!(
            "{asset} is pinned in [prices.pinned] of the config, which wins over observed prices; change it there"
        );
    }
    let seq = h.store.set_price(asset, usd, actor, now).await?;
    checkpoint_if_due(h).await;
    Ok((usd, seq))
}

/// A price as the engine would see it now.
#[derive(Debug, Clone)]
pub struct PriceView {
    pub asset: String,
    pub usd: Decimal,
    /// When it was observed; `None` for a pinned price.
    pub as_of: Option<Millis>,
    /// pinned, fresh, STALE, or why it cannot be used.
    pub state: String,
}

/// Pinned and observed prices, by asset, each with whether it is fresh at `now`.
pub async fn prices(h: &StateHandle, now: Millis) -> Result<Vec<PriceView>> {
    let max_age = duration("prices.max_age", &h.config.prices.max_age)?;
    let mut table = keygate_core::price::PriceTable::new(max_age);
    for (asset, usd) in &h.config.prices.pinned {
        if let Ok(d) = usd.parse() {
            table.pin(asset, d);
        }
    }
    for p in h.store.prices().await? {
        table.observe(&p.asset, p.usd, p.as_of_ms);
    }
    let mut rows: Vec<_> = table.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    Ok(rows
        .into_iter()
        .map(|(asset, p)| PriceView {
            asset: asset.to_string(),
            usd: p.usd,
            as_of: p.as_of,
            state: match table.fresh(asset, now) {
                Ok(_) if p.as_of.is_none() => "pinned".to_string(),
                Ok(_) => "fresh".to_string(),
                Err(PriceError::Stale { .. }) => "STALE".to_string(),
                Err(e) => e.to_string(),
            },
        })
        .collect())
}
