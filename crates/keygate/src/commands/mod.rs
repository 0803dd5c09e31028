//! One function per subcommand; `run` dispatches.

mod credential;
mod init;
mod rekey;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::instance::{Instance, Paths};
use crate::logging;

pub async fn run(cli: Cli) -> Result<()> {
    let paths = Paths::from_cli(&cli);
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
    }
}

/// Loads the config, starts logging as it says, and opens the instance.
async fn open(cli: &Cli, paths: Paths) -> Result<Instance> {
    let config = Config::load(&paths.config_file)?;
    logging::init(
        cli.log_format.unwrap_or(config.log.format),
        &config.log.level,
    );
    Instance::open(config, paths).await
}
