//! `import`, `images`, `rmi`, `tag`. (Being written.)

use anyhow::{Result, bail};
use clap::Args;

use crate::paths::Dirs;

/// Make a one-layer image from a root filesystem tarball (plain, gzip or zstd), like `docker import`
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball path, or - for standard input
    pub file: String,
    /// Name for the image, e.g. busybox:latest
    pub reference: Option<String>,
}

/// List images
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Remove images
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even if containers use it
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Give an image another name
#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub fn import(_dirs: &Dirs, _a: ImportArgs) -> Result<i32> {
    bail!("import: being written")
}
pub fn images(_dirs: &Dirs, _a: ImagesArgs) -> Result<i32> {
    bail!("images: being written")
}
pub fn rmi(_dirs: &Dirs, _a: RmiArgs) -> Result<i32> {
    bail!("rmi: being written")
}
pub fn tag(_dirs: &Dirs, _a: TagArgs) -> Result<i32> {
    bail!("tag: being written")
}
