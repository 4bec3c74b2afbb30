//! `image`: Docker's management group (`image ls`, `image rm`, `image
//! inspect`, `image prune`...). Each subcommand is the top-level command of
//! the same meaning under another name; only `prune` lives here alone.

use std::collections::HashSet;
use std::io::{self, BufRead, Write};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::table::human_size;
use super::{archive, images, inspect, registry};
use crate::paths::Dirs;
use crate::store::{Removed, Store};

/// Manage images
#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Remove images
    #[command(visible_alias = "remove")]
    Rm(images::RmiArgs),
    /// Show images' details as JSON
    Inspect(InspectArgs),
    Prune(PruneArgs),
    Tag(images::TagArgs),
    Import(images::ImportArgs),
    Save(archive::SaveArgs),
    Load(archive::LoadArgs),
    Pull(registry::PullArgs),
    Push(registry::PushArgs),
}

/// Show images' details as JSON
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print each image through this Go template instead of as JSON
    /// (e.g. '{{.Id}}', '{{json .Config.Env}}')
    #[arg(short, long)]
    pub format: Option<String>,
    /// Image names or ids
    #[arg(required = true, value_name = "IMAGE")]
    pub names: Vec<String>,
}

/// Remove unused images: dangling ones (untagged), or with -a every image no container uses
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(dirs: &Dirs, a: ImageArgs) -> Result<i32> {
    match a.command {
        ImageCommand::Ls(a) => images::images(dirs, a),
        ImageCommand::Rm(a) => images::rmi(dirs, a),
        ImageCommand::Inspect(a) => inspect::run(
            dirs,
            inspect::InspectArgs {
                kind: "image".into(),
                format: a.format,
                names: a.names,
            },
        ),
        ImageCommand::Prune(a) => prune(dirs, a),
        ImageCommand::Tag(a) => images::tag(dirs, a),
        ImageCommand::Import(a) => images::import(dirs, a),
        ImageCommand::Save(a) => archive::save(dirs, a),
        ImageCommand::Load(a) => archive::load(dirs, a),
        ImageCommand::Pull(a) => registry::pull(dirs, a),
        ImageCommand::Push(a) => registry::push(dirs, a),
    }
}

fn prune(dirs: &Dirs, a: PruneArgs) -> Result<i32> {
    if !a.force && !confirm(a.all)? {
        return Ok(0);
    }
    let pruned = Store::open(dirs)?.prune(a.all, || {
        let in_use = crate::container::images_in_use(dirs)
            .context("cannot check which containers use images")?;
        Ok(in_use.into_iter().map(|(_, id)| id).collect::<HashSet<_>>())
    })?;
    let mut out = io::stdout().lock();
    if !pruned.removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in &pruned.removed {
            match r {
                Removed::Untagged(tag) => writeln!(out, "untagged: {tag}")?,
                Removed::Deleted(id) => writeln!(out, "deleted: sha256:{id}")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(pruned.reclaimed)
    )?;
    Ok(0)
}

/// Docker's question; anything but y or yes is a no.
fn confirm(all: bool) -> Result<bool> {
    let what = if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}
