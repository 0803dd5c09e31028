//! The set-up the config describes: venues (exchange adapters), EVM chains, alert sinks, the
//! decider with its checkpoint signer, the gateway with every credential checked, and TLS.
//! Everything is checked before anything starts; an error names the field. It must not know
//! how the gateway is served (listening, signals) nor print.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keygate_server::{Gateway, VenueSetup};
use keygate_store::{Decider, DeciderOptions};
use keygate_venues::{Adapter, AdapterOptions};

use crate::audit_sign::{self, KeySigner};
use crate::engine::duration;
use crate::error::{Context, Result, bail, invalid, msg};
use crate::instance::{Instance, StateHandle};
use crate::{Config, resolve_path};

/// A duration field of the config as a `std::time::Duration` (negative: zero).
pub fn std_duration(field: &str, text: &str) -> Result<Duration> {
    Ok(Duration::from_millis(duration(field, text)?.max(0) as u64))
}

/// Whether a base URL may carry API keys: HTTPS anywhere, plain HTTP to loopback only.
fn check_base_url(what: &str, url: &str) -> Result<String> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("{what} {url:?} is not a URL"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => bail!(
            "{what} {url:?} must be https:// (plain http:// only to a loopback address): what keygate sends there must not cross the network in clear text"
        ),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        bail!("{what} {url:?} must not have a query or fragment");
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn recv_window(venue: &str, text: &str) -> Result<u64> {
    let ms = duration(&format!("venues.{venue}.recv_window"), text)?;
    if !(1..=60_000).contains(&ms) {
        bail!(
            "[venues.{venue}] recv_window {text:?} must be between 1ms and 60s (Binance's limit)"
        );
    }
    Ok(ms as u64)
}

/// The venues of the config, checked.
pub fn venues(config: &Config) -> Result<Vec<VenueSetup>> {
    let mut out = vec![];
    for (name, v) in &config.venues {
        if !keygate_core::intent::valid_name(name) {
            bail!("[venues.{name}]: a venue name is 1-64 letters, digits, . _ - :");
        }
        let Some(kind) = v.kind.exchange() else {
            continue;
        };
        if v.rpc_url.is_some()
            || v.chain_id.is_some()
            || !v.tokens.is_empty()
            || v.rescue_to.is_some()
            || !v.rescue_rpc_urls.is_empty()
        {
            bail!(
                "[venues.{name}] is a {} venue: rpc_url, chain_id, tokens, rescue_to and rescue_rpc_urls belong to kind = \"evm\" venues",
                kind.as_str()
            );
        }
        let Some(base_url) = &v.base_url else {
            bail!("[venues.{name}] needs base_url, the venue's REST base URL");
        };
        let mut options = AdapterOptions {
            extra_read_paths: v.extra_read_paths.clone(),
            recv_window_ms: recv_window(name, &v.recv_window)?,
            ..AdapterOptions::default()
        };
        if let Some(q) = &v.quote_assets {
            if q.is_empty() {
                bail!("[venues.{name}] quote_assets is empty; leave it out for the built-in list");
            }
            options.quote_assets = q.iter().map(|s| s.to_ascii_uppercase()).collect();
        }
        for p in &v.extra_read_paths {
            if !p.starts_with('/') || p.contains("..") || p.contains('?') {
                bail!(
                    "[venues.{name}] extra_read_paths entry {p:?} must be a plain path starting with /"
                );
            }
        }
        let reconcile_every = match v.reconcile_every.as_str() {
            "off" => None,
            t => Some(std_duration(&format!("venues.{name}.reconcile_every"), t)?),
        };
        let credential = v.credential.clone().unwrap_or_else(|| name.clone());
        let contain = crate::engine::contain(config)?.scope_with(name, &credential);
        out.push(VenueSetup {
            name: name.clone(),
            adapter: Adapter::new(kind, options),
            base_url: check_base_url(&format!("[venues.{name}] base_url"), base_url)?,
            credential,
            contain,
            timeout: std_duration(&format!("venues.{name}.timeout"), &v.timeout)?,
            reconcile_every,
            reconcile_lookback: std_duration(
                &format!("venues.{name}.reconcile_lookback"),
                &v.reconcile_lookback,
            )?,
            anonymous_public: v.anonymous_public,
            anonymous_rate: v.anonymous_rate,
        });
    }
    Ok(out)
}

/// The EVM venues of the config, checked.
pub fn chains(config: &Config) -> Result<Vec<keygate_server::transfers::ChainSetup>> {
    let mut out = vec![];
    for (name, v) in &config.venues {
        if v.kind != crate::VenueKindConfig::Evm {
            continue;
        }
        if !keygate_core::intent::valid_name(name) {
            bail!("[venues.{name}]: a venue name is 1-64 letters, digits, . _ - :");
        }
        if v.base_url.is_some() {
            bail!(
                "[venues.{name}] is an evm venue: give rpc_url (the node's JSON-RPC URL), not base_url"
            );
        }
        let Some(rpc_url) = &v.rpc_url else {
            bail!("[venues.{name}] needs rpc_url, the node's JSON-RPC URL");
        };
        let Some(chain_id) = v.chain_id else {
            bail!(
                "[venues.{name}] needs chain_id (1 for Ethereum mainnet); keygate checks it against the node's"
            );
        };
        let mut tokens = std::collections::BTreeMap::new();
        for (symbol, t) in &v.tokens {
            if !keygate_core::intent::valid_name(symbol) || symbol == keygate_chain::NATIVE {
                bail!(
                    "[venues.{name}.tokens] {symbol:?} must be a symbol (letters, digits, . _ - :) other than ETH, the native asset"
                );
            }
            let contract = keygate_chain::parse_address(&t.contract).with_context(|| {
                format!("[venues.{name}.tokens] {symbol}: contract {:?} is not an address (0x and 40 hex digits)", t.contract)
            })?;
            if t.decimals > 28 {
                bail!(
                    "[venues.{name}.tokens] {symbol}: decimals {} is more than keygate's amounts hold (28)",
                    t.decimals
                );
            }
            tokens.insert(
                symbol.clone(),
                keygate_chain::Token {
                    contract,
                    decimals: t.decimals,
                },
            );
        }
        let poll = std_duration(&format!("venues.{name}.poll"), &v.poll)?;
        if poll < Duration::from_millis(10) {
            bail!("[venues.{name}] poll {:?} is below 10ms", v.poll);
        }
        let credential = v.credential.clone().unwrap_or_else(|| name.clone());
        let contain = crate::engine::contain(config)?.scope_with(name, &credential);
        let venue = keygate_chain::EvmVenue {
            name: name.clone(),
            rpc_url: check_base_url(&format!("[venues.{name}] rpc_url"), rpc_url)?,
            chain_id,
            credential,
            confirmations: v.confirmations,
            poll,
            reorg_depth: v.reorg_depth.clamp(1, 10_000),
            tokens,
            timeout: std_duration(&format!("venues.{name}.timeout"), &v.timeout)?,
        };
        out.push(keygate_server::transfers::ChainSetup {
            rescue: rescue(name, v)?,
            transfers: keygate_chain::transfer::Transfers::new(venue).map_err(msg)?,
            contain,
        });
    }
    Ok(out)
}

/// An EVM venue's rescue set-up: `rescue_to` (an address; that it is an active address-book
/// entry is checked against the store when the rescue starts) and its extra endpoints.
fn rescue(
    name: &str,
    v: &crate::VenueConfig,
) -> Result<Option<keygate_chain::rescue::RescueSetup>> {
    let Some(to) = &v.rescue_to else {
        if !v.rescue_rpc_urls.is_empty() {
            bail!(
                "[venues.{name}] rescue_rpc_urls needs rescue_to, the address a rescue sweeps to"
            );
        }
        return Ok(None);
    };
    let to = keygate_chain::parse_address(to).with_context(|| {
        format!("[venues.{name}] rescue_to {to:?} is not an address (0x and 40 hex digits)")
    })?;
    if to.is_zero() {
        bail!(
            "[venues.{name}] rescue_to is the zero address; give the cold address a rescue sweeps to"
        );
    }
    let endpoints = v
        .rescue_rpc_urls
        .iter()
        .map(|u| check_base_url(&format!("[venues.{name}] rescue_rpc_urls"), u))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(keygate_chain::rescue::RescueSetup { to, endpoints }))
}

