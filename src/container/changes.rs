//! A container's changes to its image: `diff`'s A/C/D list and `commit`'s
//! layer tar.
//!
//! Theory of operation. The changes are read from the container's folder,
//! by driver:
//!
//! - `overlay`: the upper dir *is* the diff. Whatever it holds was added or
//!   changed (changed when the image's layers have the path too); deletions
//!   are whiteouts in the kernel's form (a 0/0 character device, or a file
//!   with the `user.overlay.whiteout` xattr) or in OCI form (`.wh.NAME`, as
//!   burrow's FUSE overlay writes them); an opaque folder carries
//!   `user.overlay.opaque` (or holds `.wh..wh..opq`).
//! - `vfs`: the private copy is compared with the merged view of the
//!   image's layers: type, mode, owner, size, link target and, for files of
//!   equal size, the bytes (the copy does not keep mtimes, so they cannot
//!   decide).
//!
//! Both give a [`Diff`]: the change list and the tar items, keyed by path so
//! the tar is sorted with parents before children. [`write_tar`] writes the
//! items as an OCI layer: OCI whiteouts, owners as the container sees them
//! (or as recorded, for single-id images: see `overlay::owners`), mtimes
//! clamped to `SOURCE_DATE_EPOCH` when it is set.
//!
//! Owners are the container's: where the store recorded a file's owner in
//! its `user.burrow.owner` xattr (one id mapped), that owner, else `stat`'s.
//!
//! Files the container's users created belong to subordinate ids the caller
//! may not read, so [`diff`] and [`export_layer`] do the reading as root of
//! a user namespace with the container's own maps: there, `stat` shows the
//! ids the container sees, which is what the tar must record.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::record::Record;
use super::rootfs::Driver;
use crate::overlay::layers::Layers;
use crate::overlay::{owners, whiteout};
use crate::paths::Dirs;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    /// Docker's letter for it.
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// One line of `diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: Kind,
    /// Absolute, as the container sees it: `/etc/motd`.
    pub path: String,
}

/// One entry of the layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A file, folder, link or fifo, copied from this path on disk.
    Node(PathBuf),
    /// `.wh.NAME` or `.wh..wh..opq`: an empty file.
    Marker,
}

/// A container's changes: the list and what the layer tar holds.
#[derive(Debug, Default)]
pub struct Diff {
    pub changes: Vec<Change>,
    /// Tar path (relative) → item; path order puts parents first.
    items: BTreeMap<PathBuf, Item>,
}

impl Diff {
    fn change(&mut self, kind: Kind, rel: &Path) {
        self.changes.push(Change {
            kind,
            path: format!("/{}", rel.display()),
        });
    }

    fn whiteout(&mut self, rel: &Path) {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().unwrap_or_default();
        self.items
            .insert(parent.join(whiteout::whiteout_for(name)), Item::Marker);
        self.change(Kind::Deleted, rel);
    }

    fn sort(&mut self) {
        self.changes.sort_by(|a, b| a.path.cmp(&b.path));
    }
}

/// Mount points the sandbox may create in the writable layer; they are not
/// the container's changes (Docker leaves them out too).
const MOUNT_POINTS: [&str; 6] = [
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "dev",
    "proc",
    "sys",
];

fn is_mount_point(rel: &Path, meta: &fs::Metadata) -> bool {
    MOUNT_POINTS.iter().any(|m| rel == Path::new(m)) && (meta.is_dir() || meta.len() == 0)
}

/// Reads the changes of an overlay upper dir. `lowers` are the image's
/// layer folders, top first.
pub fn scan_upper(upper: &Path, lowers: &[PathBuf]) -> io::Result<Diff> {
    let layers = Layers::new(PathBuf::from("/nonexistent-upper"), lowers.to_vec());
    let mut diff = Diff::default();
    walk_upper(upper, Path::new(""), &layers, &mut diff)?;
    diff.sort();
    Ok(diff)
}

fn in_lowers(layers: &Layers, rel: &Path) -> bool {
    matches!(layers.lookup_from(rel, 1), Ok(Some(_)))
}

