//! `keygate serve`: the gateway, with reconciliation and containment at the venue, until
//! SIGTERM or Ctrl-C; and `keygate doctor`, which asks each venue what its key (and its
//! containment key) may do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keygate_server::VenueSetup;

use keygate_config::Instance;
use keygate_config::setup::{gateway, sinks, tls_config, venues};

use crate::cli::ServeArgs;

pub async fn serve(inst: Instance, args: &ServeArgs) -> Result<()> {
    inst.store.check_writable().await?;
    let engine = keygate_config::engine::build(&inst.config, &inst.paths.base)?;
    let (gw, h) = gateway(inst, engine).await?;
    keygate_server::metrics::install();
    let gw = Arc::new(gw);
    let mut reconcilers = keygate_server::reconcile::spawn(gw.clone());
    reconcilers.extend(keygate_server::containment::spawn(gw.clone()));
    reconcilers.extend(
        keygate_server::transfers::spawn_watchers(gw.clone())
            .await
            .map_err(anyhow::Error::msg)?,
    );
    reconcilers.push(keygate_server::references::spawn(
        gw.clone(),
        keygate_config::setup::reference_poll(&h.config)?,
    ));
    reconcilers.extend(keygate_server::alerts::spawn(
        h.store.clone(),
        gw.http.clone(),
        sinks(&h.config)?,
    ));
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| h.config.server.listen.clone());
    let addr: SocketAddr = listen.parse().with_context(|| {
        format!("server.listen {listen:?} is not an address such as 127.0.0.1:8620")
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another process using it?"))?;
    let local = listener.local_addr()?;
    let app = keygate_server::app(gw.clone())
        .into_make_service_with_connect_info::<keygate_server::Peer>();
    let tls = tls_config(&h.config, &h.paths.base)?;
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(%local, "serving plain HTTP on a non-loopback address: tokens cross the network in clear text; configure server.tls_cert and server.tls_key");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line on stdout says where keygate listens (scripts read it).
    println!("keygate serving on {scheme}://{local}");
    tracing::info!(%local, scheme, venues = gw.venues.len(), "keygate serving");
    let result = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the server stopped"),
        Some(cfg) => axum::serve(keygate_server::tls::Listener::new(listener, cfg), app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the server stopped"),
    };
    for r in reconcilers {
        r.abort();
    }
    h.store.close().await;
    result
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// `keygate doctor`: each venue's key restrictions, as the venue reports them.
pub async fn doctor(inst: Instance) -> Result<()> {
    let venues = venues(&inst.config)?;
    let chains = keygate_config::setup::chains(&inst.config)?;
    if venues.is_empty() && chains.is_empty() {
        bail!("no [venues.*] in the config; nothing to check");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let creds = keygate_server::CredentialCache::new(
        inst.store.clone(),
        inst.master,
        Duration::from_secs(1),
    );
    let mut unsafe_found = 0;
    let mut failed = 0;
    for v in &venues {
        println!(
            "venue {} ({}, {})",
            v.name,
            v.adapter.kind.as_str(),
            v.base_url
        );
        match check_venue(&http, &creds, v).await {
            Ok(findings) => {
                for f in findings {
                    if f.unsafe_ {
                        unsafe_found += 1;
                        println!("  UNSAFE  {}", f.text);
                    } else {
                        println!("  ok      {}", f.text);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("  ERROR   {e}");
            }
        }
    }
    let (unsafe_c, failed_c) = doctor_containment(&inst.config, &http, &creds, &venues).await?;
    unsafe_found += unsafe_c + doctor_rescue(&inst.store, &chains).await?;
    failed += failed_c;
    let listen: Option<SocketAddr> = inst.config.server.listen.parse().ok();
    if listen.is_some_and(|a| !a.ip().is_loopback()) && inst.config.server.tls_cert.is_none() {
        unsafe_found += 1;
        println!(
            "server\n  UNSAFE  server.listen {} is not loopback and no TLS is configured",
            inst.config.server.listen
        );
    }
    inst.store.close().await;
    if unsafe_found > 0 || failed > 0 {
        bail!("{unsafe_found} unsafe setting(s), {failed} venue(s) could not be checked");
    }
    println!("nothing unsafe found");
    Ok(())
}

/// Each EVM venue's rescue: none without `rescue_to` (unsafe: a leaked key drains the
/// treasury), or a `rescue_to` that is not an active address-book entry of the venue (unsafe:
/// keygate will not sweep to it). Returns the unsafe findings.
async fn doctor_rescue(
    store: &keygate_store::Store,
    chains: &[keygate_server::transfers::ChainSetup],
) -> Result<usize> {
    let book = store.destinations().await?;
    let now = store.clock().now();
    let mut unsafe_found = 0;
    for c in chains {
        let name = &c.transfers.venue.name;
        println!("rescue at {name}");
        let finding = match &c.rescue {
            None => Err(format!(
                "[venues.{name}] has no rescue_to: if its key leaks, keygate only freezes, and the key drains the treasury around it (docs/chain.md)"
            )),
            Some(r) => keygate_server::transfers::rescue::rescue_to_status(&book, name, r, now)
                .map(|()| {
                    format!(
                        "rescue_to {:#x} is an active address-book entry; a leaked key's transactions are answered with a sweep there",
                        r.to
                    )
                }),
        };
        match finding {
            Ok(text) => println!("  ok      {text}"),
            Err(text) => {
                unsafe_found += 1;
                println!("  UNSAFE  {text}");
            }
        }
    }
    Ok(unsafe_found)
}

/// Each containment credential's permissions: a containment key that can withdraw, or trade
/// from anywhere, is unsafe, and so is one that lacks what containment needs. Returns the
/// unsafe findings and the venues that could not be checked.
async fn doctor_containment(
    config: &keygate_config::Config,
    http: &reqwest::Client,
    creds: &keygate_server::CredentialCache,
    venues: &[VenueSetup],
) -> Result<(usize, usize)> {
    let Some(c) = keygate_config::containment::containment(config, &[])? else {
        return Ok((0, 0));
    };
    let (mut unsafe_found, mut failed) = (0, 0);
    for s in &c.venues {
        let Some(v) = venues.iter().find(|v| v.name == s.venue) else {
            continue;
        };
        println!(
            "containment at {} (credential {}, sub-account {})",
            s.venue, s.credential, s.sub_account
        );
        let needs = keygate_venues::containment::Needs {
            lock: c.policy.lock.is_some(),
            stop_transfers: c.policy.stop_transfers && v.adapter.can_stop_transfers(),
            sweep: c.policy.sweep,
        };
        let findings = check_key(http, creds, v, &s.credential)
            .await
            .and_then(|body| {
                v.adapter
                    .parse_containment_permissions(&needs, &body)
                    .map_err(anyhow::Error::msg)
            });
        match findings {
            Ok(findings) => {
                for f in findings {
                    if f.unsafe_ {
                        unsafe_found += 1;
                        println!("  UNSAFE  {}", f.text);
                    } else {
                        println!("  ok      {}", f.text);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("  ERROR   {e}");
            }
        }
    }
    Ok((unsafe_found, failed))
}

async fn check_venue(
    http: &reqwest::Client,
    creds: &keygate_server::CredentialCache,
    v: &VenueSetup,
) -> Result<Vec<keygate_venues::Finding>> {
    let body = check_key(http, creds, v, &v.credential).await?;
    v.adapter
        .parse_restrictions(&body)
        .map_err(anyhow::Error::msg)
}

/// The venue's answer to the key-restrictions read signed with `credential`.
async fn check_key(
    http: &reqwest::Client,
    creds: &keygate_server::CredentialCache,
    v: &VenueSetup,
    credential: &str,
) -> Result<Vec<u8>> {
    let secret = creds.get(credential).await.map_err(anyhow::Error::msg)?;
    let keys = keygate_server::keys(&secret, credential).map_err(anyhow::Error::msg)?;

    let out = v.adapter.restrictions(&keys, keygate_server::now_ms());
    drop(secret);
    let req = keygate_server::venue_request(http, &v.base_url, out, v.timeout)
        .map_err(anyhow::Error::msg)?;
    let resp = req.send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach {}: {}",
            v.name,
            keygate_server::send_error(&e)
        )
    })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}'s answer: {}",
            v.name,
            keygate_server::send_error(&e)
        )
    })?;
    if !status.is_success() {
        bail!(
            "{} answered HTTP {status}: {}",
            v.name,
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    Ok(body.to_vec())
}