/// The webhook alert sinks of the config, with their secrets from the environment.
pub fn sinks(config: &Config) -> Result<Vec<keygate_server::alerts::Sink>> {
    use keygate_server::alerts::{Format, Sink};
    let mut out: Vec<Sink> = vec![];
    for w in &config.alerts.webhooks {
        if !keygate_core::intent::valid_name(&w.name) || out.iter().any(|s| s.name == w.name) {
            bail!(
                "[[alerts.webhooks]] name {:?} must be a unique name (letters, digits, . _ - :)",
                w.name
            );
        }
        let url = check_base_url(&format!("[[alerts.webhooks]] {} url", w.name), &w.url)?;
        let format = match w.format.as_str() {
            "json" => Format::Json,
            "slack" => Format::Slack,
            other => bail!(
                "[[alerts.webhooks]] {}: format {other:?} is not json or slack",
                w.name
            ),
        };
        let secret = match (&w.secret_env, format) {
            (Some(var), _) => Some(zeroize::Zeroizing::new(std::env::var(var).map_err(|_| {
                invalid!(
                    "[[alerts.webhooks]] {}: the environment variable {var} (its HMAC secret) is not set",
                    w.name
                )
            })?)),
            (None, Format::Json) => bail!(
                "[[alerts.webhooks]] {}: a json webhook is signed; set secret_env to the environment variable that holds its secret",
                w.name
            ),
            (None, Format::Slack) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!(
                "[[alerts.webhooks]] {}: the HMAC secret must be at least 16 characters",
                w.name
            );
        }
        out.push(Sink {
            name: w.name.clone(),
            url,
            format,
            secret,
            max_backoff: std_duration(
                &format!("alerts.webhooks {} max_backoff", w.name),
                &w.max_backoff,
            )?,
        });
    }
    Ok(out)
}