fn walk_upper(upper: &Path, rel: &Path, layers: &Layers, diff: &mut Diff) -> io::Result<()> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let full = dir.join(&name);
        let path = rel.join(&name);
        let meta = fs::symlink_metadata(&full)?;
        if name == whiteout::OPAQUE {
            diff.items.insert(path, Item::Marker);
            continue;
        }
        if let Some(hidden) = whiteout::whited_out(&name) {
            diff.whiteout(&rel.join(hidden));
            continue;
        }
        if is_kernel_whiteout(&full, &meta) {
            diff.whiteout(&path);
            continue;
        }
        if is_mount_point(&path, &meta) && !in_lowers(layers, &path) {
            continue;
        }
        let existed = in_lowers(layers, &path);
        diff.change(if existed { Kind::Changed } else { Kind::Added }, &path);
        diff.items.insert(path.clone(), Item::Node(full.clone()));
        if meta.is_dir() {
            if existed && has_xattr(&full, "user.overlay.opaque", b"y") {
                diff.items.insert(path.join(whiteout::OPAQUE), Item::Marker);
            }
            walk_upper(upper, &path, layers, diff)?;
        }
    }
    Ok(())
}

/// The kernel overlay's whiteouts: a 0/0 character device, or (where the
/// kernel cannot make one) an empty file marked with an xattr.
fn is_kernel_whiteout(path: &Path, meta: &fs::Metadata) -> bool {
    let ft = meta.file_type();
    (ft.is_char_device() && meta.rdev() == 0)
        || (ft.is_file() && meta.len() == 0 && has_xattr(path, "user.overlay.whiteout", b""))
}

/// Whether `path` (not followed) has the xattr `name`, with `value` unless
/// `value` is empty.
fn has_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    match xattr::get(path, name) {
        Ok(Some(v)) => value.is_empty() || v == value,
        _ => false,
    }
}

/// Compares a vfs copy with the merged view of `lowers` (top first).
pub fn scan_copy(rootfs: &Path, lowers: &[PathBuf]) -> io::Result<Diff> {
    let layers = Layers::new(PathBuf::from("/nonexistent-upper"), lowers.to_vec());
    let mut diff = Diff::default();
    let root = layers
        .lookup_from(Path::new(""), 1)?
        .map(|f| f.dir_layers)
        .unwrap_or_default();
    compare_dir(rootfs, Path::new(""), &layers, &root, &mut diff)?;
    diff.sort();
    Ok(diff)
}

