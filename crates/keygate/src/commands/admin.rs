//! `keygate client|token|price|address`: the engine's state, changed by admins. Every change is
//! one store transaction together with its audit entry.

use std::io::Read;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use keygate_core::auth::{self, ClientRecord, TokenRecord};
use keygate_core::price::PriceError;
use keygate_core::{Action, Millis};
use rust_decimal::Decimal;
use serde_json::json;

use crate::cli::{
    AddressAddArgs, AddressCommand, ClientAddArgs, ClientCommand, ListArgs, PriceCommand,
    PriceSetArgs, TokenCheckArgs, TokenCommand, TokenIssueArgs, TokenListArgs,
};
use crate::commands::audit_sign::checkpoint_if_due;
use crate::commands::{now_ms, time_text};
use keygate_config::engine::duration;
use keygate_config::instance::StateHandle;

fn actions_text(a: &[Action]) -> String {
    a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}

pub async fn client(h: &StateHandle, actor: &str, cmd: &ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Add(a) => client_add(h, actor, a).await,
        ClientCommand::List(a) => client_list(h, a).await,
        ClientCommand::Disable(n) => {
            let seq = h
                .store
                .set_client_enabled(&n.name, false, actor, now_ms())
                .await?;
            checkpoint_if_due(h).await?;
            println!(
                "Client {} disabled: its tokens stop working on the next request (audit entry {seq})",
                n.name
            );
            Ok(())
        }
        ClientCommand::Enable(n) => {
            let seq = h
                .store
                .set_client_enabled(&n.name, true, actor, now_ms())
                .await?;
            checkpoint_if_due(h).await?;
            println!("Client {} enabled (audit entry {seq})", n.name);
            Ok(())
        }
    }
}

async fn client_add(h: &StateHandle, actor: &str, a: &ClientAddArgs) -> Result<()> {
    let mut venues = a.venues.clone();
    venues.sort();
    venues.dedup();
    let mut actions = a.actions.clone();
    actions.sort();
    actions.dedup();
    let c = ClientRecord {
        name: a.name.clone(),
        venues,
        actions,
        tags: a.tags.clone(),
        enabled: true,
    };
    auth::validate_client(&c).map_err(anyhow::Error::msg)?;
    let seq = h.store.add_client(&c, actor, now_ms()).await?;
    checkpoint_if_due(h).await?;
    println!(
        "Client {} added: venues {}, actions {} (audit entry {seq})",
        c.name,
        c.venues.join(","),
        actions_text(&c.actions)
    );
    println!("Next: keygate token issue {} --cidr ADDRESS/32", c.name);
    Ok(())
}

async fn client_list(h: &StateHandle, a: &ListArgs) -> Result<()> {
    let clients = h.store.clients().await?;
    if a.json {
        for c in &clients {
            println!("{}", serde_json::to_string(c)?);
        }
        return Ok(());
    }
    if clients.is_empty() {
        println!("No clients. Add one with: keygate client add NAME --venue V --action read");
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<24} {:<32} TAGS",
        "NAME", "STATE", "VENUES", "ACTIONS"
    );
    for c in clients {
        println!(
            "{:<20} {:<8} {:<24} {:<32} {}",
            c.name,
            if c.enabled { "enabled" } else { "disabled" },
            c.venues.join(","),
            actions_text(&c.actions),
            c.tags.join(",")
        );
    }
    Ok(())
}

pub async fn token(h: &StateHandle, actor: &str, cmd: &TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Issue(a) if a.native => bail!(
            "--native needs the master key; run it as `keygate token issue --native` (the CLI opens the vault for it)"
        ),
        TokenCommand::Issue(a) => token_issue(h, actor, a, None).await,
        TokenCommand::List(a) => token_list(h, a).await,
        TokenCommand::Revoke(a) => {
            let seq = h.store.revoke_token(&a.id, actor, now_ms()).await?;
            checkpoint_if_due(h).await?;
            println!(
                "Token {} revoked: it stops working on the next request (audit entry {seq})",
                a.id
            );
            Ok(())
        }
        TokenCommand::Check(a) => token_check(h, a).await,
    }
}

