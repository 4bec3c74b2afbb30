//! `inspect`.

use anyhow::Result;
use clap::Args;

use crate::paths::Dirs;

/// Show low-level details of containers or images as JSON
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// What to inspect: container, image, or both (containers first)
    #[arg(long = "type", default_value = "any")]
    pub kind: String,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(_d: &Dirs, _a: InspectArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