/// Compares one folder; returns whether anything below it changed.
fn compare_dir(
    rootfs: &Path,
    rel: &Path,
    layers: &Layers,
    dir_layers: &[usize],
    diff: &mut Diff,
) -> io::Result<bool> {
    let lower: BTreeMap<_, _> = if dir_layers.is_empty() {
        BTreeMap::new()
    } else {
        layers
            .read_dir(rel, dir_layers)?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    };
    let mut names: Vec<_> = fs::read_dir(rootfs.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut any = false;
    for name in &names {
        let path = rel.join(name);
        let full = rootfs.join(&path);
        let meta = fs::symlink_metadata(&full)?;
        let found = if lower.contains_key(name) {
            layers.lookup_in(dir_layers, &path)?
        } else {
            None
        };
        let Some(found) = found else {
            if is_mount_point(&path, &meta) {
                continue;
            }
            add_tree(rootfs, &path, diff)?;
            any = true;
            continue;
        };
        let old = layers.real(found.layer, &path);
        if meta.is_dir() && found.is_dir() {
            let below = compare_dir(rootfs, &path, layers, &found.dir_layers, diff)?;
            if below || !same_meta(&meta, &found.meta) {
                diff.change(Kind::Changed, &path);
                diff.items.insert(path.clone(), Item::Node(full));
                any = true;
            }
        } else if meta.is_dir() {
            add_tree(rootfs, &path, diff)?;
            any = true;
        } else if !same_meta(&meta, &found.meta) || !same_content(&full, &old, &meta)? {
            diff.change(Kind::Changed, &path);
            diff.items.insert(path, Item::Node(full));
            any = true;
        }
    }
    for name in lower.keys() {
        if !names.contains(name) {
            diff.whiteout(&rel.join(name));
            any = true;
        }
    }
    Ok(any)
}

/// Adds `rel` and everything below it.
fn add_tree(rootfs: &Path, rel: &Path, diff: &mut Diff) -> io::Result<()> {
    let full = rootfs.join(rel);
    diff.change(Kind::Added, rel);
    diff.items
        .insert(rel.to_path_buf(), Item::Node(full.clone()));
    if fs::symlink_metadata(&full)?.is_dir() {
        for entry in fs::read_dir(&full)? {
            add_tree(rootfs, &rel.join(entry?.file_name()), diff)?;
        }
    }
    Ok(())
}

fn same_meta(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() == b.file_type()
        && a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && (a.is_dir() || a.len() == b.len())
}

fn same_content(new: &Path, old: &Path, meta: &fs::Metadata) -> io::Result<bool> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(fs::read_link(new)? == fs::read_link(old)?);
    }
    if !ft.is_file() {
        return Ok(true);
    }
    let (mut a, mut b) = (fs::File::open(new)?, fs::File::open(old)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `SOURCE_DATE_EPOCH`, if set to a number.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// Writes the diff's items as a layer tar. Owners are recorded as `stat`
/// shows them to the calling process (run it in the container's user
/// namespace to get the container's view); mtimes are clamped to `epoch`.
pub fn write_tar(diff: &Diff, out: impl Write, epoch: Option<u64>) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (rel, item) in &diff.items {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Marker => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_mtime(epoch.unwrap_or(0));
                builder.append_data(&mut header, rel, io::empty())?;
            }
            Item::Node(full) => {
                append_node(&mut builder, &mut header, rel, full, epoch, &mut links)?
            }
        }
    }
    builder.into_inner()?.flush()
}

/// The owner a layer should record for `full`: the one in its owner xattr
/// if it has one (a single-id image, where the store could not chown, and
/// copy-up and chown keep the record), else its real owner.
fn owner_of(full: &Path, meta: &fs::Metadata) -> (u32, u32) {
    owners::read(full).map_or((meta.uid(), meta.gid()), |o| (o.uid, o.gid))
}

fn append_node<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    rel: &Path,
    full: &Path,
    epoch: Option<u64>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(full)?;
    let mtime = meta.mtime().max(0) as u64;
    header.set_mtime(epoch.map_or(mtime, |e| mtime.min(e)));
    header.set_mode(meta.mode() & 0o7777);
    let (uid, gid) = owner_of(full, &meta);
    header.set_uid(u64::from(uid));
    header.set_gid(u64::from(gid));
    let ft = meta.file_type();
    if ft.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        builder.append_data(header, format!("{}/", rel.display()), io::empty())
    } else if ft.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        builder.append_link(header, rel, fs::read_link(full)?)
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                return builder.append_link(header, rel, first);
            }
            links.insert(key, rel.to_path_buf());
        }
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        builder.append_data(header, rel, fs::File::open(full)?)
    } else if ft.is_fifo() {
        header.set_entry_type(tar::EntryType::Fifo);
        builder.append_data(header, rel, io::empty())
    } else {
        // Sockets do not belong in images; devices cannot be made rootless.
        Ok(())
    }
}

/// What [`in_namespace`] should produce.
enum Want<'a> {
    List,
    Tar(&'a Path),
}

/// The container's changes, for `diff`.
pub fn diff(dirs: &Dirs, rec: &Record) -> Result<Vec<Change>> {
    in_namespace(dirs, rec, Want::List)
}

/// Writes the container's changes as a layer tar to `dest` (a new file)
/// and returns the change list.
pub fn export_layer(dirs: &Dirs, rec: &Record, dest: &Path) -> Result<Vec<Change>> {
    in_namespace(dirs, rec, Want::Tar(dest))
}