/// Checks that every venue's credential is in the vault, of the right kind, and opens.
async fn check_credentials(gw: &Gateway) -> Result<()> {
    for v in gw.venues.values() {
        let kind = v.adapter.kind.credential_kind();
        let venue_kind = format!("a {}", v.adapter.kind.as_str());
        in_vault(gw, &v.name, &v.credential, kind, &venue_kind, true).await?;
        gw.credentials.get(&v.credential).await.map_err(msg)?;
    }
    if let Some(c) = &gw.containment {
        for s in &c.venues {
            let Some(v) = gw.venues.get(&s.venue) else {
                continue;
            };
            let kind = v.adapter.kind.credential_kind();
            let venue_kind = format!("a {}", v.adapter.kind.as_str());
            in_vault(gw, &s.venue, &s.credential, kind, &venue_kind, false)
                .await
                .with_context(|| {
                    format!(
                        "[venues.{}] containment_credential: the master account's containment key",
                        s.venue
                    )
                })?;
            gw.credentials.get(&s.credential).await.map_err(msg)?;
        }
    }
    for c in gw.chains.values() {
        let v = &c.transfers.venue;
        in_vault(gw, &v.name, &v.credential, "evm-key", "an evm", false).await?;
        keygate_server::transfers::treasury(gw, c)
            .await
            .map_err(msg)?;
    }
    Ok(())
}

