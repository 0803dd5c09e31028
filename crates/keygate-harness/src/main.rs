//! `keygate-harness`: keygate's demo, scenario replays, scenario generator and benchmarks. The
//! only crate that links the venue simulator (keygate-sim) and the chain crate's test support
//! (anvil launcher, test keys); the `keygate` binary carries neither. Like `keygate`'s main, it
//! parses arguments and calls one function per command; it sets up data directories through
//! keygate-admin, never by running `keygate`.

mod bench;
mod bench_chain;
mod bench_clients;
mod bench_gateway;
mod bench_order;
mod bench_pg;
mod bench_soak;
mod cli;
mod replay;
mod replay_contain;
mod replay_gateway;
mod replay_setup;
mod scenarios;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use keygate_config::logging;

use crate::cli::{Cli, Command, LogFormat, ReplayArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let format = cli.log_format.unwrap_or(LogFormat::Auto);
    match &cli.command {
        Command::Bench(cmd) => {
            logging::init(format, "warn");
            bench::run(cmd).await
        }
        Command::Replay(args) => {
            logging::init(format, "warn");
            replay(args, cli.config.as_deref()).await
        }
        Command::Demo(args) => {
            logging::init(format, "warn");
            replay_gateway::demo(args).await
        }
        Command::Scenario(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match args.name.as_str() {
                "kronos-2023" => scenarios::kronos(&mut out)?,
                "kronos-2023-dense" => scenarios::dense(&mut out, args.events)?,
                "3commas-2022" => scenarios::threecommas_2022(&mut out)?,
                "binance-2018" => scenarios::binance_2018(&mut out)?,
                "kronos-2023-around" => {
                    scenarios::kronos_around(&mut out, scenarios::Leak::Around)?
                }
                "kronos-2023-wallet" => {
                    scenarios::kronos_around(&mut out, scenarios::Leak::Wallet)?
                }
                other => {
                    bail!(
                        "no scenario {other:?}: keygate ships kronos-2023, kronos-2023-dense, kronos-2023-around, kronos-2023-wallet, 3commas-2022 and binance-2018"
                    )
                }
            };
            std::io::Write::flush(&mut out)?;
            Ok(())
        }
    }
}

/// `replay`: in-process, or through a live gateway; then the summary, report and chart.
async fn replay(args: &ReplayArgs, config: Option<&Path>) -> Result<()> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| args.scenario.with_extension("toml"));
    // As written: environment overrides (KEYGATE_*) would make a replay depend on the host.
    let config = keygate_config::Config::load_as_written(&path)?;
    let base = replay::config_dir(&path);
    for out in [args.report.as_deref(), args.chart.as_deref()]
        .into_iter()
        .flatten()
    {
        replay::writable(out)?;
    }
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = if args.through_gateway {
        replay_gateway::run(&config, &base, &args.scenario, show).await?
    } else {
        replay::in_process(&config, &base, &args.scenario, show)?
    };
    replay::finish(&report, args.report.as_deref(), args.chart.as_deref())
}

/// The current time, Unix milliseconds: the one place the harness reads the clock.
pub(crate) fn now_ms() -> keygate_core::Millis {
    chrono::Utc::now().timestamp_millis()
}
