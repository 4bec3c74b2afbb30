//! `logs`.

use anyhow::Result;
use clap::Args;

use crate::paths::Dirs;

/// Print a container's output
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

pub fn run(_d: &Dirs, _a: LogsArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
