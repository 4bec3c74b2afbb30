//! A layer folder being filled, addressed by file descriptor.
//!
//! Every entry is made relative to its parent directory's fd, never by a
//! path from the process's root. The parent is opened with
//! `openat2(RESOLVE_BENEATH)`, so the kernel refuses (EXDEV) any walk that
//! would leave the layer folder: a `..`, an absolute symlink, a relative
//! symlink that climbs out. The entry itself is made with the `*at` calls,
//! which never follow a symlink in the last component (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`, `O_EXCL`). No `realpath`, no path re-walk per
//! metadata call.
//!
//! The parent of the previous entry stays open: archives list a
//! directory's entries together, so most entries cost no path walk. It is
//! forgotten whenever something is removed, since the removed entry may
//! have been (or led to) that directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fstatat, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, mkfifoat, symlinkat, unlinkat};

/// A path inside the tree: `/`-separated normal components, none empty,
/// `.` or `..`. Leading `/` and `.` components of the archive's name are
/// dropped, as tar itself does, so an absolute name lands inside the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    bytes: Vec<u8>,
    /// Where the last component starts.
    name_at: usize,
}

/// A name with a `..` component: it could climb out of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Climbs;

impl RelPath {
    /// `Ok(None)` for the tree's root itself (`./`, `/`).
    pub fn parse(raw: &[u8]) -> Result<Option<RelPath>, Climbs> {
        let mut bytes = Vec::with_capacity(raw.len());
        let mut name_at = 0;
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(Climbs),
                _ => {
                    if !bytes.is_empty() {
                        bytes.push(b'/');
                    }
                    name_at = bytes.len();
                    bytes.extend_from_slice(part);
                }
            }
        }
        Ok((!bytes.is_empty()).then_some(RelPath { bytes, name_at }))
    }

    /// The parent's path; empty for an entry at the top.
    pub fn parent(&self) -> &[u8] {
        &self.bytes[..self.name_at.saturating_sub(1)]
    }

    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(&self.bytes[self.name_at..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.bytes)
    }
}

/// An owner to give an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// The folder being filled.
pub struct Tree {
    root: OwnedFd,
    /// The folder's path, only for the calls that have no fd form.
    path: PathBuf,
    /// The last parent opened, by its path inside the tree.
    parent: Option<(Vec<u8>, OwnedFd)>,
}

/// Mode bits a chmod may set.
const MODE_BITS: u32 = 0o7777;

