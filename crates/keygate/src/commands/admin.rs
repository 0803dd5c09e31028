//! `keygate client|token|price|address`: parse, call [`keygate_admin`], print. The rules (and
//! the token check) live in keygate-admin.

use std::io::Read;

use anyhow::{Context, Result, bail};
use keygate_admin::tokens::{IssuedSecret, IssuedToken, TokenCheck, TokenRequest};
use keygate_admin::{addresses, clients, prices, tokens};
use keygate_config::StateHandle;
use keygate_core::Action;
use serde_json::json;

use crate::cli::{
    AddressAddArgs, AddressCommand, ClientCommand, ListArgs, PriceCommand, TokenCheckArgs,
    TokenCommand, TokenIssueArgs, TokenListArgs,
};
use crate::commands::{now_ms, time_text};

fn instruments_text(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(",")
    }
}

fn actions_text(a: &[Action]) -> String {
    a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}

pub async fn client(h: &StateHandle, actor: &str, cmd: &ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Add(a) => {
            let added = clients::add_client(
                h,
                actor,
                clients::NewClient {
                    name: a.name.clone(),
                    venues: a.venues.clone(),
                    actions: a.actions.clone(),
                    tags: a.tags.clone(),
                    instruments: a.instruments.clone(),
                },
                now_ms(),
            )
            .await?;
            let c = &added.client;
            println!(
                "Client {} added: venues {}, actions {}, instruments {} (audit entry {})",
                c.name,
                c.venues.join(","),
                actions_text(&c.actions),
                instruments_text(&c.instruments),
                added.seq
            );
            println!("Next: keygate token issue {} --cidr ADDRESS/32", c.name);
            Ok(())
        }
        ClientCommand::List(a) => client_list(h, a).await,
        ClientCommand::Disable(n) => {
            let seq = clients::set_client_enabled(h, actor, &n.name, false, now_ms()).await?;
            println!(
                "Client {} disabled: its tokens stop working on the next request (audit entry {seq})",
                n.name
            );
            Ok(())
        }
        ClientCommand::Instruments(a) => {
            let (list, seq) =
                clients::set_client_instruments(h, actor, &a.name, a.instruments.clone(), now_ms())
                    .await?;
            println!(
                "Client {} may trade: {} (audit entry {seq})",
                a.name,
                instruments_text(&list)
            );
            Ok(())
        }
        ClientCommand::Enable(n) => {
            let seq = clients::set_client_enabled(h, actor, &n.name, true, now_ms()).await?;
            println!("Client {} enabled (audit entry {seq})", n.name);
            Ok(())
        }
    }
}

