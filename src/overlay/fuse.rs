//! The FUSE face of the overlay: fuser's `Filesystem` over [`Overlay`].
//!
//! Each method resolves node ids to paths, calls one [`Overlay`] operation
//! and turns the result into a reply (an `io::Error` becomes its errno).
//! Folder listings live in a handle table keyed by the handle number the
//! kernel gives back; files have no handles (see below).
//!
//! Speed. Entries and attributes are cached by the kernel for [`TTL`], a
//! day: every change to the overlay goes through this server and the
//! kernel, which updates or drops what it cached, so the cache can only be
//! stale if someone edits the layers behind the mount's back (the lowers
//! are read-only image layers; nothing else writes the upper dir while it
//! is mounted). Listings are served as readdirplus, so the names come with
//! their attributes and opening each costs no LOOKUP; `flush` is left to
//! ENOSYS, so a close costs no round trip.
//!
//! Files are never opened for the kernel: OPEN and CREATE answer ENOSYS,
//! after which the kernel opens files without asking (its no-open mode,
//! with the page cache kept across opens) and sends neither OPEN nor
//! RELEASE; a create becomes MKNOD. Reading a small file is then one
//! READ, where it was OPEN, READ and RELEASE. A READ or WRITE names only
//! the node: its backing file is opened then (a write copies up first),
//! and each serving thread keeps the last one it opened for reading and
//! for writing, until the overlay's backing epoch says the node may have
//! moved to another backing file. The kernel checks permissions and
//! computes append offsets itself, so nothing of the caller's open is
//! lost. A file just made by MKNOD is kept as the thread's file for
//! writing it, and the requests that follow a create (the kernel's
//! `security.capability` check before the first write, the SETATTR of its
//! times) are answered through that descriptor too, without a path walk.
//! A missing name is answered as a negative entry (node 0) with the TTL,
//! which the kernel keeps like any other entry and replaces when the name
//! is made through it. Small reads go from one `pread` into a per-thread
//! buffer that is reused, so the read path allocates nothing per request;
//! reads of [`MIN_SPLICE`] bytes or more are spliced from the backing file
//! into `/dev/fuse` ([`super::splice`]), so the kernel copies each byte
//! once.
//! A listing is a snapshot taken at `opendir`, so a folder changing while
//! it is read neither repeats nor skips names. Its small files are
//! remembered in order, so that a folder read file after file is read
//! ahead into the kernel's cache ([`super::prefetch`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::engine::{self, Caller, OpenDir, Overlay, SetTime};
use super::inodes::Seen;
use super::layers::{UPPER, child};
use super::prefetch::{self, Prefetcher};
use super::splice::{MIN_SPLICE, Splicer};
use super::sys;

/// How long the kernel may trust an entry or attributes we sent: long,
/// since every change comes through the kernel (see the module doc).
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest write the kernel may send in one request.
const MAX_WRITE: u32 = 1 << 20;

/// One name of a folder snapshot.
#[derive(Debug)]
struct DirItem {
    ino: u64,
    kind: FileType,
    name: OsString,
}

/// A backing file a serving thread opened for a node, and the overlay's
/// backing epoch when it did.
struct Cached {
    ino: u64,
    epoch: u64,
    file: Arc<File>,
    /// The node's upper file (not a kept-open orphan, which may be a lower
    /// one): metadata may be read and changed through it.
    upper: bool,
}

/// The slots of [`BACKING`].
const READ: usize = 0;
const WRITE: usize = 1;

/// The overlay as a FUSE file system.
#[derive(Debug)]
pub struct OverlayFs {
    ov: Arc<Overlay>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    next_fh: AtomicU64,
    /// Large reads are answered by splice once the session's descriptor is
    /// known (set after the mount, see [`OverlayFs::splice_slot`]).
    splicer: Arc<OnceLock<Splicer>>,
    /// Folders being read file after file ([`prefetch`]).
    scans: Mutex<prefetch::Tracker>,
    /// The session's notifier, set after the mount like the splicer; the
    /// prefetch thread starts with the first window it is given.
    notifier: Arc<OnceLock<Notifier>>,
    prefetcher: OnceLock<Option<Prefetcher>>,
}

