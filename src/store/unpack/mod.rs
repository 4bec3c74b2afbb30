//! Unpacking a tar stream into a layer folder.
//!
//! The tar crate parses the stream (headers, pax records, GNU long names);
//! this module makes the files itself, through [`tree::Tree`]: every entry
//! relative to an open directory fd, resolved beneath the layer folder by
//! the kernel. That replaces the tar crate's own unpacking, which walked
//! each entry's path again for every step (`create_dir_all`, two
//! `canonicalize` per entry, then `chmod`, `utimes` and our `lchown` and
//! `chmod` by path), with one `openat`, the writes, and a `futimens` for most
//! files.
//!
//! What becomes of an entry:
//! - files get their mode and mtime; directories their mode, set last
//!   (children first), so a read-only directory does not refuse its own
//!   children; symlinks their mtime; hard links share their target's inode;
//!   FIFOs are made; block and character devices are skipped and counted,
//!   since `mknod` needs privilege.
//! - owners follow [`Owners`]: applied (the caller is root of a user
//!   namespace that maps them; a chown clears setuid, so the mode is set
//!   after it), recorded in [`OWNER_XATTR`] (not on symlinks, which cannot
//!   carry a `user.*` xattr), or dropped. An empty uid or gid field reads as
//!   0, as Docker's tar reader does.
//! - names with `..` are refused, a leading `/` is dropped; a parent that
//!   leads out of the folder through a symlink is refused by the kernel.
//! - whiteouts (`.wh.*`) stay plain files: the overlay interprets them.
//! - an entry for a path that exists replaces it, as later entries of an
//!   archive do; an existing directory is kept.

mod tree;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use nix::sys::stat::{Mode, fchmod, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown};

use super::layer::{LayerError, OWNER_XATTR, Owners};
use crate::image::OwnerRecord;
use tree::{Ids, RelPath, Tree};

/// Counts of what was unpacked.
#[derive(Default)]
pub struct Stats {
    pub entries: u64,
    pub newest_mtime: u64,
    pub size: u64,
    pub skipped_devices: u64,
}

/// File contents are copied through a buffer this large: one `write` for
/// most files.
const COPY_BUFFER: usize = 256 << 10;

/// Files at least this large start their writeback as soon as they are
/// written (see [`super::sys::start_writeback`]); smaller ones are left to
/// the layer's flush, which writes them together. In a Debian rootfs the
/// files from 64 KiB up are one file in fifteen and two thirds of the
/// bytes; the flush of a one-layer image took 40-69 ms with 256 KiB here,
/// 24-29 ms with 64 KiB and 18-24 ms with 16 KiB (four times the calls).
const WRITEBACK_FROM: u64 = 64 << 10;

/// Unpacks a plain tar stream, up to its end-of-archive marker, into the
/// existing folder `dest`.
pub fn unpack_tar(tar: impl Read, dest: &Path, owners: Owners) -> Result<Stats, LayerError> {
    let mut unpacker = Unpacker::new(dest, owners)?;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(LayerError::Read)? {
        let entry = entry.map_err(|e| LayerError::Read(one_line(e)))?;
        unpacker.entry(entry)?;
    }
    unpacker.finish()
}

/// A directory's metadata, set once everything inside it exists.
struct DeferredDir {
    path: RelPath,
    meta: Meta,
}

/// What the header says about an entry's owner, mode and mtime.
#[derive(Clone, Copy)]
struct Meta {
    ids: Ids,
    mode: u32,
    mtime: i64,
}

struct Unpacker {
    tree: Tree,
    owners: Owners,
    /// Who new entries belong to without a chown.
    own_ids: Ids,
    /// The process umask, which narrows the mode `openat` creates a file
    /// with; `None` when unknown (every file then gets an `fchmod`).
    umask: Option<u32>,
    directories: Vec<DeferredDir>,
    stats: Stats,
    buffer: Vec<u8>,
}

