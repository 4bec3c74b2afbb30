//! COPY and ADD: a layer tar made straight from the sources, with no
//! container.
//!
//! Sources come from a [`Tree`]: the build context (through `.dockerignore`)
//! or the merged layers of an earlier stage or another image. Docker's
//! directory semantics: a folder source copies its *contents*; the dest is a
//! folder when it ends in `/`, when there are several sources (globs
//! included), or when it is a folder in the image already; otherwise a file
//! source is written *as* the dest. ADD also unpacks local tarballs (plain,
//! gzip or zstd) into the dest folder. Missing parent folders are created
//! (0755, root). Entries are written sorted, parents first, owned by
//! `--chown` (default root), with `--chmod` applied and mtimes clamped to
//! `SOURCE_DATE_EPOCH`, so the same sources make the same tar.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::context::{Ignore, glob, has_glob, inside};
use crate::overlay::layers::Layers;

/// Somewhere sources are read from.
pub trait Tree {
    /// The file behind `rel` and its metadata, unless absent (or ignored).
    fn stat(&self, rel: &Path) -> Option<(PathBuf, fs::Metadata)>;
    /// The names in the folder `rel`, sorted, ignored ones left out.
    fn list(&self, rel: &Path) -> io::Result<Vec<OsString>>;
    /// What to call it in errors.
    fn describe(&self) -> String;
}

/// The build context folder.
pub struct ContextTree {
    pub root: PathBuf,
    pub ignore: Ignore,
}

impl Tree for ContextTree {
    fn stat(&self, rel: &Path) -> Option<(PathBuf, fs::Metadata)> {
        let full = self.root.join(rel);
        let meta = fs::symlink_metadata(&full).ok()?;
        if !rel.as_os_str().is_empty()
            && self.ignore.excludes(rel)
            && !(meta.is_dir() && self.ignore.has_exceptions())
        {
            return None;
        }
        Some((full, meta))
    }

    fn list(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        let mut names: Vec<OsString> = fs::read_dir(self.root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.retain(|n| self.stat(&rel.join(n)).is_some());
        names.sort();
        Ok(names)
    }

    fn describe(&self) -> String {
        "the build context".into()
    }
}

/// The merged layers of an image (an earlier stage, or `--from=IMAGE`).
pub struct ImageTree {
    pub name: String,
    layers: Layers,
}

impl ImageTree {
    /// `layers` bottom first, as the store lists them.
    pub fn new(name: String, layers: &[PathBuf]) -> ImageTree {
        let lowers = layers.iter().rev().cloned().collect();
        ImageTree {
            name,
            layers: Layers::new(PathBuf::from("/nonexistent-upper"), lowers),
        }
    }
}

impl Tree for ImageTree {
    fn stat(&self, rel: &Path) -> Option<(PathBuf, fs::Metadata)> {
        let found = self.layers.lookup_from(rel, 1).ok()??;
        Some((self.layers.real(found.layer, rel), found.meta))
    }