thread_local! {
    /// The read buffer of this worker thread, grown to the largest read.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// This worker thread's last backing file for reading and for writing.
    static BACKING: RefCell<[Option<Cached>; 2]> = const { RefCell::new([None, None]) };
    /// The folder this worker thread last opened a file for reading in.
    static LAST_DIR: RefCell<Option<OpenDir>> = const { RefCell::new(None) };
}

impl OverlayFs {
    pub fn new(ov: Overlay) -> OverlayFs {
        OverlayFs {
            ov: Arc::new(ov),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            splicer: Arc::new(OnceLock::new()),
            scans: Mutex::new(prefetch::Tracker::default()),
            notifier: Arc::new(OnceLock::new()),
            prefetcher: OnceLock::new(),
        }
    }

    /// Where the session's owner puts the [`Splicer`] once the session
    /// exists (the file system is moved into the session before that).
    pub fn splice_slot(&self) -> Arc<OnceLock<Splicer>> {
        self.splicer.clone()
    }

    /// Where the session's owner puts the session's [`Notifier`], which
    /// lets files be read ahead ([`prefetch`]); without it none are.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// After a READ from the start of `ino`: stores the next files of its
    /// folder ahead when the folder is being read in order.
    fn read_ahead(&self, ino: u64) {
        let ahead = self
            .scans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(ino);
        if ahead.is_empty() {
            return;
        }
        let prefetcher = self.prefetcher.get_or_init(|| {
            let notifier = self.notifier.get()?.clone();
            Prefetcher::start(self.ov.clone(), notifier).ok()
        });
        if let Some(p) = prefetcher {
            p.ask(ahead);
        }
    }

    fn path(&self, ino: INodeNo) -> Result<std::path::PathBuf, Errno> {
        self.ov.path_of(ino.0).map_err(Errno::from)
    }

    /// Replies with an entry just made in the upper dir: takes a reference
    /// on its node, and records where its data is (see [`Seen`]), with
    /// the backing epoch read before it was made.
    fn entry(&self, rel: &Path, meta: &Metadata, epoch: u64, reply: ReplyEntry) {
        let ino = self.new_node(rel, epoch);
        reply.entry(&TTL, &attr(ino, meta), Generation(0));
    }

    fn new_node(&self, rel: &Path, epoch: u64) -> u64 {
        let seen = Seen {
            layer: UPPER,
            epoch,
        };
        self.ov
            .inodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(rel, None, Some(seen))
    }

    fn forget_node(&self, ino: u64, count: u64) {
        self.ov.forget(ino, count);
    }

    /// Node `ino`'s backing file for reading or writing: this thread's
    /// last one if it is for the same node and still current.
    fn backing(&self, ino: u64, write: bool) -> io::Result<Arc<File>> {
        // Read before opening: a change racing with the open then leaves
        // the entry stale, never a stale file marked current.
        let epoch = self.ov.backing_epoch();
        BACKING.with_borrow_mut(|slots| {
            let slot = &mut slots[if write { WRITE } else { READ }];
            if let Some(c) = slot
                && c.ino == ino
                && c.epoch == epoch
            {
                return Ok(c.file.clone());
            }
            let (file, upper) = if write {
                let orphan = self.ov.orphan(ino).is_some();
                (self.ov.open_backing(ino, true)?, !orphan)
            } else {
                let file = LAST_DIR.with_borrow_mut(|dir| self.ov.open_for_read(ino, dir))?;
                (file, false)
            };
            *slot = Some(Cached {
                ino,
                epoch,
                file: file.clone(),
                upper,
            });
            Ok(file)
        })
    }

    /// Keeps a file just created in the upper dir as this thread's file for
    /// writing node `ino` (`epoch`: read before it was created): the WRITE,
    /// the `security.capability` check before it and the SETATTR of its
    /// times that follow a create (what `tar x` does) then use it instead
    /// of finding and opening the file by path, each.
    fn hold_for_write(&self, ino: u64, epoch: u64, file: File) {
        BACKING.with_borrow_mut(|slots| {
            slots[WRITE] = Some(Cached {
                ino,
                epoch,
                file: Arc::new(file),
                upper: true,
            });
        });
    }