/// Issues a bearer token, or with `master` (for `--native`) a native key whose secret is
/// sealed under it.
pub async fn token_issue(
    h: &StateHandle,
    actor: &str,
    a: &TokenIssueArgs,
    master: Option<&keygate_vault::MasterKey>,
) -> Result<()> {
    let client = h.store.client(&a.client).await?.with_context(|| {
        format!(
            "client {} does not exist; see `keygate client list`",
            a.client
        )
    })?;
    if !client.enabled {
        bail!("client {} is disabled; enable it first", client.name);
    }
    let (venues, actions) =
        auth::narrow_scope(&client, &a.venues, &a.actions).map_err(anyhow::Error::msg)?;
    let max = duration("tokens.max_ttl", &h.config.tokens.max_ttl)?;
    let ttl = match &a.ttl {
        Some(t) => duration("--ttl", t)?,
        None => duration("tokens.default_ttl", &h.config.tokens.default_ttl)?,
    };
    if ttl > max {
        bail!(
            "--ttl {} is longer than tokens.max_ttl ({}); short-lived tokens limit what a leaked one can do",
            keygate_core::time::format_duration(ttl),
            h.config.tokens.max_ttl
        );
    }
    let cidr_texts = if a.cidrs.is_empty() {
        &h.config.tokens.default_cidrs
    } else {
        &a.cidrs
    };
    if cidr_texts.is_empty() {
        bail!("a token must be bound to at least one source address: give --cidr ADDRESS/32");
    }
    let cidrs = cidr_texts
        .iter()
        .map(|c| {
            c.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                anyhow::anyhow!("--cidr {c:?} is not an address range; write it like 10.0.0.5/32 or 2001:db8::/64")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(any) = cidrs.iter().find(|n| n.prefix_len() == 0) {
        tracing::warn!(cidr = %any, "the token may be used from any address");
    }
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    keygate_vault::random_bytes(&mut id)?;
    keygate_vault::random_bytes(&mut secret)?;
    let t = auth::new_token(id, secret);
    secret.fill(0);
    let now = now_ms();
    let mut rec = TokenRecord {
        id: t.id.clone(),
        client: client.name.clone(),
        kind: auth::TokenKind::Bearer,
        secret_hash: t.secret_hash,
        venues,
        actions,
        cidrs,
        issued_at: now,
        expires_at: now.saturating_add(ttl),
        revoked_at: None,
    };
    let native = match (a.native, master) {
        (false, _) => None,
        (true, None) => bail!("--native needs the master key"),
        (true, Some(master)) => {
            // 32 random bytes as 64 hex digits (the shape of a Binance secret), and a 32-digit
            // passphrase for OKX. The bearer hash stays that of a secret never shown, so
            // nothing can present this key as a bearer token.
            let mut s = zeroize::Zeroizing::new([0u8; 32]);
            let mut p = zeroize::Zeroizing::new([0u8; 16]);
            keygate_vault::random_bytes(s.as_mut())?;
            keygate_vault::random_bytes(p.as_mut())?;
            let secret = keygate_vault::SecretString::new(hex::encode(s.as_ref()));
            let passphrase = keygate_vault::SecretString::new(hex::encode(p.as_ref()));
            let sealed = keygate_server::native::seal(
                master,
                &rec.id,
                &rec.client,
                secret.clone(),
                passphrase.clone(),
            )
            .map_err(anyhow::Error::msg)?;
            rec.kind = auth::TokenKind::Native;
            Some((sealed, secret, passphrase))
        }
    };
    let seq = match &native {
        None => h.store.insert_token(&rec, actor).await?,
        Some((sealed, _, _)) => h.store.insert_native_key(&rec, sealed, actor).await?,
    };
    checkpoint_if_due(h).await?;
    eprintln!(
        "{} {} for {}: venues {}, actions {}, from {}, expires {} (audit entry {seq}). It is shown once:",
        if native.is_some() {
            "Native API key"
        } else {
            "Token"
        },
        rec.id,
        rec.client,
        rec.venues.join(","),
        actions_text(&rec.actions),
        cidr_texts.join(","),
        time_text(rec.expires_at)
    );
    match &native {
        None => println!("{}", t.text.as_str()),
        Some((_, secret, passphrase)) => {
            println!("KEYGATE_API_KEY={}", rec.id);
            println!("KEYGATE_API_SECRET={}", secret.expose());
            println!("KEYGATE_API_PASSPHRASE={}", passphrase.expose());
        }
    }
    Ok(())
}

async fn token_list(h: &StateHandle, a: &TokenListArgs) -> Result<()> {
    let tokens = h.store.tokens(a.client.as_deref()).await?;
    let now = now_ms();
    if a.json {
        for t in &tokens {
            println!("{}", serde_json::to_string(t)?);
        }
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<6} {:<8} {:<20} {:<22} {:<20} FROM",
        "ID", "CLIENT", "KIND", "STATE", "EXPIRES", "VENUES", "ACTIONS"
    );
    for t in tokens {
        let state = if t.revoked_ms.is_some() {
            "revoked"
        } else if now >= t.expires_ms {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<16} {:<16} {:<6} {:<8} {:<20} {:<22} {:<20} {}",
            t.id,
            t.client,
            t.kind.as_str(),
            state,
            time_text(t.expires_ms),
            t.venues.join(","),
            actions_text(&t.actions),
            t.cidrs.join(",")
        );
    }
    Ok(())
}