    fn list(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        let Some(found) = self.layers.lookup_from(rel, 1)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .layers
            .read_dir(rel, &found.dir_layers)?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    fn describe(&self) -> String {
        format!("image {}", self.name)
    }
}

/// One COPY or ADD, substituted and resolved.
pub struct CopyJob<'a> {
    pub tree: &'a dyn Tree,
    pub sources: Vec<String>,
    /// Absolute (the WORKDIR already applied); a trailing `/` kept.
    pub dest: String,
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`.
    pub mode: Option<u32>,
    /// ADD: unpack local tarballs.
    pub extract: bool,
    /// Whether the path (relative) is a folder in the image copied onto.
    pub dir_in_image: &'a dyn Fn(&Path) -> bool,
    pub epoch: Option<u64>,
}

/// One entry of the layer.
enum Node {
    Dir {
        mode: u32,
        mtime: u64,
    },
    File {
        from: PathBuf,
        mode: u32,
        mtime: u64,
    },
    Symlink {
        target: PathBuf,
        mtime: u64,
    },
    /// A file fetched by ADD from a URL.
    Fetched {
        data: Vec<u8>,
        mode: u32,
        mtime: u64,
    },
    /// From an ADDed tarball: its header and bytes.
    Entry {
        header: Box<tar::Header>,
        data: Vec<u8>,
    },
}

/// Writes the layer tar of `job` to `out`; returns how many sources it took.
pub fn write_layer(job: &CopyJob<'_>, out: impl Write) -> Result<usize> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut fetched: Vec<(String, Vec<u8>)> = Vec::new();
    for src in &job.sources {
        if src.contains("://") {
            if !job.extract {
                bail!("COPY does not take URLs ({src}); use ADD");
            }
            fetched.push((src.clone(), fetch(src)?));
            continue;
        }
        let rel = inside(src);
        let matches = if has_glob(src) {
            expand(job.tree, &rel)?
        } else if job.tree.stat(&rel).is_some() {
            vec![rel.clone()]
        } else {
            Vec::new()
        };
        if matches.is_empty() {
            bail!(
                "\"{src}\" not found in {} (or left out by .dockerignore)",
                job.tree.describe()
            );
        }
        found.extend(matches);
    }
    let dest_rel = inside(&job.dest);
    let dest_dir = job.dest.ends_with('/')
        || found.len() + fetched.len() > 1
        || (job.dir_in_image)(&dest_rel)
        || job.dest == "/";
    let mut nodes: BTreeMap<PathBuf, Node> = BTreeMap::new();
    // As Docker: a URL's file is not unpacked, is named after the URL's last
    // path segment when the destination is a folder, and gets mode 0600.
    for (url, data) in fetched {
        let target = if dest_dir {
            let name = url_file_name(&url).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot tell a file name from {url}; give a destination file, not a folder"
                )
            })?;
            dest_rel.join(name)
        } else {
            dest_rel.clone()
        };
        let mode = job.mode.unwrap_or(0o600);
        nodes.insert(
            target,
            Node::Fetched {
                data,
                mode,
                mtime: job.epoch.unwrap_or(0),
            },
        );
    }
    for rel in &found {
        let (full, meta) = job.tree.stat(rel).expect("found above");
        if meta.is_dir() {
            nodes.insert(dest_rel.clone(), dir_node(&meta, job));
            add_dir(job, rel, &dest_rel, &mut nodes)?;
        } else if job.extract && is_tarball(&full) {
            nodes.insert(
                dest_rel.clone(),
                Node::Dir {
                    mode: 0o755,
                    mtime: job.epoch.unwrap_or(0),
                },
            );
            extract(&full, &dest_rel, &mut nodes)
                .with_context(|| format!("cannot unpack {}", rel.display()))?;
        } else {
            let target = if dest_dir {
                dest_rel.join(rel.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            nodes.insert(target, leaf_node(&full, &meta, job)?);
        }
    }
    // Parent folders the image lacks.
    let keys: Vec<PathBuf> = nodes.keys().cloned().collect();
    for key in keys {
        for anc in key.ancestors().skip(1) {
            if anc.as_os_str().is_empty() || nodes.contains_key(anc) || (job.dir_in_image)(anc) {
                continue;
            }
            nodes.insert(
                anc.to_path_buf(),
                Node::Dir {
                    mode: 0o755,
                    mtime: job.epoch.unwrap_or(0),
                },
            );
        }
    }
    // The root folder itself is never an entry.
    nodes.remove(Path::new(""));
    write_nodes(&nodes, job, out)?;
    Ok(found.len() + job.sources.iter().filter(|s| s.contains("://")).count())
}

/// Downloads an ADD source (http or https), up to 1 GiB.
fn fetch(url: &str) -> Result<Vec<u8>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("ADD fetches only http:// and https:// URLs, not {url}");
    }
    const LIMIT: u64 = 1 << 30;
    let mut response = ureq::get(url)
        .call()
        .with_context(|| format!("cannot fetch {url}"))?;
    let mut data = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(LIMIT + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot fetch {url}"))?;
    if data.len() as u64 > LIMIT {
        bail!("{url} is larger than 1 GiB; download it with RUN instead");
    }
    Ok(data)
}

/// The last non-empty path segment of a URL, without query or fragment.
fn url_file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    path.rsplit('/').find(|s| !s.is_empty()).map(str::to_string)
}

/// Paths matching a glob, component by component.
fn expand(tree: &dyn Tree, pattern: &Path) -> Result<Vec<PathBuf>> {
    let mut current = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &current {
            if has_glob(&part) {
                for name in tree.list(base).unwrap_or_default() {
                    if glob(&part, &name.to_string_lossy()) {
                        next.push(base.join(name));
                    }
                }
            } else if tree.stat(&base.join(&part)).is_some() {
                next.push(base.join(&part));
            }
        }
        current = next;
    }
    Ok(current)
}

fn clamp(mtime: i64, epoch: Option<u64>) -> u64 {
    let m = mtime.max(0) as u64;
    epoch.map_or(m, |e| m.min(e))
}

fn dir_node(meta: &fs::Metadata, job: &CopyJob<'_>) -> Node {
    Node::Dir {
        mode: job.mode.unwrap_or(meta.mode() & 0o7777),
        mtime: clamp(meta.mtime(), job.epoch),
    }
}

fn leaf_node(full: &Path, meta: &fs::Metadata, job: &CopyJob<'_>) -> Result<Node> {
    let mtime = clamp(meta.mtime(), job.epoch);
    Ok(if meta.file_type().is_symlink() {
        Node::Symlink {
            target: fs::read_link(full)?,
            mtime,
        }
    } else if meta.is_file() {
        Node::File {
            from: full.to_path_buf(),
            mode: job.mode.unwrap_or(meta.mode() & 0o7777),
            mtime,
        }
    } else {
        bail!("{} is not a file, folder or symlink", full.display())
    })
}

fn add_dir(
    job: &CopyJob<'_>,
    rel: &Path,
    dest: &Path,
    nodes: &mut BTreeMap<PathBuf, Node>,
) -> Result<()> {
    for name in job.tree.list(rel)? {
        let child = rel.join(&name);
        let Some((full, meta)) = job.tree.stat(&child) else {
            continue;
        };
        let target = dest.join(&name);
        if meta.is_dir() {
            nodes.insert(target.clone(), dir_node(&meta, job));
            add_dir(job, &child, &target, nodes)?;
        } else if meta.is_file() || meta.file_type().is_symlink() {
            nodes.insert(target, leaf_node(&full, &meta, job)?);
        }
    }
    Ok(())
}

/// Whether a file is a tarball ADD should unpack: gzip, zstd, or a tar
/// header (`ustar` at offset 257).
fn is_tarball(path: &Path) -> bool {
    let mut head = [0u8; 262];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    matches!(
        crate::store::detect(&head[..n]),
        crate::store::Compression::Gzip | crate::store::Compression::Zstd
    ) || (n >= 262 && &head[257..262] == b"ustar")
}

fn extract(path: &Path, dest: &Path, nodes: &mut BTreeMap<PathBuf, Node>) -> Result<()> {
    let file = fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let mut f = io::BufReader::new(file);
    let n = {
        use std::io::BufRead;
        let buf = f.fill_buf()?;
        let n = buf.len().min(4);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    let reader: Box<dyn Read> = match crate::store::detect(&magic[..n]) {
        crate::store::Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
        crate::store::Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
        _ => Box::new(f),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = inside(&String::from_utf8_lossy(&entry.path_bytes()));
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut header = entry.header().clone();
        if header.entry_type() == tar::EntryType::Link
            && let Some(target) = entry.link_name()?
        {
            header.set_link_name(dest.join(inside(&target.to_string_lossy())))?;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        nodes.insert(
            dest.join(rel),
            Node::Entry {
                header: Box::new(header),
                data,
            },
        );
    }
    Ok(())
}

fn write_nodes(nodes: &BTreeMap<PathBuf, Node>, job: &CopyJob<'_>, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    for (path, node) in nodes {
        let mut h = tar::Header::new_gnu();
        h.set_uid(u64::from(job.uid));
        h.set_gid(u64::from(job.gid));
        h.set_size(0);
        match node {
            Node::Dir { mode, mtime } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_mtime(*mtime);
                b.append_data(&mut h, format!("{}/", path.display()), io::empty())?;
            }
            Node::File { from, mode, mtime } => {
                let f = fs::File::open(from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_mtime(*mtime);
                h.set_size(f.metadata()?.len());
                b.append_data(&mut h, path, f)?;
            }
            Node::Symlink { target, mtime } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_mtime(*mtime);
                b.append_link(&mut h, path, target)?;
            }
            Node::Fetched { data, mode, mtime } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_mtime(*mtime);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..])?;
            }
            Node::Entry { header, data } => {
                let mut h = (**header).clone();
                if let Ok(m) = h.mtime() {
                    h.set_mtime(job.epoch.map_or(m, |e| m.min(e)));
                }
                match h.entry_type() {
                    tar::EntryType::Link | tar::EntryType::Symlink => {
                        let target = h.link_name()?.unwrap_or_default().into_owned();
                        b.append_link(&mut h, path, target)?;
                    }
                    _ => b.append_data(&mut h, path, &data[..])?,
                }
            }
        }
    }
    b.into_inner()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn url_file_names() {
        assert_eq!(
            url_file_name("http://h:1/a/b.txt?x=1#f").as_deref(),
            Some("b.txt")
        );
        assert_eq!(url_file_name("https://h/dir/").as_deref(), Some("dir"));
        assert_eq!(url_file_name("http://h"), None);
        assert_eq!(url_file_name("http://h/"), None);
    }

    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn job<'a>(
        tree: &'a dyn Tree,
        sources: &[&str],
        dest: &str,
        no: &'a dyn Fn(&Path) -> bool,
    ) -> CopyJob<'a> {
        CopyJob {
            tree,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.into(),
            uid: 0,
            gid: 0,
            mode: None,
            extract: false,
            dir_in_image: no,
            epoch: None,
        }
    }

    #[test]
    fn docker_directory_semantics_globs_and_ignore() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path();
        fs::create_dir_all(ctx.join("src/sub")).unwrap();
        fs::write(ctx.join("src/a.txt"), "a").unwrap();
        fs::write(ctx.join("src/sub/b.txt"), "b").unwrap();
        fs::write(ctx.join("one.txt"), "1").unwrap();
        fs::write(ctx.join("two.txt"), "2").unwrap();
        fs::write(ctx.join("x.log"), "").unwrap();
        let tree = ContextTree {
            root: ctx.to_path_buf(),
            ignore: Ignore::parse("*.log\nsrc/sub\n"),
        };
        let usr_exists = |p: &Path| p == Path::new("usr");
        let mut out = Vec::new();
        write_layer(&job(&tree, &["src"], "/app", &usr_exists), &mut out).unwrap();
        assert_eq!(names(&out), ["app/", "app/a.txt"]);
        let mut out = Vec::new();
        write_layer(
            &job(&tree, &["one.txt"], "/usr/renamed", &usr_exists),
            &mut out,
        )
        .unwrap();
        assert_eq!(names(&out), ["usr/renamed"]);
        let mut out = Vec::new();
        write_layer(&job(&tree, &["*.txt"], "/d", &usr_exists), &mut out).unwrap();
        assert_eq!(names(&out), ["d/", "d/one.txt", "d/two.txt"]);
        assert!(write_layer(&job(&tree, &["x.log"], "/", &usr_exists), Vec::new()).is_err());
        assert!(write_layer(&job(&tree, &["missing"], "/", &usr_exists), Vec::new()).is_err());
    }
}