    /// This thread's descriptor of node `ino`'s upper file, if it holds one
    /// that is still current (see [`Self::backing`]).
    fn held_upper(&self, ino: u64) -> Option<Arc<File>> {
        let epoch = self.ov.backing_epoch();
        BACKING.with_borrow(|slots| {
            slots[WRITE]
                .as_ref()
                .filter(|c| c.ino == ino && c.epoch == epoch && c.upper)
                .map(|c| c.file.clone())
        })
    }

    /// The folder snapshot behind handle `fh`.
    fn listing(&self, fh: FileHandle) -> Option<Arc<Vec<DirItem>>> {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh.0)
            .cloned()
    }

    fn snapshot(&self, ino: INodeNo) -> io::Result<Vec<DirItem>> {
        let rel = self.ov.path_of(ino.0)?;
        let found = self.ov.find(&rel)?;
        if !found.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let entries = self.ov.layers.read_dir(&rel, &found.dir_layers)?;
        let mut inodes = self.ov.inodes.write().unwrap_or_else(|e| e.into_inner());
        let parent = rel.parent().map_or(ino.0, |p| inodes.peek(p));
        let mut items = Vec::with_capacity(entries.len() + 2);
        items.push(DirItem {
            ino: ino.0,
            kind: FileType::Directory,
            name: ".".into(),
        });
        items.push(DirItem {
            ino: parent,
            kind: FileType::Directory,
            name: "..".into(),
        });
        for e in entries {
            let ino = inodes.peek(&child(&rel, &e.name));
            let kind = e
                .kind
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            items.push(DirItem {
                ino,
                kind,
                name: e.name,
            });
        }
        Ok(items)
    }
}

/// The kernel's view of a backing file's metadata, under node id `ino`.
pub fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(m.mode()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

/// The attributes of a negative entry (node 0), which the kernel ignores.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => SetTime::At(d.as_secs() as i64, i64::from(d.subsec_nanos())),
            Err(e) => {
                let d = e.duration();
                SetTime::At(-(d.as_secs() as i64), 0)
            }
        },
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// Replies to an xattr read: the size when asked for it, else the bytes.
fn reply_xattr(size: u32, got: io::Result<usize>, buf: &[u8], reply: ReplyXattr) {
    match got {
        Err(e) => reply.error(e.into()),
        Ok(n) if size == 0 => reply.size(n as u32),
        Ok(n) => reply.data(&buf[..n]),
    }
}

/// A node whose attributes a SETATTR changes: through the upper file this
/// thread holds open for it when there is one (no copy-up to check, no
/// path to walk), else through the overlay.
struct Node<'a> {
    ov: &'a Overlay,
    ino: u64,
    held: Option<&'a File>,
}

impl Node<'_> {
    fn truncate(&self, size: u64) -> io::Result<()> {
        match self.held {
            Some(f) => f.set_len(size),
            None => self.ov.truncate(self.ino, size),
        }
    }

    fn chmod(&self, mode: u32) -> io::Result<()> {
        match self.held {
            Some(f) => f.set_permissions(Permissions::from_mode(mode & 0o7777)),
            None => self.ov.chmod(self.ino, mode),
        }
    }

    fn set_times(&self, atime: Option<SetTime>, mtime: Option<SetTime>) -> io::Result<()> {
        match self.held {
            Some(f) => engine::set_times(f, atime, mtime),
            None => self.ov.utimens(self.ino, atime, mtime),
        }
    }

    fn metadata(&self) -> io::Result<Metadata> {
        match self.held {
            Some(f) => f.metadata(),
            None => self.ov.stat(self.ino),
        }
    }
}

/// Whether the caller may keep set-id bits when it writes or truncates a
/// file (CAP_FSETID): root of the container's user namespace, as the
/// server sees it. The kernel's own test is the capability, which a FUSE
/// request does not carry; other holders of it are rare, and for them the
/// bits are cleared as for anyone.
fn privileged(req: &Request) -> bool {
    req.uid() == 0
}