/// Authenticates a token from stdin as a request would, and audits a failure.
async fn token_check(h: &StateHandle, a: &TokenCheckArgs) -> Result<()> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .context("cannot read the token from stdin")?;
    let now = now_ms();
    let result = match auth::parse_token(&text) {
        Err(e) => Err(e),
        Ok(p) => {
            let (t, c) = h.store.token_with_client(&p.id).await?;
            auth::authenticate(&p, t.as_ref(), c.as_ref(), a.ip, &a.venue, a.action, now)
        }
    };
    drop(text);
    match result {
        Ok(()) => {
            println!(
                "ok: the token may {} on {} from {}",
                a.action, a.venue, a.ip
            );
            Ok(())
        }
        Err(e) => {
            let seq = record_auth_failure(h, &e, a.ip, &a.venue, a.action, now).await?;
            bail!("{e} (audit entry {seq})")
        }
    }
}

/// Records a refused token in the audit log.
pub async fn record_auth_failure(
    h: &StateHandle,
    e: &auth::AuthError,
    ip: std::net::IpAddr,
    venue: &str,
    action: Action,
    now: Millis,
) -> Result<i64> {
    let seqs = h
        .store
        .append_audit(vec![keygate_store::decider::auth_failure_entry(
            e,
            ip,
            venue,
            Some(action),
            None,
            now,
        )])
        .await?;
    checkpoint_if_due(h).await?;
    Ok(seqs.first().copied().unwrap_or_default())
}

pub async fn price(h: &StateHandle, actor: &str, cmd: &PriceCommand) -> Result<()> {
    match cmd {
        PriceCommand::Set(a) => price_set(h, actor, a).await,
        PriceCommand::List(a) => price_list(h, a).await,
    }
}

async fn price_set(h: &StateHandle, actor: &str, a: &PriceSetArgs) -> Result<()> {
    if !keygate_core::intent::valid_name(&a.asset) {
        bail!("asset {:?} is not a valid symbol", a.asset);
    }
    let usd: Decimal = a.usd.parse().map_err(|_| {
        anyhow::anyhow!(
            "{:?} is not a price; write USD per unit as a decimal, such as 43000.50",
            a.usd
        )
    })?;
    if usd <= Decimal::ZERO {
        bail!("a price must be positive");
    }
    if h.config.prices.pinned.contains_key(&a.asset) {
        bail!(
            "{} is pinned in [prices.pinned] of the config, which wins over observed prices; change it there",
            a.asset
        );
    }
    let seq = h.store.set_price(&a.asset, usd, actor, now_ms()).await?;
    checkpoint_if_due(h).await?;
    println!(
        "{} = {usd} USD, observed now; fresh for {} (audit entry {seq})",
        a.asset, h.config.prices.max_age
    );
    Ok(())
}

