//! One function per subcommand; `run` dispatches.

mod admin;
mod audit;
mod containment;
mod credential;
mod freeze;
mod init;
mod policy;
mod rekey;
pub(crate) mod serve;

use anyhow::{Result, bail};

use crate::cli::{Cli, Command};
use keygate_config::Config;
use keygate_config::instance::{Instance, Paths, StateHandle};
use keygate_config::logging;

pub async fn run(cli: Cli) -> Result<()> {
    let paths = Paths::new(&cli.data_dir, cli.config.as_deref());
    match &cli.command {
        Command::Init(args) => {
            logging::init(
                cli.log_format.unwrap_or(crate::cli::LogFormat::Auto),
                "info",
            );
            init::run(&cli, args).await
        }
        Command::Credential(cmd) => credential::run(open(&cli, paths).await?, cmd).await,
        Command::Rekey => rekey::run(open(&cli, paths).await?).await,
        Command::Serve(args) => serve::serve(open(&cli, paths).await?, args).await,
        Command::Doctor => serve::doctor(open(&cli, paths).await?).await,
        Command::Policy(cmd) => {
            logging::init(
                cli.log_format.unwrap_or(crate::cli::LogFormat::Auto),
                "info",
            );
            policy::run(&paths, cmd)
        }
        Command::Client(cmd) => {
            let (h, actor) = state(&cli, paths).await?;
            close(&h, admin::client(&h, &actor, cmd).await).await
        }
        Command::Token(crate::cli::TokenCommand::Issue(a)) if a.native => {
            // A native key's secret is sealed in the vault: this needs the master key.
            let actor = actor(&cli)?;
            let inst = open(&cli, paths).await?;
            let Instance {
                config,
                paths,
                store,
                master,
            } = inst;
            let h = StateHandle {
                config,
                paths,
                store,
            };
            close(&h, admin::token_issue(&h, &actor, a, Some(&master)).await).await
        }
        Command::Token(cmd) => {
            let (h, actor) = state(&cli, paths).await?;
            close(&h, admin::token(&h, &actor, cmd).await).await
        }
        Command::Price(cmd) => {
            let (h, actor) = state(&cli, paths).await?;
            close(&h, admin::price(&h, &actor, cmd).await).await
        }
        Command::Address(cmd) => {
            let (h, actor) = state(&cli, paths).await?;
            close(&h, admin::address(&h, &actor, cmd).await).await
        }
        Command::Freeze(args) => {
            let (h, actor) = state(&cli, paths).await?;
            close(&h, freeze::freeze(&h, &actor, args).await).await
        }
        Command::Approve(args) => {
            let (h, _) = state(&cli, paths).await?;
            close(&h, freeze::approve(&h, args).await).await
        }
        Command::Holds(args) => {
            let (h, _) = state(&cli, paths).await?;
            close(&h, freeze::holds(&h, args.all).await).await
        }
        Command::Approver(cmd) => {
            logging::init(
                cli.log_format.unwrap_or(crate::cli::LogFormat::Auto),
                "info",
            );
            freeze::approver(cmd)
        }
        Command::Decide(args) => {
            let (h, _) = state(&cli, paths).await?;
            close(&h, decide(&h, args).await).await
        }
        Command::Containment(crate::cli::ContainmentCommand::Status(a)) => {
            let (h, _) = state(&cli, paths).await?;
            close(&h, containment::status(&h, a).await).await
        }
        Command::Audit(cmd) => {
            let (h, _) = state(&cli, paths).await?;
            close(&h, audit::run(&h, cmd).await).await
        }
    }
}

/// Loads the config, starts logging as it says, and opens the instance.
async fn open(cli: &Cli, paths: Paths) -> Result<Instance> {
    let config = Config::load(&paths.config_file)?;
    logging::init(
        cli.log_format.unwrap_or(config.log.format),
        &config.log.level,
    );
    Ok(Instance::open(config, paths).await?)
}

/// The current time, Unix milliseconds: the one place the CLI reads the clock.
pub(crate) fn now_ms() -> keygate_core::Millis {
    chrono::Utc::now().timestamp_millis()
}

/// A time for people: RFC 3339, UTC, to the second.
pub(crate) fn time_text(ms: keygate_core::Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// Who is acting: --actor, else $USER. Names an admin in the audit log.
fn actor(cli: &Cli) -> Result<String> {
    let a = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "admin".into());
    if !keygate_core::intent::valid_name(&a) {
        bail!("--actor {a:?} is not a valid name (letters, digits, . _ - :)");
    }
    Ok(format!("admin:{a}"))
}

/// Opens the store for an admin command (no master key needed) and names the actor.
async fn state(cli: &Cli, paths: Paths) -> Result<(StateHandle, String)> {
    let config = Config::load(&paths.config_file)?;
    logging::init(
        cli.log_format.unwrap_or(config.log.format),
        &config.log.level,
    );
    let actor = actor(cli)?;
    Ok((StateHandle::open(config, paths).await?, actor))
}

async fn close(h: &StateHandle, result: Result<()>) -> Result<()> {
    h.store.close().await;
    result
}

/// `keygate decide`: the verdict the current state would give, without recording it.
async fn decide(h: &StateHandle, a: &crate::cli::DecideArgs) -> Result<()> {
    use anyhow::Context;
    let text = if a.intent.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the intent from stdin")?
    } else {
        std::fs::read_to_string(&a.intent)
            .with_context(|| format!("cannot read {}", a.intent.display()))?
    };
    let intent: keygate_core::Intent = serde_json::from_str(&text)
        .context("the intent is not valid JSON of the documented shape (see docs/policy.md)")?;
    let now = match &a.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--at {t:?} is not an RFC 3339 time such as 2023-11-18T16:47:00Z")
            })?
            .timestamp_millis(),
        None => now_ms(),
    };
    let engine = keygate_config::engine::build(&h.config, &h.paths.base)?;
    let state = keygate_store::decider::current_state(&h.store, &engine).await?;
    // As the decider would: with the detectors watching (a freeze they would set is shown,
    // not set).
    let w =
        keygate_core::decide::decide_watched(&engine, &state, &intent, now, &Default::default());
    let mut out = serde_json::to_value(&w.verdict)?;
    if let Some(o) = out.as_object_mut() {
        if !w.signals.is_empty() {
            o.insert("detections".into(), serde_json::to_value(&w.signals)?);
        }
        if let Some(scope) = &w.freeze {
            o.insert(
                "would_freeze".into(),
                serde_json::Value::String(scope.to_string()),
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