/// Checks that `venue`'s `credential` is active in the vault and of `kind` (`venue_kind` says
/// what the venue is, with its article; `id_hint` adds how to point the venue elsewhere).
async fn in_vault(
    gw: &Gateway,
    venue: &str,
    credential: &str,
    kind: &str,
    venue_kind: &str,
    id_hint: bool,
) -> Result<()> {
    let row = gw
        .store
        .active_credential(credential)
        .await?
        .with_context(|| {
            let hint = if id_hint {
                format!(" (or set credential = \"<id>\" in [venues.{venue}])")
            } else {
                String::new()
            };
            format!(
                "venue {venue} signs with credential {credential:?}, which is not in the vault; add it with `keygate credential add --id {credential} --venue {venue} --kind {kind}`{hint}"
            )
        })?;
    if row.kind != kind {
        bail!(
            "venue {venue} is {venue_kind} venue, but credential {credential} is a {} credential",
            row.kind
        );
    }
    Ok(())
}

/// Starts the decider with the instance's checkpoint signer and export.
fn decider(h: &StateHandle, engine: keygate_core::Engine) -> Result<Decider> {
    let signer = KeySigner(h.audit_key()?);
    let export = h.export_file();
    let on_checkpoint: Option<keygate_store::decider::CheckpointHook> = export.map(|path| {
        let hook: keygate_store::decider::CheckpointHook = Arc::new(move |cp| {
            if let Err(e) = audit_sign::export(&path, cp) {
                tracing::error!(error = %crate::chain(&e), "a checkpoint could not be exported");
            }
        });
        hook
    });
    Ok(Decider::start(
        h.store.clone(),
        Arc::new(engine),
        DeciderOptions {
            signer: Some(Arc::new(signer)),
            checkpoints: audit_sign::policy(h)?,
            on_checkpoint,
            hold_ttl: Some(duration(
                "approvals.hold_ttl",
                &h.config.approvals.hold_ttl,
            )?),
        },
    ))
}

/// The gateway `serve` runs (and the gateway replay, on its simulated clock): the decider,
/// the venues, and every venue credential checked to open.
pub async fn gateway(
    inst: Instance,
    engine: keygate_core::Engine,
) -> Result<(Gateway, StateHandle)> {
    let Instance {
        config,
        paths,
        store,
        master,
    } = inst;
    let venues = venues(&config)?;
    let chains = chains(&config)?;
    if venues.is_empty() && chains.is_empty() {
        tracing::warn!("no [venues.*] in the config: every venue request will be refused");
    }
    let ttl = std_duration("server.credential_ttl", &config.server.credential_ttl)?;
    let containment = crate::containment::containment(&config, &engine.pinned)?;
    let h = StateHandle {
        config,
        paths,
        store,
    };
    let decider = decider(&h, engine)?;
    let mut gw = Gateway::new(decider, h.store.clone(), master, venues, ttl)
        .map_err(msg)?
        .with_chains(chains)
        .with_reference_refresh(reference_poll(&h.config)?);
    if let Some(c) = containment {
        gw = gw.with_containment(c);
    }
    check_credentials(&gw).await?;
    Ok((gw, h))
}

/// How often the instruments' books are read (`trading.reference_poll`).
pub fn reference_poll(config: &Config) -> Result<std::time::Duration> {
    std_duration("trading.reference_poll", &config.trading.reference_poll)
}

/// The TLS server config `server.tls_cert` and `server.tls_key` name, if both are set.
pub fn tls_config(
    config: &Config,
    base: &Path,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
    let (cert, key) = match (&config.server.tls_cert, &config.server.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (resolve_path(c, base), resolve_path(k, base)),
        _ => bail!("server.tls_cert and server.tls_key go together: set both or neither"),
    };
    use rustls_pemfile::{certs, private_key};
    let certs = certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert).with_context(|| format!("cannot read {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    // The TLS private key is kept like keygate's other keys: readable by its owner only.
    keygate_vault::check_key_file_permissions(&key)?;
    let key = private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key).with_context(|| format!("cannot read {}", key.display()))?,
    ))
    .with_context(|| format!("{} is not a PEM private key", key.display()))?
    .with_context(|| format!("{} holds no private key", key.display()))?;
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS set-up failed")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not go together")?;
    Ok(Some(Arc::new(cfg)))
}
