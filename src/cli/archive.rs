//! `save` and `load`: images to and from tarballs other tools read and write.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::image::archive::Format;
use crate::paths::Dirs;
use crate::store::Store;

/// Save images to a tar archive (standard output by default)
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow save -o busybox.tar busybox\n  burrow save --format oci-archive app:1.2 | gzip > app.tar.gz"
)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout: docker-archive (docker save's) or oci-archive (an OCI image layout)
    #[arg(long, default_value = "docker-archive", value_name = "FORMAT")]
    pub format: String,
    /// Images to save: NAME[:TAG] or ID
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Load images from a tar archive (docker-archive or oci-archive; plain, gzip or zstd)
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow load -i busybox.tar\n  podman save busybox | burrow load"
)]
pub struct LoadArgs {
    /// Read from this file instead of standard input
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn save(dirs: &Dirs, a: SaveArgs) -> Result<i32> {
    let format: Format = a.format.parse().map_err(anyhow::Error::msg)?;
    let store = Store::open(dirs)?;
    // Unknown names fail before any file is created.
    for name in &a.images {
        store.resolve(name)?;
    }
    match &a.output {
        None => {
            if io::stdout().is_terminal() {
                bail!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect standard output"
                );
            }
            let out = BufWriter::new(io::stdout().lock());
            store.save_archive(&a.images, format, out)?;
        }
        Some(path) => save_to_file(&store, &a.images, format, path)?,
    }
    Ok(0)
}

/// Writes beside `path` and renames, so a failed save leaves no half archive;
/// a device or a pipe (`-o /dev/stdout`) is written directly.
fn save_to_file(store: &Store, images: &[String], format: Format, path: &Path) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let file = File::options()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        store.save_archive(images, format, BufWriter::new(file))?;
        return Ok(());
    }
    let name = path
        .file_name()
        .with_context(|| format!("invalid output file name {}", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = store
        .save_archive(images, format, BufWriter::new(&file))
        .map_err(anyhow::Error::from)
        .and_then(|()| file.sync_all().context("cannot write the archive"))
        .and_then(|()| {
            fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn load(dirs: &Dirs, a: LoadArgs) -> Result<i32> {
    let input: Box<dyn Read> = match &a.input {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("no archive given: use -i FILE or pipe one to standard input");
            }
            Box::new(io::stdin().lock())
        }
    };
    let what = match &a.input {
        Some(path) => format!("cannot load {}", path.display()),
        None => "cannot load the archive from standard input".to_string(),
    };
    let loaded = Store::open(dirs)
        .map_err(anyhow::Error::from)
        .and_then(|store| Ok(store.load_archive(input)?))
        .map_err(|e| super::disk_full(e, &what, dirs))?;
    if !a.quiet {
        let mut out = io::stdout().lock();
        for image in loaded {
            if image.tags.is_empty() {
                writeln!(out, "Loaded image ID: sha256:{}", image.id)?;
            }
            for tag in image.tags {
                writeln!(out, "Loaded image: {tag}")?;
            }
        }
    }
    Ok(0)
}
