//! `keygate policy validate|test|schema`: check policies before they go live.

use anyhow::{Context, Result, bail};
use keygate_core::Action;
use keygate_core::auth::ClientRecord;
use keygate_core::book::Destination;
use keygate_core::intent::normalize_address;
use keygate_core::policy::{Outcome, Policies, PolicyContext, SCHEMA, Subject, World};
use serde::Deserialize;

use crate::cli::{PolicyCommand, PolicyTestArgs, PolicyValidateArgs};
use keygate_config::Config;
use keygate_config::engine::{policy_files, read_policies};
use keygate_config::instance::Paths;

pub fn run(paths: &Paths, cmd: &PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate(a) => validate(paths, a),
        PolicyCommand::Test(a) => test(a),
        PolicyCommand::Schema => {
            print!("{SCHEMA}");
            Ok(())
        }
    }
}

fn validate(paths: &Paths, a: &PolicyValidateArgs) -> Result<()> {
    if a.files.is_empty() {
        let config = Config::load(&paths.config_file)?;
        let engine = keygate_config::engine::build(&config, &paths.base)?;
        println!(
            "ok: {} policies match keygate's schema; {} limit(s) and {} pinned price(s) are valid",
            engine.policies.len(),
            engine.limits.len(),
            engine.pinned.len()
        );
        return Ok(());
    }
    let files = policy_files(&a.files, std::path::Path::new("."))?;
    if files.is_empty() {
        bail!("no policy files found (a directory is searched for *.cedar files)");
    }
    let policies = Policies::load(&read_policies(&files)?)?;
    println!(
        "ok: {} policies in {} file(s) match keygate's schema",
        policies.len(),
        files.len()
    );
    Ok(())
}

/// One dry-run case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    client: String,
    #[serde(default)]
    tags: Vec<String>,
    venue: String,
    action: Action,
    #[serde(default)]
    asset: Option<String>,
    #[serde(default)]
    context: PolicyContext,
    #[serde(default)]
    expect: Option<Outcome>,
}

fn test(a: &PolicyTestArgs) -> Result<()> {
    let files = policy_files(std::slice::from_ref(&a.policies), std::path::Path::new("."))?;
    let policies = Policies::load(&read_policies(&files)?)?;
    let text = std::fs::read_to_string(&a.cases)
        .with_context(|| format!("cannot read cases from {}", a.cases.display()))?;
    let (mut passed, mut failed, mut run) = (0, 0, 0);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let case: Case = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a valid case (see docs/policy.md)",
                a.cases.display(),
                i + 1
            )
        })?;
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("line {}", i + 1));
        let client = ClientRecord {
            instruments: vec![],
            name: case.client.clone(),
            venues: vec![case.venue.clone()],
            actions: vec![case.action],
            tags: case.tags.clone(),
            enabled: true,
        };
        let dest = case.context.destination.as_ref().map(|d| Destination {
            route: Default::default(),
            id: 0,
            venue: case.venue.clone(),
            asset: case.asset.clone().unwrap_or_default(),
            address: normalize_address(&d.address),
            label: d.label.clone(),
            added_at: 0,
            added_by: String::new(),
            usable_from: 0,
            approved_at: Some(0),
            approved_by: None,
        });
        let mut ctx = case.context.clone();
        if let Some(d) = &mut ctx.destination {
            d.address = normalize_address(&d.address);
        }
        if let Some(asset) = &case.asset {
            ctx.asset = asset.clone();
        }
        let assets: Vec<(&str, &str)> = case
            .asset
            .iter()
            .map(|s| (case.venue.as_str(), s.as_str()))
            .collect();
        let dests: Vec<&Destination> = dest.iter().collect();
        let entities = policies
            .entities(&World {
                clients: std::slice::from_ref(&client),
                assets: &assets,
                destinations: &dests,
            })
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let v = policies.evaluate(
            &Subject {
                client: &case.client,
                venue: &case.venue,
                action: case.action,
                asset: case.asset.as_deref(),
            },
            &ctx,
            &entities,
        );
        run += 1;
        let verdict = match case.expect {
            Some(e) if e == v.outcome => {
                passed += 1;
                "PASS"
            }
            Some(_) => {
                failed += 1;
                "FAIL"
            }
            None => "----",
        };
        if a.json {
            println!(
                "{}",
                serde_json::json!({"case": name, "outcome": v.outcome, "expect": case.expect,
                                   "policies": v.policies, "reasons": v.reasons, "result": verdict})
            );
        } else {
            let expect = case
                .expect
                .map(|e| format!(" (expected {})", e.as_str()))
                .unwrap_or_default();
            println!("{verdict} {name}: {}{expect}", v.outcome.as_str());
            for r in &v.reasons {
                println!("       {r}");
            }
        }
    }
    eprintln!(
        "{run} case(s): {passed} passed, {failed} failed, {} without expectation",
        run - passed - failed
    );
    if failed > 0 {
        bail!("{failed} case(s) did not get the verdict they expect");
    }
    Ok(())
}
