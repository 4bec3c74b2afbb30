//! `import`, `images`, `rmi`, `tag`: each turns its arguments into one call on
//! the [`Store`] and prints what Docker prints.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use super::EXIT_BURROW;
use super::format::{self, Format};
use super::table::{human_size, render};
use crate::image::{Change, Reference};
use crate::paths::Dirs;
use crate::store::{Image, ImportOptions, Removed, Store, StoreError};
use crate::timefmt;

/// Column titles of `--format 'table ...'` where Docker's differ from the
/// field's name in capitals.
const TITLES: &[(&str, &str)] = &[("ID", "IMAGE ID"), ("CreatedSince", "CREATED")];

/// Make a one-layer image from a root filesystem tarball (plain, gzip or zstd), like `docker import`
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball path, or - for standard input
    pub file: String,
    /// Name for the image, e.g. busybox:latest
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Comment for the image's history
    #[arg(short, long)]
    pub message: Option<String>,
}

/// List images
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow images\n  burrow images --digests busybox\n  burrow images --format json\n  burrow images --format '{{.Repository}}:{{.Tag}}'\n  burrow images --format 'table {{.Repository}}\\t{{.Size}}'"
)]
pub struct ImagesArgs {
    /// Show only this repository, or this REPOSITORY:TAG
    pub repository: Option<String>,
    /// Show all images, with the intermediate images of build steps (untagged; kept for the build cache)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Show full image ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table, json (one object per line), or a Go template
    /// such as '{{.Repository}}:{{.Tag}}' or 'table {{.ID}}\t{{.Size}}'
    /// (fields: Repository, Tag, ID, Digest, CreatedAt, CreatedSince, Size)
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

pub fn import(dirs: &Dirs, a: ImportArgs) -> Result<i32> {
    // Validate everything cheap before reading a possibly large tarball.
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
    let input: Box<dyn Read> = if a.file == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?)
    };
    let options = ImportOptions {
        reference,
        changes,
        message: a.message,
        source: a.file,
    };
    let what = match options.source.as_str() {
        "-" => "cannot import from standard input".to_string(),
        file => format!("cannot import {file}"),
    };
    let imported = Store::open(dirs)
        .map_err(anyhow::Error::from)
        .and_then(|store| Ok(store.import(input, &options)?))
        .map_err(|e| super::disk_full(e, &what, dirs))?;
    if imported.skipped_devices > 0 {
        eprintln!(
            "warning: skipped {} device nodes: creating them needs privileges; containers get /dev from the runtime",
            imported.skipped_devices
        );
    }
    println!("sha256:{}", imported.image.id);
    Ok(0)
}

pub fn images(dirs: &Dirs, a: ImagesArgs) -> Result<i32> {
    let filter = a.repository.as_deref().map(RepoFilter::parse).transpose()?;
    let store = Store::open(dirs)?;
    let images = store.list()?;
    let digests = store.repo_digests()?;
    let mut rows: Vec<Row> = images
        .iter()
        .filter(|i| a.all || !i.intermediate || !i.repo_tags.is_empty())
        .flat_map(Row::for_image)
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    for row in &mut rows {
        row.digest = repo_digest(&digests, &row.image.id, &row.repository);
    }
    if a.quiet {
        print_ids(&rows, a.no_trunc);
        return Ok(0);
    }
    match Format::parse(&a.format)? {
        Format::Table => print!("{}", table(&rows, a.digests, a.no_trunc)),
        Format::Json => {
            for row in &rows {
                println!("{}", row.json(a.no_trunc));
            }
        }
        Format::Template { template, table } => {
            let values: Vec<_> = rows.iter().map(|r| r.json(a.no_trunc)).collect();
            format::print_rows(&template, table, &values, TITLES)?;
        }
    }
    Ok(0)
}

pub fn rmi(dirs: &Dirs, a: RmiArgs) -> Result<i32> {
    let store = Store::open(dirs)?;
    let mut failed = false;
    // Like Docker, one failure does not stop the others; each is reported.
    for name in &a.images {
        match store.remove(name, a.force, |id| containers_using(dirs, id)) {
            Ok(removed) => removed.iter().for_each(print_removed),
            Err(e) => {
                eprintln!("burrow: {:#}", rmi_error(e));
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_BURROW } else { 0 })
}

pub fn tag(dirs: &Dirs, a: TagArgs) -> Result<i32> {
    let target: Reference = a.target.parse()?;
    Store::open(dirs)?.tag(&a.source, &target)?;
    Ok(0)
}

/// Names of the containers created from `image_id`.
fn containers_using(dirs: &Dirs, image_id: &str) -> Result<Vec<String>> {
    let in_use = crate::container::images_in_use(dirs).with_context(|| {
        format!(
            "cannot check which containers use image {}",
            &image_id[..12]
        )
    })?;
    Ok(in_use
        .into_iter()
        .filter(|(_, id)| id == image_id)
        .map(|(name, _)| name)
        .collect())
}

/// `rmi` names images that exist; the store's "import it" hint would mislead.
fn rmi_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(name) => {
            anyhow!("no such image: {name}; list images with: burrow images")
        }
        other => other.into(),
    }
}

