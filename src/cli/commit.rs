//! `diff` and `commit`: a container's writable layer, listed or turned into
//! an image layer.

use anyhow::Result;
use clap::Args;

use crate::container::{self, changes};
use crate::image::{Change, Reference};
use crate::paths::Dirs;

/// Inspect changes to files or directories on a container's filesystem
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Container name or id
    pub container: String,
}

/// Create a new image from a container's changes
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Commit message (the history comment)
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Container name or id
    pub container: String,
    /// Name for the new image: REPOSITORY[:TAG]
    pub reference: Option<String>,
}

pub fn diff(dirs: &Dirs, a: DiffArgs) -> Result<i32> {
    let rec = container::find(dirs, &a.container)?;
    for c in changes::diff(dirs, &rec)? {
        println!("{} {}", c.kind.letter(), c.path);
    }
    Ok(0)
}

pub fn commit(dirs: &Dirs, a: CommitArgs) -> Result<i32> {
    let reference = a
        .reference
        .as_deref()
        .map(str::parse::<Reference>)
        .transpose()?;
    let changes = a
        .changes
        .iter()
        .map(|c| c.parse::<Change>())
        .collect::<Result<Vec<_>, _>>()?;
    let rec = container::find(dirs, &a.container)?;
    let opts = changes::CommitOptions {
        changes,
        message: a.message,
        author: a.author,
        created_by: String::new(),
        reference,
    };
    let image = changes::commit(dirs, &rec, &opts)?;
    println!("sha256:{}", image.id);
    Ok(0)
}