async fn price_list(h: &StateHandle, a: &ListArgs) -> Result<()> {
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
    let now = now_ms();
    let mut rows: Vec<_> = table.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    for (asset, p) in rows {
        let state = match table.fresh(asset, now) {
            Ok(_) if p.as_of.is_none() => "pinned".to_string(),
            Ok(_) => "fresh".to_string(),
            Err(PriceError::Stale { .. }) => "STALE".to_string(),
            Err(e) => e.to_string(),
        };
        if a.json {
            println!(
                "{}",
                json!({"asset": asset, "usd": p.usd, "as_of_ms": p.as_of, "state": state})
            );
        } else {
            println!(
                "{:<10} {:>18} {:<8} {}",
                asset,
                p.usd.to_string(),
                state,
                p.as_of.map(time_text).unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub async fn address(h: &StateHandle, actor: &str, cmd: &AddressCommand) -> Result<()> {
    match cmd {
        AddressCommand::Add(a) => address_add(h, actor, a).await,
        AddressCommand::Approve(a) => {
            let d = h.store.approve_destination(a.id, actor, now_ms()).await?;
            checkpoint_if_due(h).await?;
            println!(
                "Entry {} ({} {} {}) approved; usable from {}",
                d.id,
                d.venue,
                d.asset,
                d.address,
                time_text(d.usable_from)
            );
            Ok(())
        }
        AddressCommand::Remove(a) => {
            let seq = h.store.remove_destination(a.id, actor, now_ms()).await?;
            checkpoint_if_due(h).await?;
            println!("Entry {} removed (audit entry {seq})", a.id);
            Ok(())
        }
        AddressCommand::List(a) => {
            let now = now_ms();
            let book = h.store.destinations().await?;
            for d in book {
                if a.json {
                    let mut v = serde_json::to_value(&d)?;
                    v["status"] = json!(d.status(now));
                    println!("{v}");
                } else {
                    println!(
                        "{:<5} {:<12} {:<8} {:<44} {:<18} {:<17} {}",
                        d.id,
                        d.venue,
                        d.asset,
                        d.address,
                        d.status(now),
                        d.label,
                        time_text(d.usable_from)
                    );
                }
            }
            Ok(())
        }
    }
}

async fn address_add(h: &StateHandle, actor: &str, a: &AddressAddArgs) -> Result<()> {
    for (what, v) in [("venue", &a.venue), ("asset", &a.asset)] {
        if !keygate_core::intent::valid_name(v) {
            bail!("{what} {v:?} is not a valid name");
        }
    }
    let address = a.address.trim();
    if address.is_empty()
        || address.len() > 128
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "address {:?} is not valid: 1-128 characters without spaces",
            a.address
        );
    }
    if a.label.trim().is_empty() || a.label.len() > 64 {
        bail!("--label must be 1-64 characters");
    }
    let floor = duration("address_book.cooldown", &h.config.address_book.cooldown)?;
    let cooldown = match &a.cooldown {
        Some(c) => duration("--cooldown", c)?,
        None => floor,
    };
    if cooldown < floor {
        bail!(
            "--cooldown {} is shorter than address_book.cooldown ({}); it may only lengthen it",
            keygate_core::time::format_duration(cooldown),
            h.config.address_book.cooldown
        );
    }
    let d = h
        .store
        .add_destination(
            &a.venue,
            &a.asset,
            address,
            a.label.trim(),
            cooldown,
            actor,
            now_ms(),
        )
        .await?;
    checkpoint_if_due(h).await?;
    println!(
        "Entry {} added: {} {} {} ({}). Usable from {} once another admin runs: keygate address approve {}",
        d.id,
        d.venue,
        d.asset,
        d.address,
        d.label,
        time_text(d.usable_from),
        d.id
    );
    Ok(())
}
