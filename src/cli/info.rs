//! `info`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Show how burrow runs on this host and which kernel features it found
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn run(_root: Option<PathBuf>, _runroot: Option<PathBuf>, _a: &InfoArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