/// The mode without the set-id bits a write or truncate clears (as the
/// kernel's `should_remove_suid`: set-user-id, and set-group-id where the
/// group may execute), if there are any to clear.
fn kill_setid(meta: &Metadata) -> Option<u32> {
    let mode = meta.mode() & 0o7777;
    let mut kill = mode & libc::S_ISUID;
    if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        kill |= libc::S_ISGID;
    }
    (meta.is_file() && kill != 0).then_some(mode & !kill)
}

/// Disposes of the reply to a request answered by splice. fuser offers no
/// way to drop a reply silently: dropped, it answers EIO. The kernel
/// refuses that second answer (ENOENT: request ids are never reused, and
/// this one is no longer pending), so the reader sees only the spliced
/// data; the refusal costs one small `writev`, against the copy of at
/// least [`MIN_SPLICE`] bytes that the splice saved. (`mem::forget` would
/// leak the session's descriptor instead: the reply holds a reference.)
fn already_answered(reply: ReplyData) {
    drop(reply);
}

macro_rules! tri {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(Errno::from(e)),
        }
    };
}

macro_rules! path_or {
    ($self:ident, $reply:ident, $ino:expr) => {
        match $self.path($ino) {
            Ok(p) => p,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for OverlayFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(64);
        // Each is optional: an older kernel without one still works.
        // No FUSE_ATOMIC_O_TRUNC: with no OPEN to carry it, the kernel
        // must send O_TRUNC as a SETATTR of the size.
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // Every listing as readdirplus: one stat per name here saves a
            // LOOKUP round trip per name for whoever then opens or stats
            // them. (With READDIRPLUS_AUTO the kernel asks for plain
            // batches after the first, and the LOOKUPs come back.)
            InitFlags::FUSE_DO_READDIRPLUS,
            // The kernel then checks a file for `security.capability` once,
            // not before every write(2) (a GETXATTR round trip each), and
            // leaves clearing set-id bits on WRITE and truncate to us:
            // see `kill_setid`.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = path_or!(self, reply, parent);
        match self.ov.lookup(&parent, name) {
            Ok((ino, meta)) => reply.entry(&TTL, &attr(ino, &meta), Generation(0)),
            // A name that is not there is answered as an entry of node 0,
            // which the kernel keeps as a negative entry for the TTL (an
            // ENOENT it would forget at once): the next stat or open of the
            // name asks nothing. A name can only appear through the kernel
            // (create, mkdir, link, rename), which replaces that entry.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                reply.entry(&TTL, &absent(), Generation(0));
            }
            Err(e) => reply.error(e.into()),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.forget_node(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // A file unlinked while open is an orphan, which answers for itself.
        let meta = tri!(reply, self.ov.stat(ino.0));
        reply.attr(&TTL, &attr(ino.0, &meta));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = ino.0;
        let held = self.held_upper(ino);
        let node = Node {
            ov: &self.ov,
            ino,
            held: held.as_deref(),
        };
        if let Some(size) = size {
            tri!(reply, node.truncate(size));
            // The kernel asks the server to do this (FATTR_KILL_SUIDGID,
            // which fuser does not pass on): a truncate by a caller
            // without CAP_FSETID clears set-id bits.
            if mode.is_none() && !privileged(req) {
                let meta = tri!(reply, node.metadata());
                if let Some(cleared) = kill_setid(&meta) {
                    tri!(reply, node.chmod(cleared));
                }
            }
        }
        if uid.is_some() || gid.is_some() {
            tri!(reply, self.ov.chown(ino, uid, gid));
        }
        // After chown, which clears set-id bits the caller may set again.
        if let Some(mode) = mode {
            tri!(reply, node.chmod(mode));
        }
        if atime.is_some() || mtime.is_some() {
            tri!(
                reply,
                node.set_times(atime.map(set_time), mtime.map(set_time))
            );
        }
        let meta = tri!(reply, node.metadata());
        reply.attr(&TTL, &attr(ino, &meta));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let path = tri!(reply, self.ov.backing(ino.0));
        let target = tri!(reply, std::fs::read_link(path));
        reply.data(target.as_os_str().as_bytes());
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let parent = path_or!(self, reply, parent);
        let mode = mode & !umask | (mode & libc::S_IFMT);
        let epoch = self.ov.backing_epoch();
        if mode & libc::S_IFMT != libc::S_IFREG {
            let (rel, meta) = tri!(
                reply,
                self.ov
                    .mknod(&parent, name, mode, u64::from(rdev), caller(req))
            );
            return self.entry(&rel, &meta, epoch, reply);
        }
        let (rel, file, meta) = tri!(
            reply,
            self.ov
                .create(&parent, name, mode, libc::O_RDONLY, caller(req))
        );
        let ino = self.new_node(&rel, epoch);
        self.hold_for_write(ino, epoch, file);
        reply.entry(&TTL, &attr(ino, &meta), Generation(0));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let parent = path_or!(self, reply, parent);
        let epoch = self.ov.backing_epoch();
        let (rel, meta) = tri!(
            reply,
            self.ov.mkdir(&parent, name, mode & !umask, caller(req))
        );
        self.entry(&rel, &meta, epoch, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = path_or!(self, reply, parent);
        tri!(reply, self.ov.unlink(&parent, name));
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = path_or!(self, reply, parent);
        tri!(reply, self.ov.rmdir(&parent, name));
        reply.ok();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let parent = path_or!(self, reply, parent);
        let epoch = self.ov.backing_epoch();
        let (rel, meta) = tri!(
            reply,
            self.ov.symlink(&parent, link_name, target, caller(req))
        );
        self.entry(&rel, &meta, epoch, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let old_parent = path_or!(self, reply, parent);
        let new_parent = path_or!(self, reply, newparent);
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        tri!(
            reply,
            self.ov
                .rename(&old_parent, name, &new_parent, newname, noreplace)
        );
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let new_parent = path_or!(self, reply, newparent);
        let epoch = self.ov.backing_epoch();
        let (rel, meta) = tri!(reply, self.ov.link(ino.0, &new_parent, newname));
        self.entry(&rel, &meta, epoch, reply);
    }

    /// ENOSYS: the kernel then opens files without asking (see the module
    /// doc), and a file the caller opens for writing is copied up at its
    /// first write, truncate or metadata change instead.
    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = tri!(reply, self.backing(ino.0, false));
        if size as usize >= MIN_SPLICE
            && let Some(splicer) = self.splicer.get()
            && let Ok(true) = splicer.reply(req.unique().0, &file, offset, size as usize)
        {
            return already_answered(reply);
        }
        READ_BUF.with_borrow_mut(|buf| {
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let mut done = 0;
            // A regular file's pread comes back short only at its end (or
            // when interrupted, which retries): stopping at the first short
            // read spares the extra pread that would only find the end,
            // one per read of a small file.
            while done < size {
                match file.read_at(&mut buf[done..size], offset + done as u64) {
                    Ok(n) => {
                        done += n;
                        if n == 0 || done < size {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return reply.error(e.into()),
                }
            }
            reply.data(&buf[..done]);
        });
        if offset == 0 {
            self.read_ahead(ino.0);
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let file = tri!(reply, self.backing(ino.0, true));
        // The kernel leaves this to us (FUSE_HANDLE_KILLPRIV_V2). The
        // backing write cannot do it: this server may keep set-id bits.
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) && !privileged(req) {
            let meta = tri!(reply, file.metadata());
            if let Some(cleared) = kill_setid(&meta) {
                tri!(reply, file.set_permissions(Permissions::from_mode(cleared)));
            }
        }
        tri!(reply, file.write_all_at(data, offset));
        // The caller's O_SYNC or O_DSYNC, which the backing file lacks.
        if flags.0 & libc::O_SYNC == libc::O_SYNC {
            tri!(reply, file.sync_all());
        } else if flags.0 & libc::O_DSYNC != 0 {
            tri!(reply, file.sync_data());
        }
        reply.written(data.len() as u32);
    }

    // No `flush`: writes reach the backing file before they are answered,
    // so a close has nothing to report. Left unimplemented, the first
    // FLUSH gets ENOSYS and the kernel stops sending them: one round trip
    // less per close.

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Any descriptor of the backing file syncs it; one for reading
        // copies nothing up (a lower file has nothing to sync).
        let file = tri!(
            reply,
            self.backing(ino.0, false)
                .or_else(|_| self.backing(ino.0, true))
        );
        tri!(
            reply,
            if datasync {
                file.sync_data()
            } else {
                file.sync_all()
            }
        );
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let items = tri!(reply, self.snapshot(ino));
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, Arc::new(items));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(items) = self.listing(fh) else {
            return reply.error(Errno::EBADF);
        };
        // The offset of an entry is its index + 1: where the next call starts.
        for (i, item) in items.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(item.ino), i as u64 + 1, item.kind, &item.name) {
                break;
            }
        }
        reply.ok();
    }

    /// Like `readdir`, but each entry comes with its attributes and counts
    /// as a lookup, so `ls -l`, `find` and opening every file of a folder
    /// need no LOOKUP round trip per name.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(items) = self.listing(fh) else {
            return reply.error(Errno::EBADF);
        };
        let dir = path_or!(self, reply, ino);
        // The small files listed, for reading ahead (recorded once the
        // reply is built: the table's lock is not taken per name).
        let mut small = Vec::new();
        for (i, item) in items.iter().enumerate().skip(offset as usize) {
            let next = i as u64 + 1;
            if i < 2 {
                // `.` and `..`: the kernel takes no reference for them and
                // ignores their attributes; the folder's own do.
                let meta = tri!(reply, self.ov.stat(ino.0));
                let a = attr(item.ino, &meta);
                if reply.add(INodeNo(item.ino), next, &item.name, &TTL, &a, Generation(0)) {
                    break;
                }
                continue;
            }
            // A name removed since `opendir` is left out.
            let Ok((node, meta)) = self.ov.lookup(&dir, &item.name) else {
                continue;
            };
            let a = attr(node, &meta);
            if reply.add(INodeNo(node), next, &item.name, &TTL, &a, Generation(0)) {
                // It did not fit: the kernel never saw it, so give back
                // the reference the lookup took.
                self.forget_node(node, 1);
                break;
            }
            if meta.is_file() && (1..=prefetch::MAX_FILE).contains(&meta.len()) {
                small.push((i, node, meta.len()));
            }
        }
        if !small.is_empty() {
            let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
            for (item, node, size) in small {
                scans.listed(fh.0, item, node, size);
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let upper = self.ov.layers.root(UPPER);
        let s = tri!(
            reply,
            nix::sys::statvfs::statvfs(upper).map_err(io::Error::from)
        );
        reply.statfs(
            s.blocks(),
            s.blocks_free(),
            s.blocks_available(),
            s.files(),
            s.files_free(),
            s.block_size() as u32,
            s.name_max() as u32,
            s.fragment_size() as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.ov.setxattr(ino.0, name, value, flags));
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut buf = vec![0u8; size as usize];
        // The kernel asks for `security.capability` before the first write
        // of every file: for one just created, this thread holds it open.
        let got = match self.held_upper(ino.0) {
            Some(f) => sys::fgetxattr(&*f, name, &mut buf),
            None => {
                let path = tri!(reply, self.ov.backing(ino.0));
                sys::lgetxattr(&path, name, &mut buf)
            }
        };
        reply_xattr(size, got, &buf, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let path = tri!(reply, self.ov.backing(ino.0));
        let mut buf = vec![0u8; size as usize];
        let got = sys::llistxattr(&path, &mut buf);
        reply_xattr(size, got, &buf, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(reply, self.ov.removexattr(ino.0, name));
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Only called without default_permissions; the kernel checks with it.
        reply.ok();
    }

    /// ENOSYS: the kernel then makes the file with MKNOD and opens it
    /// without asking, which spares the RELEASE a created handle costs.
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::ENOSYS);
    }
}