impl Tree {
    pub fn open(dest: &Path) -> io::Result<Tree> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(dest, flags, Mode::empty())?;
        Ok(Tree {
            root,
            path: dest.to_path_buf(),
            parent: None,
        })
    }

    /// Creates a regular file (replacing whatever was there) with `mode`,
    /// which the umask may narrow; open for writing.
    pub fn create_file(&mut self, path: &RelPath, mode: u32) -> io::Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(mode & MODE_BITS);
        let fd = self.replace(path, |dir, name| openat(dir, name, flags, mode))?;
        Ok(File::from(fd))
    }

    /// Makes a directory (owner-only until [`Tree::open_dir`] gives it its
    /// mode at the end), keeping one that exists; replaces anything else.
    pub fn make_dir(&mut self, path: &RelPath) -> io::Result<()> {
        let private = Mode::from_bits_truncate(0o700);
        let dir = self.parent_fd(path.parent())?;
        match mkdirat(dir, path.name(), private) {
            Err(Errno::EEXIST) if is_dir(dir, path.name()) => Ok(()),
            Err(Errno::EEXIST) => self.replace(path, |dir, name| mkdirat(dir, name, private)),
            other => Ok(other?),
        }
    }

    pub fn symlink(&mut self, path: &RelPath, target: &[u8]) -> io::Result<()> {
        let target = OsStr::from_bytes(target);
        self.replace(path, |dir, name| symlinkat(target, dir, name))
    }

    /// Links `path` to the existing entry `target`, itself resolved
    /// beneath the root (a symlink as its last component is linked, not
    /// followed).
    pub fn hard_link(&mut self, path: &RelPath, target: &RelPath) -> io::Result<()> {
        let target_dir = self.open_beneath(target.parent(), OFlag::O_PATH)?;
        self.replace(path, |dir, name| {
            linkat(&target_dir, target.name(), dir, name, AtFlags::empty())
        })
    }

    pub fn fifo(&mut self, path: &RelPath, mode: u32) -> io::Result<()> {
        let mode = Mode::from_bits_truncate(mode & MODE_BITS);
        self.replace(path, |dir, name| mkfifoat(dir, name, mode))
    }

    /// Gives the entry itself (a symlink is not followed) an owner.
    pub fn chown(&mut self, path: &RelPath, ids: Ids) -> io::Result<()> {
        let dir = self.parent_fd(path.parent())?;
        let (uid, gid) = (Some(Uid::from_raw(ids.uid)), Some(Gid::from_raw(ids.gid)));
        Ok(fchownat(
            dir,
            path.name(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// Sets a mode; for entries with no fd of their own (FIFOs).
    pub fn chmod(&mut self, path: &RelPath, mode: u32) -> io::Result<()> {
        let dir = self.parent_fd(path.parent())?;
        let mode = Mode::from_bits_truncate(mode & MODE_BITS);
        // A FIFO has no fd we could open without blocking; following is
        // moot, as nothing else writes into the tree.
        let flag = nix::sys::stat::FchmodatFlags::FollowSymlink;
        Ok(nix::sys::stat::fchmodat(dir, path.name(), mode, flag)?)
    }

    /// Sets access and modification time of the entry itself.
    pub fn set_mtime(&mut self, path: &RelPath, mtime: i64) -> io::Result<()> {
        let dir = self.parent_fd(path.parent())?;
        let t = TimeSpec::new(mtime, 0);
        let flag = UtimensatFlags::NoFollowSymlink;
        Ok(utimensat(dir, path.name(), &t, &t, flag)?)
    }

    /// Opens a directory of the tree to set its metadata (not a symlink).
    pub fn open_dir(&self, path: &RelPath) -> io::Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(beneath());
        let fd = openat2(&self.root, path.as_os_str(), how).map_err(openat2_error)?;
        Ok(File::from(fd))
    }

    /// The entry's path outside the tree, for the few calls with no `*at` form.
    pub fn host_path(&self, path: &RelPath) -> PathBuf {
        self.path.join(path.as_os_str())
    }

    /// Runs `make` in the entry's parent; when something is already there,
    /// removes it and runs `make` again: an archive's last entry for a path
    /// wins. A directory is removed only when empty.
    fn replace<T>(
        &mut self,
        path: &RelPath,
        make: impl Fn(BorrowedFd<'_>, &OsStr) -> nix::Result<T>,
    ) -> io::Result<T> {
        let dir = self.parent_fd(path.parent())?;
        match make(dir, path.name()) {
            Err(Errno::EEXIST) => {}
            other => return Ok(other?),
        }
        match unlinkat(dir, path.name(), UnlinkatFlags::NoRemoveDir) {
            Err(Errno::EISDIR) => unlinkat(dir, path.name(), UnlinkatFlags::RemoveDir)?,
            other => other?,
        }
        self.parent = None;
        let dir = self.parent_fd(path.parent())?;
        Ok(make(dir, path.name())?)
    }

    /// The directory `parent` (a path inside the tree), created with its
    /// missing ancestors if need be (mode 0755, as `mkdir -p`).
    fn parent_fd(&mut self, parent: &[u8]) -> io::Result<BorrowedFd<'_>> {
        if parent.is_empty() {
            return Ok(self.root.as_fd());
        }
        let cached = self.parent.as_ref().is_some_and(|(p, _)| p == parent);
        if !cached {
            let fd = match self.open_beneath(parent, OFlag::O_PATH) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.make_parents(parent)?,
                other => other?,
            };
            self.parent = Some((parent.to_vec(), fd));
        }
        Ok(self.parent.as_ref().expect("just cached").1.as_fd())
    }

    /// Makes each missing directory of `parent`, resolving every prefix
    /// beneath the root again; rare (archives list directories before
    /// their contents), so its cost does not matter.
    fn make_parents(&self, parent: &[u8]) -> io::Result<OwnedFd> {
        let open = Mode::from_bits_truncate(0o755);
        let mut dir: Option<OwnedFd> = None;
        let mut end = 0;
        for part in parent.split(|&b| b == b'/') {
            end += part.len();
            let at = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
            match mkdirat(at, OsStr::from_bytes(part), open) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            dir = Some(self.open_beneath(&parent[..end], OFlag::O_PATH)?);
            end += 1;
        }
        dir.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// Opens the directory at `path` inside the tree; never leaves it.
    fn open_beneath(&self, path: &[u8], flags: OFlag) -> io::Result<OwnedFd> {
        if path.is_empty() {
            return self.root.try_clone();
        }
        let how = OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(beneath());
        openat2(&self.root, OsStr::from_bytes(path), how).map_err(openat2_error)
    }
}

/// Stay below the starting directory; no `/proc` magic links either.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Names the one likely cause of ENOSYS: a kernel older than 5.6 (or a
/// seccomp filter that does not know the call).
fn openat2_error(e: Errno) -> io::Error {
    if e == Errno::ENOSYS {
        let what =
            "openat2 is not available (Linux 5.6 or later is needed to unpack layers safely)";
        io::Error::new(io::ErrorKind::Unsupported, what)
    } else {
        e.into()
    }
}

fn is_dir(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Whether an error is the kernel refusing a walk out of the tree.
pub fn is_escape(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EXDEV)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn paths_drop_dots_and_slashes_and_refuse_dotdot() {
        let p = rel("./usr//bin/sh");
        assert_eq!(p.as_bytes(), b"usr/bin/sh");
        assert_eq!(p.parent(), b"usr/bin");
        assert_eq!(p.name(), "sh");
        let top = rel("/etc");
        assert_eq!((top.parent(), top.name()), (&b""[..], OsStr::new("etc")));
        assert_eq!(rel("dir/").as_bytes(), b"dir");
        assert_eq!(RelPath::parse(b"./"), Ok(None));
        assert_eq!(RelPath::parse(b"a/../../x"), Err(Climbs));
        assert_eq!(RelPath::parse(b"../x"), Err(Climbs));
        assert_eq!(RelPath::parse(b"a/.."), Err(Climbs));
    }

    #[test]
    fn parents_resolve_beneath_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut tree = Tree::open(&root).unwrap();
        // An absolute symlink, and a relative one that climbs out.
        tree.symlink(&rel("abs"), outside.path().as_os_str().as_bytes())
            .unwrap();
        tree.symlink(&rel("up"), b"../..").unwrap();
        for name in ["abs/owned", "up/owned"] {
            let err = tree.create_file(&rel(name), 0o644).unwrap_err();
            assert!(is_escape(&err), "{name}: {err}");
            let err = tree.make_dir(&rel(name)).unwrap_err();
            assert!(is_escape(&err), "{name}: {err}");
        }
        let err = tree.hard_link(&rel("h"), &rel("abs/x")).unwrap_err();
        assert!(is_escape(&err), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A symlink that stays inside is followed, as tar does.
        tree.make_dir(&rel("usr")).unwrap();
        tree.symlink(&rel("lib"), b"usr").unwrap();
        tree.create_file(&rel("lib/libc.so"), 0o644).unwrap();
        assert!(root.join("usr/libc.so").exists());
    }

    #[test]
    fn the_last_entry_for_a_path_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(dir.path()).unwrap();
        tree.make_dir(&rel("a/b")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        tree.create_file(&rel("a/b/f"), 0o644).unwrap();
        tree.symlink(&rel("a/b/f"), b"elsewhere").unwrap();
        let link = std::fs::read_link(dir.path().join("a/b/f")).unwrap();
        assert_eq!(link, Path::new("elsewhere"));
        // A directory that exists is kept, with what is in it.
        tree.make_dir(&rel("a/b")).unwrap();
        assert!(dir.path().join("a/b/f").is_symlink());
        // A file where a directory was: the parent cache must not keep
        // pointing at the removed directory.
        tree.create_file(&rel("a/c/x"), 0o644).unwrap();
        std::fs::remove_file(dir.path().join("a/c/x")).unwrap();
        tree.create_file(&rel("a/c"), 0o644).unwrap();
        assert!(dir.path().join("a/c").is_file());
        tree.make_dir(&rel("a/c")).unwrap();
        assert!(dir.path().join("a/c").is_dir());
    }
}