fn print_removed(r: &Removed) {
    match r {
        Removed::Untagged(tag) => println!("Untagged: {tag}"),
        Removed::Deleted(id) => println!("Deleted: sha256:{id}"),
    }
}

/// One line of `burrow images`: an image under one of its tags, or `<none>`.
struct Row<'a> {
    image: &'a Image,
    repository: String,
    tag: String,
    /// The registry's manifest digest for this repository, or `<none>`.
    digest: String,
}

/// The digest `repository` has for `id` (from a pull or a push), if any.
fn repo_digest(digests: &BTreeMap<String, Vec<String>>, id: &str, repository: &str) -> String {
    digests
        .get(id)
        .into_iter()
        .flatten()
        .find_map(|d| d.split_once('@').filter(|(name, _)| *name == repository))
        .map_or_else(|| "<none>".into(), |(_, digest)| digest.to_string())
}

impl<'a> Row<'a> {
    fn for_image(image: &'a Image) -> Vec<Row<'a>> {
        if image.repo_tags.is_empty() {
            return vec![Row {
                image,
                repository: "<none>".into(),
                tag: "<none>".into(),
                digest: "<none>".into(),
            }];
        }
        image
            .repo_tags
            .iter()
            .map(|t| {
                // A stored tag is always `name:tag`, and a tag cannot hold a `:`.
                let (repository, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
                Row {
                    image,
                    repository: repository.into(),
                    tag: tag.into(),
                    digest: "<none>".into(),
                }
            })
            .collect()
    }

    fn id(&self, no_trunc: bool) -> String {
        if no_trunc {
            format!("sha256:{}", self.image.id)
        } else {
            self.image.id[..12].to_string()
        }
    }

    /// "2 hours ago", or Docker's "N/A" for an image whose config gives no
    /// time (reproducible builds leave it out).
    fn created_since(&self) -> String {
        match timefmt::ago(&self.image.created) {
            ago if ago.is_empty() => "N/A".to_string(),
            ago => ago,
        }
    }

    /// Docker's keys for `--format json`, sorted as Go prints a map.
    fn json(&self, no_trunc: bool) -> serde_json::Value {
        let size = human_size(self.image.size);
        let fields: BTreeMap<&str, String> = BTreeMap::from([
            ("Containers", "N/A".into()),
            ("CreatedAt", docker_time(&self.image.created)),
            ("CreatedSince", self.created_since()),
            ("Digest", self.digest.clone()),
            ("ID", self.id(no_trunc)),
            ("Repository", self.repository.clone()),
            ("SharedSize", "N/A".into()),
            ("Size", size.clone()),
            ("Tag", self.tag.clone()),
            ("UniqueSize", "N/A".into()),
            ("VirtualSize", size),
        ]);
        serde_json::json!(fields)
    }
}

fn table(rows: &[Row<'_>], digests: bool, no_trunc: bool) -> String {
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.repository.clone(), r.tag.clone()];
            if digests {
                // Imported images have no registry digest.
                cells.push(r.digest.clone());
            }
            cells.push(r.id(no_trunc));
            cells.push(r.created_since());
            cells.push(human_size(r.image.size));
            cells
        })
        .collect();
    render(&header, &cells)
}

/// Each id once, in list order, so `burrow rmi $(burrow images -q)` works.
fn print_ids(rows: &[Row<'_>], no_trunc: bool) {
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        if seen.insert(&row.image.id) {
            println!("{}", row.id(no_trunc));
        }
    }
}

/// `2026-11-28 02:31:04 +0000 UTC`, as Go prints a time in `docker images`.
fn docker_time(stamp: &str) -> String {
    match timefmt::parse_rfc3339(stamp) {
        Some(t) => {
            let s = timefmt::rfc3339(t);
            format!("{} {} +0000 UTC", &s[..10], &s[11..19])
        }
        None => String::new(),
    }
}

/// `burrow images busybox` (any tag) or `burrow images busybox:1.36`.
struct RepoFilter {
    repository: String,
    tag: Option<String>,
}

impl RepoFilter {
    fn parse(arg: &str) -> Result<RepoFilter> {
        let reference: Reference = arg.parse()?;
        // The parser fills in `latest`; only a tag the user typed filters.
        let typed_tag = arg
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        Ok(RepoFilter {
            repository: reference.familiar_name(),
            tag: typed_tag.then(|| reference.tag().unwrap_or_default().to_string()),
        })
    }

    fn matches(&self, row: &Row<'_>) -> bool {
        row.repository == self.repository && self.tag.as_ref().is_none_or(|t| *t == row.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_time_format() {
        assert_eq!(
            docker_time("2026-11-28T02:31:04.123456789Z"),
            "2026-11-28 02:31:04 +0000 UTC"
        );
        assert_eq!(docker_time("nonsense"), "");
    }

    #[test]
    fn repository_filter() {
        let f = RepoFilter::parse("busybox").unwrap();
        assert_eq!((f.repository.as_str(), f.tag.as_deref()), ("busybox", None));
        let f = RepoFilter::parse("127.0.0.1:5000/app:1").unwrap();
        assert_eq!(
            (f.repository.as_str(), f.tag.as_deref()),
            ("127.0.0.1:5000/app", Some("1"))
        );
        let f = RepoFilter::parse("localhost:5000/app").unwrap();
        assert_eq!(f.tag, None);
    }
}