/// Scans (and tars) as root of a user namespace with the container's maps;
/// the child reports through files in a scratch folder.
fn in_namespace(dirs: &Dirs, rec: &Record, want: Want<'_>) -> Result<Vec<Change>> {
    let image = super::image_of(dirs, rec).ok_or_else(|| {
        anyhow!(
            "the image of container {} ({}) is gone; its changes cannot be told apart from it",
            rec.name,
            rec.image
        )
    })?;
    let lowers: Vec<PathBuf> = image.layers.iter().rev().cloned().collect();
    let dir = dirs.container(&rec.id);
    let (driver, source) = match rec.config.storage_driver.unwrap_or(Driver::Vfs) {
        // burrow's FUSE overlay keeps its upper dir as an OCI layer diff.
        Driver::Overlay | Driver::Fuse => (Driver::Overlay, dir.join("upper")),
        Driver::Vfs => (Driver::Vfs, dir.join("rootfs")),
    };
    if !source.is_dir() {
        bail!(
            "container {} has no {} folder; was it created by this version of burrow?",
            rec.name,
            source.display()
        );
    }
    // The report is small and goes to the runtime folder: `diff` must work
    // even when the container has filled the data folder's disk.
    let report = ScratchDir::create(&dirs.runtime, "changes")?;
    let list_path = report.0.join("changes.json");
    let err_path = report.0.join("error");
    let epoch = source_date_epoch();
    let ids = super::host_ids();
    let code = crate::sandbox::as_namespace_root(
        nix::sched::CloneFlags::empty(),
        &ids.uid_map,
        &ids.gid_map,
        || {
            let result = (|| -> io::Result<Vec<Change>> {
                let diff = match driver {
                    Driver::Overlay | Driver::Fuse => scan_upper(&source, &lowers)?,
                    Driver::Vfs => scan_copy(&source, &lowers)?,
                };
                if let Want::Tar(dest) = &want {
                    let file = fs::File::create(dest)?;
                    let mut out = io::BufWriter::new(file);
                    write_tar(&diff, &mut out, epoch)?;
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                }
                Ok(diff.changes)
            })();
            match result.and_then(|c| {
                fs::write(
                    &list_path,
                    serde_json::to_vec(&c).map_err(io::Error::other)?,
                )
            }) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = fs::write(&err_path, e.to_string());
                    1
                }
            }
        },
    )?;
    if code != 0 {
        let why = fs::read_to_string(&err_path).unwrap_or_else(|_| format!("exit code {code}"));
        bail!(
            "cannot read the changes of container {} in {}: {why}",
            rec.name,
            source.display()
        );
    }
    let bytes = fs::read(&list_path).context("the change list is missing")?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// What `commit` adds beyond the changes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-c` instructions, applied to the image's run config in order.
    pub changes: Vec<crate::image::Change>,
    /// `-m`: the history comment.
    pub message: Option<String>,
    pub author: Option<String>,
    /// The history line; empty for Docker's default (the container's command).
    pub created_by: String,
    pub reference: Option<crate::image::Reference>,
}

/// Turns the container's changes into a new image layer on top of its image
/// (no layer when nothing changed).
pub fn commit(dirs: &Dirs, rec: &Record, opts: &CommitOptions) -> Result<crate::store::Image> {
    let image = super::image_of(dirs, rec).ok_or_else(|| {
        anyhow!(
            "the image of container {} ({}) is gone",
            rec.name,
            rec.image
        )
    })?;
    let scratch = ScratchDir::create(&dirs.tmp(), "commit")?;
    let tar = scratch.0.join("layer.tar");
    let changes = export_layer(dirs, rec, &tar)?;
    let mut run_config = image.config.config().clone().unwrap_or_default();
    for c in &opts.changes {
        c.apply(&mut run_config);
    }
    let created_by = if opts.created_by.is_empty() {
        shell_words(&rec.command)
    } else {
        opts.created_by.clone()
    };
    let new = crate::store::NewImage {
        parent: Some(&image),
        config: run_config,
        created_by,
        comment: opts.message.clone(),
        author: opts.author.clone(),
        created: created_now(),
        reference: opts.reference.as_ref(),
        intermediate: false,
    };
    let store = crate::store::Store::open(dirs)?;
    if changes.is_empty() {
        return Ok(store.commit(None, &new)?);
    }
    let mut file =
        fs::File::open(&tar).with_context(|| format!("cannot open {}", tar.display()))?;
    Ok(store.commit(Some(&mut file), &new)?)
}