impl Unpacker {
    fn new(dest: &Path, owners: Owners) -> Result<Unpacker, LayerError> {
        let tree = Tree::open(dest).map_err(|source| LayerError::Unpack {
            path: dest.display().to_string(),
            source,
        })?;
        Ok(Unpacker {
            tree,
            owners,
            own_ids: Ids {
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
            },
            umask: current_umask(),
            directories: Vec::new(),
            stats: Stats::default(),
            buffer: vec![0; COPY_BUFFER],
        })
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        self.stats.entries += 1;
        let header = entry.header();
        let mtime = header.mtime().unwrap_or(0);
        self.stats.newest_mtime = self.stats.newest_mtime.max(mtime);
        let kind = header.entry_type();
        let name = entry.path_bytes().into_owned();
        let shown = || String::from_utf8_lossy(&name).into_owned();
        let Some(path) = RelPath::parse(&name).map_err(|_| LayerError::PathEscape(shown()))? else {
            // The folder itself (`./`): it is ours already.
            return Ok(());
        };
        // A zero mtime becomes 1, as the tar crate did: some tools take 0
        // for "unknown".
        let meta = Meta {
            ids: ids_of(header).map_err(|source| unpack_err(&name, source))?,
            mode: header.mode().unwrap_or(0) & 0o7777,
            mtime: i64::try_from(mtime.max(1)).unwrap_or(i64::MAX),
        };
        // Old (pre-POSIX) archives mark directories with a trailing slash only.
        let old_style_dir = kind.is_file() && header.as_ustar().is_none() && name.ends_with(b"/");
        let made = if kind.is_block_special() || kind.is_character_special() {
            self.stats.skipped_devices += 1;
            Ok(())
        } else if kind.is_dir() || old_style_dir {
            self.tree.make_dir(&path).map(|()| {
                self.directories.push(DeferredDir { path, meta });
            })
        } else if kind.is_symlink() {
            self.symlink(&entry, &path, meta)
        } else if kind.is_hard_link() {
            let target = link_target(&entry, &name)?;
            self.tree.hard_link(&path, &target)
        } else if kind.is_fifo() {
            self.fifo(&path, meta)
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            Ok(())
        } else {
            // Regular, contiguous, sparse and any type we do not know:
            // POSIX says an unknown type is a regular file.
            if kind.is_file() || kind.is_contiguous() {
                self.stats.size += entry.size();
            }
            self.file(&mut entry, &path, meta)
        };
        made.map_err(|source| {
            if tree::is_escape(&source) {
                LayerError::PathEscape(shown())
            } else {
                unpack_err(&name, source)
            }
        })
    }