async fn client_list(h: &StateHandle, a: &ListArgs) -> Result<()> {
    let clients = clients::clients(h).await?;
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
        "{:<20} {:<8} {:<24} {:<32} {:<24} TAGS",
        "NAME", "STATE", "VENUES", "ACTIONS", "INSTRUMENTS"
    );
    for c in clients {
        println!(
            "{:<20} {:<8} {:<24} {:<32} {:<24} {}",
            c.name,
            if c.enabled { "enabled" } else { "disabled" },
            c.venues.join(","),
            actions_text(&c.actions),
            instruments_text(&c.instruments),
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
            let seq = tokens::revoke_token(h, actor, &a.id, now_ms()).await?;
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
/// sealed under it; prints it once.
pub async fn token_issue(
    h: &StateHandle,
    actor: &str,
    a: &TokenIssueArgs,
    master: Option<&keygate_vault::MasterKey>,
) -> Result<()> {
    let req = TokenRequest {
        client: a.client.clone(),
        ttl: a.ttl.clone(),
        cidrs: a.cidrs.clone(),
        venues: a.venues.clone(),
        actions: a.actions.clone(),
    };
    let native = match (a.native, master) {
        (false, _) => None,
        (true, None) => return Err(keygate_admin::AdminError::NativeNeedsMasterKey.into()),
        (true, Some(m)) => Some(m),
    };
    let issued = tokens::issue_token(h, actor, &req, native, now_ms()).await?;
    print_issued(&issued);
    Ok(())
}

/// The token's description on stderr, then its secret on stdout (scripts read it).
fn print_issued(t: &IssuedToken) {
    let rec = &t.record;
    eprintln!(
        "{} {} for {}: venues {}, actions {}, from {}, expires {} (audit entry {}). It is shown once:",
        match t.secret {
            IssuedSecret::Native { .. } => "Native API key",
            IssuedSecret::Bearer(_) => "Token",
        },
        rec.id,
        rec.client,
        rec.venues.join(","),
        actions_text(&rec.actions),
        t.from.join(","),
        time_text(rec.expires_at),
        t.seq
    );
    match &t.secret {
        IssuedSecret::Bearer(text) => println!("{}", text.as_str()),
        IssuedSecret::Native { secret, passphrase } => {
            println!("KEYGATE_API_KEY={}", rec.id);
            println!("KEYGATE_API_SECRET={}", secret.expose());
            println!("KEYGATE_API_PASSPHRASE={}", passphrase.expose());
        }
    }
}

async fn token_list(h: &StateHandle, a: &TokenListArgs) -> Result<()> {
    let tokens = tokens::tokens(h, a.client.as_deref()).await?;
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

/// Reads a token from stdin and checks it as a request would (keygate_admin::tokens); a
/// refusal is audited there.
async fn token_check(h: &StateHandle, a: &TokenCheckArgs) -> Result<()> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .context("cannot read the token from stdin")?;
    let check = TokenCheck {
        text: &text,
        ip: a.ip,
        venue: &a.venue,
        action: a.action,
    };
    tokens::check_token(h, &check, now_ms()).await?;
    drop(text);
    println!(
        "ok: the token may {} on {} from {}",
        a.action, a.venue, a.ip
    );
    Ok(())
}

pub async fn price(h: &StateHandle, actor: &str, cmd: &PriceCommand) -> Result<()> {
    match cmd {
        PriceCommand::Set(a) => {
            let (usd, seq) = prices::set_price(h, actor, &a.asset, &a.usd, now_ms()).await?;
            println!(
                "{} = {usd} USD, observed now; fresh for {} (audit entry {seq})",
                a.asset, h.config.prices.max_age
            );
            Ok(())
        }
        PriceCommand::List(a) => {
            for p in prices::prices(h, now_ms()).await? {
                if a.json {
                    println!(
                        "{}",
                        json!({"asset": p.asset, "usd": p.usd, "as_of_ms": p.as_of, "state": p.state})
                    );
                } else {
                    println!(
                        "{:<10} {:>18} {:<8} {}",
                        p.asset,
                        p.usd.to_string(),
                        p.state,
                        p.as_of.map(time_text).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

pub async fn address(h: &StateHandle, actor: &str, cmd: &AddressCommand) -> Result<()> {
    match cmd {
        AddressCommand::Add(a) => address_add(h, actor, a).await,
        AddressCommand::Approve(a) => {
            let d = addresses::approve_destination(h, actor, a.id, now_ms()).await?;
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
            let seq = addresses::remove_destination(h, actor, a.id, now_ms()).await?;
            println!("Entry {} removed (audit entry {seq})", a.id);
            Ok(())
        }
        AddressCommand::List(a) => {
            let now = now_ms();
            for d in addresses::destinations(h).await? {
                if a.json {
                    let mut v = serde_json::to_value(&d)?;
                    v["status"] = json!(d.status(now));
                    println!("{v}");
                } else {
                    println!(
                        "{:<5} {:<12} {:<8} {:<44} {:<18} {:<17} {}  {}",
                        d.id,
                        d.venue,
                        d.asset,
                        d.address,
                        d.status(now),
                        d.label,
                        time_text(d.usable_from),
                        d.route
                    );
                }
            }
            Ok(())
        }
    }
}

async fn address_add(h: &StateHandle, actor: &str, a: &AddressAddArgs) -> Result<()> {
    let new = addresses::NewDestination {
        address: a.address.clone(),
        venue: a.venue.clone(),
        asset: a.asset.clone(),
        label: a.label.clone(),
        cooldown: a.cooldown.clone(),
        network: a.network.clone(),
        via: a.via,
        area_code: a.area_code.clone(),
        memo: a.memo.clone(),
    };
    let d = addresses::add_destination(h, actor, &new, now_ms()).await?;
    println!(
        "Entry {} added: {} {} {} ({}), {}. Usable from {} once another admin runs: keygate address approve {}",
        d.id,
        d.venue,
        d.asset,
        d.address,
        d.label,
        d.route,
        time_text(d.usable_from),
        d.id
    );
    Ok(())
}
