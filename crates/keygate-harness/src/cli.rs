//! The harness's command line: `demo`, `replay`, `bench` and `scenario`, with the arguments
//! they had as `keygate` subcommands.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

pub use keygate_config::LogFormat;

/// keygate's test and demonstration harness: the Kronos demo, scenario replays, scenarios and
/// benchmarks, against the venue simulator and (for chains) a local anvil node.
///
/// None of this is in the `keygate` binary, which carries no simulator and no test key.
#[derive(Debug, Parser)]
#[command(name = "keygate-harness", version, propagate_version = true)]
pub struct Cli {
    /// Config file for `replay` [default: the scenario's name with .toml].
    #[arg(long, global = true, env = "KEYGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: json, text, or auto (JSON unless stderr is a terminal).
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT", value_parser = log_format())]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`: one of the config's log formats, by name.
fn log_format() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    clap::builder::PossibleValuesParser::new(LogFormat::ALL.map(|(name, _)| name)).map(|s| {
        LogFormat::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map_or(LogFormat::Auto, |(_, f)| *f)
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The Kronos Research attack of 2023-11-18 through a live keygate gateway, with no set-up:
    /// a temporary data directory, the venue simulator, the replay, the outcome and a chart.
    Demo(DemoArgs),
    /// Run a scenario (docs/scenarios.md) through the decision code on its own clock, and
    /// report what the attack got and what normal traffic lost. The config is --config, or the
    /// scenario's name with .toml.
    Replay(ReplayArgs),
    /// Run a benchmark and print its figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a scenario keygate ships to stdout (kronos-2023, a denser one for benchmarks,
    /// 3commas-2022 or binance-2018).
    Scenario(ScenarioArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The scenario: JSON Lines, a header then one event per line.
    pub scenario: PathBuf,
    /// Send the events through a live gateway (`keygate serve`'s code on a loopback port) in
    /// front of the venue simulator, instead of deciding in-process.
    #[arg(long)]
    pub through_gateway: bool,
    /// Write the JSON report here.
    #[arg(long, value_name = "OUT.json")]
    pub report: Option<PathBuf>,
    /// Draw the chart (SVG) here.
    #[arg(long, value_name = "OUT.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the data directory, report and chart here instead of a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// kronos-2023, kronos-2023-around, kronos-2023-wallet, 3commas-2022, binance-2018 (each
    /// scenarios/NAME.jsonl), or
    /// kronos-2023-dense with --events.
    pub name: String,
    /// For kronos-2023-dense: about how many events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time pure `decide` against bare Cedar, and durable decisions per second on SQLite.
    Decide(BenchDecideArgs),
    /// The latency and throughput `keygate serve` adds in front of a (simulated) venue.
    Gateway(BenchGatewayArgs),
    /// Replay speed: a generated scenario of about --events events, in-process.
    Replay(BenchReplayArgs),
    /// Leaked-key detection on an EVM chain: from a block's appearance on a local anvil node
    /// to the freeze, against a bare poller's view of the same blocks.
    Chain(BenchChainArgs),
    /// A long steady run of reads and orders through `keygate serve`: p99, resident memory and
    /// open file descriptors per window; fails if memory grows, a descriptor leaks or p99
    /// drifts (docs/reliability.md).
    Soak(BenchSoakArgs),
}

#[derive(Debug, Args)]
pub struct BenchSoakArgs {
    /// How long the run lasts, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub secs: u64,
    /// Requests per second, open loop.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Seconds per window (one line of figures each).
    #[arg(long, default_value_t = 60)]
    pub every: u64,
    /// One request in this many is a new order; the others read the account.
    #[arg(long, default_value_t = 10)]
    pub orders: u64,
    /// Keep-alive connections the load is spread over (one request at a time on each).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
}

#[derive(Debug, Args)]
pub struct BenchChainArgs {
    /// Leaked-key transfers to time.
    #[arg(long, default_value_t = 30)]
    pub transfers: usize,
    /// The watcher's poll interval (the venue default is 100ms).
    #[arg(long, default_value = "100ms")]
    pub poll: String,
    /// The anvil binary [default: KEYGATE_TEST_ANVIL, or where scripts/anvil-env installs it].
    #[arg(long)]
    pub anvil: Option<std::path::PathBuf>,
    /// Rescue races to run (a thief's pending drain against keygate's replacement; 0: none).
    #[arg(long, default_value_t = 50)]
    pub rescue_trials: usize,
    /// Seconds between blocks for the rescue races (anvil's interval mining).
    #[arg(long, default_value_t = 2)]
    pub block_time: u64,
}

#[derive(Debug, Args)]
pub struct BenchReplayArgs {
    /// About how many events the generated scenario has.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
}

#[derive(Debug, Args)]
pub struct BenchGatewayArgs {
    /// Requests per second for the latency runs.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 5)]
    pub secs: u64,
    /// Connections for the throughput runs.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Also cross-check with wrk (if installed) for this many seconds per run.
    #[arg(long)]
    pub wrk_secs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BenchDecideArgs {
    /// Samples for the latency figures.
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Durable decisions to time.
    #[arg(long, default_value_t = 50_000)]
    pub durable: usize,
    /// Concurrent submitters for the durable run.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Also time durable decisions on PostgreSQL: the URL of a server's `postgres` database as a
    /// role that may create databases (the bench creates two, `kg_bench_*`, and drops them).
    /// E.g. `KEYGATE_PG_FSYNC=on scripts/with-postgres sh -c 'cargo run --release -p
    /// keygate-harness -- bench decide --postgres "$KEYGATE_TEST_POSTGRES_URL"'`.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