    fn file(&mut self, data: &mut impl Read, path: &RelPath, meta: Meta) -> io::Result<()> {
        let file = self.tree.create_file(path, meta.mode)?;
        let written = copy_contents(data, &file, &mut self.buffer)?;
        if written >= WRITEBACK_FROM {
            // Best effort: a failure here is only a later, longer flush.
            let _ = super::sys::start_writeback(&file, 0, 0);
        }
        let chowned = self.apply_ids(&file, meta.ids)?;
        // openat's mode went through the umask; a chown cleared setuid and
        // setgid; the kernel may drop setgid for a group we are not in.
        let narrowed = self.umask.is_none_or(|u| meta.mode & u != 0);
        if chowned || narrowed || meta.mode & 0o7000 != 0 {
            fchmod(&file, Mode::from_bits_truncate(meta.mode))?;
        }
        let t = TimeSpec::new(meta.mtime, 0);
        futimens(&file, &t, &t)?;
        self.record(&file, meta);
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        path: &RelPath,
        meta: Meta,
    ) -> io::Result<()> {
        let target = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "the symlink has no target")
            })?;
        self.tree.symlink(path, &target)?;
        if self.owners == Owners::Keep && meta.ids != self.own_ids {
            self.tree
                .chown(path, meta.ids)
                .map_err(owner_err(meta.ids))?;
        }
        self.tree.set_mtime(path, meta.mtime)
    }

    fn fifo(&mut self, path: &RelPath, meta: Meta) -> io::Result<()> {
        self.tree.fifo(path, meta.mode)?;
        if self.owners == Owners::Keep && meta.ids != self.own_ids {
            self.tree
                .chown(path, meta.ids)
                .map_err(owner_err(meta.ids))?;
        }
        self.tree.chmod(path, meta.mode)?;
        self.tree.set_mtime(path, meta.mtime)?;
        if self.owners == Owners::Record && meta.ids != ROOT {
            // Best effort, as for files: only the owner is lost.
            let value = record_of(meta);
            let _ =
                super::sys::lsetxattr(&self.tree.host_path(path), OWNER_XATTR, value.as_bytes());
        }
        Ok(())
    }

    /// Gives an open entry its owner when owners are kept and it is not
    /// ours already; true if it chowned.
    fn apply_ids(&self, file: &File, ids: Ids) -> io::Result<bool> {
        if self.owners != Owners::Keep || ids == self.own_ids {
            return Ok(false);
        }
        let (uid, gid) = (Uid::from_raw(ids.uid), Gid::from_raw(ids.gid));
        fchown(file, Some(uid), Some(gid)).map_err(|e| owner_err(ids)(e.into()))?;
        Ok(true)
    }

    /// Best effort: a filesystem without user xattrs loses only the owner.
    fn record(&self, file: &File, meta: Meta) {
        if self.owners == Owners::Record && meta.ids != ROOT {
            let _ = xattr::FileExt::set_xattr(file, OWNER_XATTR, record_of(meta).as_bytes());
        }
    }

    /// Sets each directory's owner and mode, children before parents (they
    /// sort after them), so a read-only parent is made so only once its
    /// children are done.
    fn finish(mut self) -> Result<Stats, LayerError> {
        let mut directories = std::mem::take(&mut self.directories);
        directories.sort_by(|a, b| b.path.as_bytes().cmp(a.path.as_bytes()));
        for dir in directories {
            self.directory(&dir)
                .map_err(|source| unpack_err(dir.path.as_bytes(), source))?;
        }
        if self.stats.entries == 0 {
            return Err(LayerError::Empty);
        }
        Ok(self.stats)
    }

    fn directory(&self, dir: &DeferredDir) -> io::Result<()> {
        let file = self.tree.open_dir(&dir.path)?;
        self.apply_ids(&file, dir.meta.ids)?;
        fchmod(&file, Mode::from_bits_truncate(dir.meta.mode))?;
        self.record(&file, dir.meta);
        Ok(())
    }
}

const ROOT: Ids = Ids { uid: 0, gid: 0 };

fn record_of(meta: Meta) -> String {
    OwnerRecord {
        uid: meta.ids.uid,
        gid: meta.ids.gid,
        mode: meta.mode,
    }
    .format()
}

/// uid and gid from a header; an empty or unreadable field is 0.
fn ids_of(h: &tar::Header) -> io::Result<Ids> {
    let id = |n: u64| {
        u32::try_from(n).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("owner id {n} is too large"),
            )
        })
    };
    Ok(Ids {
        uid: id(h.uid().unwrap_or(0))?,
        gid: id(h.gid().unwrap_or(0))?,
    })
}

/// A hard link's target, inside the tree like any entry's name.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &[u8]) -> Result<RelPath, LayerError> {
    let raw = entry.link_name_bytes().unwrap_or_default();
    let shown = || String::from_utf8_lossy(name).into_owned();
    match RelPath::parse(&raw) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => Err(unpack_err(
            name,
            io::Error::new(io::ErrorKind::InvalidData, "the hard link has no target"),
        )),
        Err(_) => Err(LayerError::PathEscape(shown())),
    }
}

/// Copies an entry's contents into `file` through `buffer`, filled before
/// each write: one `write` per buffer, whatever sizes the stream reads in.
fn copy_contents(data: &mut impl Read, mut file: &File, buffer: &mut [u8]) -> io::Result<u64> {
    let mut written = 0;
    loop {
        let n = super::layer::read_up_to(data, buffer)?;
        if n == 0 {
            return Ok(written);
        }
        file.write_all(&buffer[..n])?;
        written += n as u64;
        if n < buffer.len() {
            return Ok(written);
        }
    }
}

