//! `keygate-sim`: runs the venue simulator on a local port.
//!
//! ```text
//! keygate-sim --accounts FILE.json [--listen 127.0.0.1:0] [--allow-non-loopback]
//! ```
//!
//! FILE.json holds `accounts` and, optionally, `markets` (without them, the default markets:
//! see `keygate_sim::default_markets`).
//!
//! After binding it prints exactly one line to stdout, `listening on
//! http://IP:PORT`, then serves until killed. Errors go to stderr; a bad
//! command line or account file exits with 2, a failure to bind or serve with 1.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use keygate_sim::{Sim, SimConfig, SimFile};

/// Binance- and OKX-style venue simulator for keygate's tests, benchmarks and
/// demo. Never a real venue.
#[derive(Debug, Parser)]
#[command(name = "keygate-sim", version)]
struct Args {
    /// Address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON file with the accounts and, optionally, the markets: {"accounts": [...],
    /// "markets": [...]}.
    #[arg(long)]
    accounts: PathBuf,
    /// Allow listening on an address other than loopback.
    #[arg(long)]
    allow_non_loopback: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // Help and version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let sim = match load(&args) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("keygate-sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keygate-sim: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args.listen, sim)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate-sim: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Checks the command line and reads the account file.
fn load(args: &Args) -> anyhow::Result<Sim> {
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        anyhow::bail!(
            "refusing to listen on non-loopback address {} (pass --allow-non-loopback to allow it)",
            args.listen
        );
    }
    let text = std::fs::read_to_string(&args.accounts)
        .with_context(|| format!("cannot read {}", args.accounts.display()))?;
    let file = SimFile::from_json(&text)
        .with_context(|| format!("bad account file {}", args.accounts.display()))?;
    let config = SimConfig {
        accounts: file.accounts,
    };
    Sim::with_markets(config, file.markets)
        .with_context(|| format!("bad account file {}", args.accounts.display()))
}

async fn run(listen: SocketAddr, sim: Sim) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{bound}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    keygate_sim::serve(listener, sim)
        .await
        .context("serving failed")
}