/// The time to record as "created": `SOURCE_DATE_EPOCH` when set, so a
/// rebuild gives the same image, else now.
pub fn created_now() -> String {
    match source_date_epoch() {
        Some(s) => {
            crate::timefmt::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        }
        None => crate::timefmt::now(),
    }
}

/// A command as one line, words with spaces quoted.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(char::is_whitespace) {
                format!("{w:?}")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A folder under `tmp/`, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(base: &Path, purpose: &str) -> Result<ScratchDir> {
        let path = base.join(format!("{purpose}-{}", &super::names::new_id()[..16]));
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn upper_dir_with_oci_whiteouts_becomes_changes_and_a_sorted_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::create_dir_all(lower.join("opq/old")).unwrap();
        fs::write(lower.join("etc/motd"), "old").unwrap();
        fs::write(lower.join("bin/ls"), "x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::create_dir_all(upper.join("bin")).unwrap();
        fs::create_dir_all(upper.join("data")).unwrap();
        fs::create_dir_all(upper.join("opq")).unwrap();
        fs::write(upper.join("opq/.wh..wh..opq"), "").unwrap();
        fs::write(upper.join("etc/motd"), "hi\n").unwrap();
        fs::write(upper.join("bin/.wh.ls"), "").unwrap();
        symlink("motd", upper.join("etc/link")).unwrap();
        let diff = scan_upper(&upper, &[lower]).unwrap();
        let lines: Vec<String> = diff
            .changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        assert_eq!(
            lines,
            [
                "C /bin",
                "D /bin/ls",
                "A /data",
                "C /etc",
                "A /etc/link",
                "C /etc/motd",
                "C /opq"
            ]
        );
        let mut tar = Vec::new();
        write_tar(&diff, &mut tar, Some(5)).unwrap();
        assert_eq!(
            names(&tar),
            [
                "bin/",
                "bin/.wh.ls",
                "data/",
                "etc/",
                "etc/link",
                "etc/motd",
                "opq/",
                "opq/.wh..wh..opq"
            ]
        );
        let mut archive = tar::Archive::new(&tar[..]);
        for e in archive.entries().unwrap() {
            assert!(e.unwrap().header().mtime().unwrap() <= 5);
        }
    }

    /// Single-id images: a file that records an owner is written with the
    /// recorded one.
    #[test]
    fn recorded_owners_reach_the_layer_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&upper).unwrap();
        let f = upper.join("f");
        fs::write(&f, "f").unwrap();
        if xattr::set(&f, owners::OWNER_RECORD, b"1000:100:644").is_err() {
            eprintln!("skipped: no user xattrs on the temporary folder's filesystem");
            return;
        }
        let diff = scan_upper(&upper, &[lower]).unwrap();
        let mut tar = Vec::new();
        write_tar(&diff, &mut tar, None).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let header = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().clone())
            .find(|h| h.path().unwrap().as_os_str() == "f")
            .expect("f in the tar");
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (1000, 100));
    }

    #[test]
    fn copy_compared_with_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, root) = (tmp.path().join("lower"), tmp.path().join("root"));
        for d in [&lower, &root] {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::create_dir_all(d.join("bin")).unwrap();
            fs::write(d.join("etc/same"), "same").unwrap();
            fs::write(d.join("etc/motd"), "old").unwrap();
        }
        fs::write(lower.join("bin/ls"), "x").unwrap();
        fs::write(root.join("etc/motd"), "new").unwrap();
        fs::create_dir(root.join("data")).unwrap();
        fs::write(root.join("data/f"), "f").unwrap();
        let diff = scan_copy(&root, &[lower]).unwrap();
        let lines: Vec<String> = diff
            .changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        assert_eq!(
            lines,
            [
                "C /bin",
                "D /bin/ls",
                "A /data",
                "A /data/f",
                "C /etc",
                "C /etc/motd"
            ]
        );
        let mut tar = Vec::new();
        write_tar(&diff, &mut tar, None).unwrap();
        assert_eq!(
            names(&tar),
            ["bin/", "bin/.wh.ls", "data/", "data/f", "etc/", "etc/motd"]
        );
    }
}