fn unpack_err(name: &[u8], source: io::Error) -> LayerError {
    LayerError::Unpack {
        path: String::from_utf8_lossy(name).into_owned(),
        source,
    }
}

fn owner_err(ids: Ids) -> impl Fn(io::Error) -> io::Error {
    move |e| {
        io::Error::new(
            e.kind(),
            format!("cannot give it owner {}:{}: {e}", ids.uid, ids.gid),
        )
    }
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)`
/// would change it for every thread for a moment).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The tar crate quotes raw header bytes in its errors; keep one short,
/// printable line so a file that is not a tarball does not flood the terminal.
fn one_line(e: io::Error) -> io::Error {
    const MAX: usize = 80;
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let printable = |c: char| !c.is_control() && c != char::REPLACEMENT_CHARACTER;
    if first.len() == text.len() && first.chars().count() <= MAX && first.chars().all(printable) {
        return e;
    }
    let short: String = first
        .chars()
        .take(MAX)
        .map(|c| if printable(c) { c } else { '?' })
        .collect();
    io::Error::new(e.kind(), format!("{short}…"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layer::recorded_owner;
    use crate::store::testutil::{add_file, tarball};
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: Option<&str>) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(3_000);
        h.set_entry_type(kind);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, path, io::empty()).unwrap();
    }

    fn owned(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, ids: (u64, u64)) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(if kind.is_dir() { 0o2750 } else { 0o4711 });
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        h.set_mtime(5);
        h.set_entry_type(kind);
        b.append_data(&mut h, path, io::empty()).unwrap();
    }

    /// A raw GNU header whose name and link name are written as they are,
    /// bypassing the tar crate's own checks.
    fn add_raw(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_size(0);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    fn run(tar: &[u8], dest: &Path, owners: Owners) -> Result<Stats, LayerError> {
        unpack_tar(tar, dest, owners)
    }

    #[test]
    fn whiteouts_stay_plain_files_and_hard_links_share_the_inode() {
        let tar = tarball(|b| {
            add(b, "etc/", tar::EntryType::Directory, None);
            add_file(b, "etc/.wh.gone", b"", 0o644);
            add_file(b, "etc/.wh..wh..opq", b"", 0o644);
            add_file(b, "usr/bin/perl", b"perl", 0o755);
            add(
                b,
                "usr/bin/perl5",
                tar::EntryType::Link,
                Some("usr/bin/perl"),
            );
            // An absolute target is inside the tree too.
            add(
                b,
                "usr/bin/perl6",
                tar::EntryType::Link,
                Some("/usr/bin/perl"),
            );
            add(b, "fifo", tar::EntryType::Fifo, None);
        });
        let dir = tempfile::tempdir().unwrap();
        let stats = run(&tar, dir.path(), Owners::Drop).unwrap();
        assert_eq!(stats.entries, 7);
        assert_eq!(stats.size, 4);
        let root = dir.path();
        assert!(root.join("etc/.wh.gone").is_file());
        assert!(root.join("etc/.wh..wh..opq").is_file());
        let perl = fs::metadata(root.join("usr/bin/perl")).unwrap();
        assert_eq!(perl.nlink(), 3);
        assert_eq!(perl.mtime(), 1_000_000);
        assert_eq!(perl.mode() & 0o7777, 0o755);
        let five = fs::metadata(root.join("usr/bin/perl5")).unwrap();
        assert_eq!(five.ino(), perl.ino());
        // Implicit parents are made like `mkdir -p`.
        assert!(root.join("usr/bin").is_dir());
        assert!(
            fs::symlink_metadata(root.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn refuses_escapes_by_name_link_or_symlinked_parent() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "a/../../x",
                tarball(|b| add_raw(b, "a/../../x", tar::EntryType::Regular, "")),
            ),
            (
                "link",
                tarball(|b| add_raw(b, "link", tar::EntryType::Link, "../../secret")),
            ),
            (
                "evil/owned",
                tarball(|b| {
                    add(b, "evil", tar::EntryType::Symlink, Some(&target));
                    add_file(b, "evil/owned", b"x", 0o644);
                }),
            ),
            (
                "up/owned",
                tarball(|b| {
                    add(b, "up", tar::EntryType::Symlink, Some("../.."));
                    add(b, "up/owned", tar::EntryType::Directory, None);
                }),
            ),
            (
                "hard",
                tarball(|b| {
                    add(b, "evil", tar::EntryType::Symlink, Some(&target));
                    add(b, "hard", tar::EntryType::Link, Some("evil/secret"));
                }),
            ),
        ];
        for (name, tar) in cases {
            let dir = tempfile::tempdir().unwrap();
            let err = run(&tar, dir.path(), Owners::Drop).err();
            assert!(
                matches!(err, Some(LayerError::PathEscape(ref p)) if p == name),
                "{name}: {err:?}"
            );
            assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1, "{name}");
        }
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tar = tarball(|b| {
            add_file(b, "f", b"first", 0o644);
            add_file(b, "f", b"second", 0o600);
            add(b, "l", tar::EntryType::Symlink, Some("f"));
            add(b, "l", tar::EntryType::Symlink, Some("g"));
            add(b, "d/", tar::EntryType::Directory, None);
            add(b, "d/", tar::EntryType::Directory, None);
        });
        let dir = tempfile::tempdir().unwrap();
        run(&tar, dir.path(), Owners::Drop).unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"second");
        let f = fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!(f.mode() & 0o777, 0o600);
        assert_eq!(fs::read_link(dir.path().join("l")).unwrap(), Path::new("g"));
        let d = fs::metadata(dir.path().join("d")).unwrap();
        assert_eq!(d.mode() & 0o777, 0o755);
    }

    #[test]
    fn recorded_owners_go_in_xattrs_except_on_symlinks() {
        let tar = tarball(|b| {
            owned(b, "dir/", tar::EntryType::Directory, (0, 50));
            owned(b, "dir/tool", tar::EntryType::Regular, (1000, 1001));
            owned(b, "root-owned", tar::EntryType::Regular, (0, 0));
            add(b, "link", tar::EntryType::Symlink, Some("dir/tool"));
        });
        let dir = tempfile::tempdir().unwrap();
        run(&tar, dir.path(), Owners::Record).unwrap();
        let root = dir.path();
        if xattr::get(root.join("dir/tool"), OWNER_XATTR).is_err() {
            eprintln!("skipped: {} has no user xattrs", root.display());
            return;
        }
        assert_eq!(
            recorded_owner(&root.join("dir/tool")),
            Some((1000, 1001, 0o4711))
        );
        assert_eq!(recorded_owner(&root.join("dir")), Some((0, 50, 0o2750)));
        assert_eq!(recorded_owner(&root.join("root-owned")), None);
        let tool = fs::metadata(root.join("dir/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4711);
        assert_eq!(tool.mtime(), 5);
    }

    #[test]
    fn kept_owners_are_chowned_and_keep_setuid() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root (the helper is root of a user namespace)");
            return;
        }
        let tar = tarball(|b| {
            owned(b, "dir/", tar::EntryType::Directory, (7, 8));
            owned(b, "dir/tool", tar::EntryType::Regular, (1000, 1001));
            owned(b, "dir/fifo", tar::EntryType::Fifo, (3, 4));
            add(b, "dir/link", tar::EntryType::Symlink, Some("tool"));
        });
        let dir = tempfile::tempdir().unwrap();
        run(&tar, dir.path(), Owners::Keep).unwrap();
        let root = dir.path();
        let ids = |p: &str| {
            let m = fs::symlink_metadata(root.join(p)).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(ids("dir"), (7, 8, 0o2750));
        assert_eq!(ids("dir/tool"), (1000, 1001, 0o4711));
        assert_eq!(ids("dir/fifo"), (3, 4, 0o4711));
        assert_eq!(ids("dir/link").0, 0);
    }
}
