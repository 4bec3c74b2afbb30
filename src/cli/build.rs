//! `build` and `history`: Dockerfiles to images, and an image's steps.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::table::{human_size, render, truncate};
use crate::build::{BuildOptions, builder::StepFailed};
use crate::image::Reference;
use crate::paths::Dirs;
use crate::store::{self, Store};
use crate::timefmt;

/// Build an image from a Dockerfile
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (NAME[:TAG]); may be given several times
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile [default: CONTEXT/Dockerfile]; - reads it from standard input
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build up to this stage (FROM ... AS STAGE)
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull the FROM images, even when present
    #[arg(long)]
    pub pull: bool,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
    /// Network for RUN steps: slirp4netns (default), host or none
    #[arg(long, default_value = "slirp4netns")]
    pub network: String,
    /// The context folder, or - for a Dockerfile on standard input and no context
    pub context: String,
}

/// Show the history of an image
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

pub fn build(dirs: &Dirs, a: BuildArgs) -> Result<i32> {
    let tags = a
        .tags
        .iter()
        .map(|t| t.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut build_args = Vec::new();
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(arg) {
                    build_args.push((arg.clone(), v));
                }
            }
        }
    }
    let (context, dockerfile) = if a.context == "-" {
        (None, read_stdin()?)
    } else {
        let ctx = PathBuf::from(&a.context);
        if !ctx.is_dir() {
            bail!("the build context {} is not a folder", ctx.display());
        }
        let text = match a.file.as_deref() {
            Some("-") => read_stdin()?,
            Some(f) => {
                let p = Path::new(f);
                let p = if p.exists() {
                    p.to_path_buf()
                } else {
                    ctx.join(f)
                };
                fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?
            }
            None => {
                let p = ctx.join("Dockerfile");
                fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?
            }
        };
        (Some(ctx), text)
    };
    let opts = BuildOptions {
        dockerfile,
        context,
        tags,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        pull: a.pull,
        quiet: a.quiet,
        network: a.network,
    };
    match crate::build::build(dirs, &opts) {
        Ok(_) => Ok(0),
        Err(e) => match e.downcast_ref::<StepFailed>() {
            Some(failed) => {
                eprintln!("{failed}");
                Ok(1)
            }
            None => Err(e),
        },
    }
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the Dockerfile from standard input")?;
    Ok(s)
}

pub fn history(dirs: &Dirs, a: HistoryArgs) -> Result<i32> {
    let image = Store::open(dirs)?.resolve(&a.image)?;
    let history = image.config.history().clone().unwrap_or_default();
    let mut rows: Vec<_> = history
        .iter()
        .map(|h| (h.clone(), h.empty_layer().unwrap_or(false), 0u64))
        .collect();
    // Sizes: each non-empty entry owns the next layer, bottom first.
    let mut sizes = image.layers.iter().map(|l| store::dir_size(l).unwrap_or(0));
    for row in rows.iter_mut() {
        if !row.1 {
            row.2 = sizes.next().unwrap_or(0);
        }
    }
    rows.reverse();
    let short = |id: &str| {
        if a.no_trunc {
            format!("sha256:{id}")
        } else {
            id[..12].to_string()
        }
    };
    if a.quiet {
        println!("{}", short(&image.id));
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(n, (h, _, size))| {
            let by = h.created_by().clone().unwrap_or_default();
            vec![
                if n == 0 {
                    short(&image.id)
                } else {
                    "<missing>".into()
                },
                h.created().as_deref().map(timefmt::ago).unwrap_or_default(),
                if a.no_trunc { by } else { truncate(&by, 45) },
                human_size(*size),
                h.comment().clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table
        )
    );
    Ok(0)
}
