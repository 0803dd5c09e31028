//! `keygate replay --through-gateway` and `keygate demo`.

use std::path::Path;

use anyhow::{Result, bail};
use keygate_core::replay::Report;

use crate::cli::DemoArgs;
use crate::config::Config;

pub async fn run(_config: &Config, _base: &Path, _scenario: &Path, _show: bool) -> Result<Report> {
    bail!("--through-gateway: work in progress")
}

pub async fn demo(_args: &DemoArgs) -> Result<()> {
    bail!("demo: work in progress")
}
