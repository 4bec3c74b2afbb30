//! `ps`.

use anyhow::Result;
use clap::Args;

use crate::paths::Dirs;

/// List containers
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Only show ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json (one object per line)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
}

pub fn run(_d: &Dirs, _a: PsArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
