//! The overlay's operations on paths: what each file-system call does to the
//! layers, independent of FUSE. [`super::fuse`] maps requests onto these.
//!
//! Errors are `io::Error`s carrying the errno the caller should see.
//!
//! Concurrency. The kernel already serialises operations that change one
//! folder (it holds the folder's lock) and cross-folder renames (one rename
//! lock per mount). What it does not serialise is copy-up, which two
//! threads may start for the same file (two writers) or for a shared parent
//! folder (creates in two sibling folders): `copy_lock` does, and a copy-up
//! checks again, under it, whether another thread finished first.
//!
//! Open files. The kernel sends no OPEN (see [`super::fuse`]), so reads and
//! writes name a node, not an open file, and find its backing file anew.
//! Two things follow. `backing_epoch` moves whenever a node may start
//! being served by another backing file (copy-up, unlink, rename), so a
//! descriptor cached for a node knows when it is stale. And a file whose
//! last name is removed while the kernel still holds it (perhaps open) is
//! kept open here, as an orphan, until the kernel forgets it: reads,
//! writes and fstat of an unlinked open file keep working.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::copyup::{self, chown_if_permitted, fchown_if_permitted, remove_marker, write_marker};
use super::inodes::{Inodes, Key, Seen};
use super::layers::{Found, Layers, UPPER, child};
use super::owners;
use super::sys;
use super::whiteout;

/// Who asks: new entries get these ids.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A time to set: a given instant or "now".
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Now,
    At(i64, i64),
}

/// The overlay: its layers, work dir and inode table.
#[derive(Debug)]
pub struct Overlay {
    pub layers: Layers,
    work: PathBuf,
    pub inodes: RwLock<Inodes>,
    copy_lock: Mutex<()>,
    next_tmp: AtomicU64,
    /// The merging layers of folders looked up, tagged with the `epoch` they
    /// were computed in; a lookup then costs one step instead of a walk
    /// from the root.
    dir_cache: RwLock<HashMap<PathBuf, (u64, Vec<usize>)>>,
    /// Bumped *after* every change that can alter a folder's merging layers
    /// (a folder made, removed, renamed or copied up), which invalidates
    /// the whole cache. Creating and removing files does not bump it.
    epoch: AtomicU64,
    /// Bumped *after* every change that can move a node to another backing
    /// file (see the module doc).
    backing_epoch: AtomicU64,
    /// Files whose every name is gone while the kernel still holds them.
    orphans: Mutex<HashMap<u64, Arc<File>>>,
}

/// The names of staged copies in the work dir.
const STAGE_PREFIX: &str = "burrow-stage-";

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Overlay {
    /// `work` must be a folder on the upper dir's filesystem; staging
    /// leftovers of an earlier crash in it are removed (only those: a work
    /// dir given by mistake loses nothing else).
    pub fn new(layers: Layers, work: PathBuf) -> io::Result<Overlay> {
        for entry in fs::read_dir(&work)? {
            let entry = entry?;
            if !entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(STAGE_PREFIX.as_bytes())
            {
                continue;
            }
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        Ok(Overlay {
            layers,
            work,
            inodes: RwLock::new(Inodes::new()),
            copy_lock: Mutex::new(()),
            next_tmp: AtomicU64::new(0),
            dir_cache: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            backing_epoch: AtomicU64::new(0),
            orphans: Mutex::new(HashMap::new()),
        })
    }

    fn inodes_read(&self) -> std::sync::RwLockReadGuard<'_, Inodes> {
        self.inodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn inodes_write(&self) -> std::sync::RwLockWriteGuard<'_, Inodes> {
        self.inodes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh name in the work dir.
    fn staging(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.work.join(format!("{STAGE_PREFIX}{n}"))
    }

    /// The path node `ino` is reached through (ESTALE once it has none).
    pub fn path_of(&self, ino: u64) -> io::Result<PathBuf> {
        self.inodes_read()
            .path(ino)
            .ok_or_else(|| errno(libc::ESTALE))
    }

    /// Finds `rel` in the merged view, or ENOENT.
    pub fn find(&self, rel: &Path) -> io::Result<Found> {
        self.find_with(rel, Layers::lookup_in)
    }

    /// [`Self::find`] for the entry's own metadata: a folder's merging
    /// layers are not computed (see [`Layers::top_in`]).
    fn find_top(&self, rel: &Path) -> io::Result<Found> {
        self.find_with(rel, Layers::top_in)
    }

    /// Finds `rel` with `search` among its parent's merging layers (the
    /// root, which has no parent, through a full lookup), or ENOENT.
    fn find_with(
        &self,
        rel: &Path,
        search: fn(&Layers, &[usize], &Path) -> io::Result<Option<Found>>,
    ) -> io::Result<Found> {
        let found = match rel.parent() {
            None => self.layers.lookup(rel)?,
            Some(parent) => search(&self.layers, &self.dir_layers(parent)?, rel)?,
        };
        found.ok_or_else(|| errno(libc::ENOENT))
    }

    /// The merging layers of the folder `dir`, from the cache when current.
    fn dir_layers(&self, dir: &Path) -> io::Result<Vec<usize>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let cache = self.dir_cache.read().unwrap_or_else(|e| e.into_inner());
        if let Some((e, layers)) = cache.get(dir)
            && *e == epoch
        {
            return Ok(layers.clone());
        }
        drop(cache);
        let found = self
            .layers
            .lookup(dir)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        if !found.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        self.dir_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir.to_path_buf(), (epoch, found.dir_layers.clone()));
        Ok(found.dir_layers)
    }

    /// The current backing epoch: a descriptor opened for a node after
    /// reading it stays right until the epoch moves.
    pub fn backing_epoch(&self) -> u64 {
        self.backing_epoch.load(Ordering::Acquire)
    }

    fn backing_changed(&self) {
        self.backing_epoch.fetch_add(1, Ordering::Release);
    }

    /// The kept-open file of node `ino`, if its every name is gone.
    pub fn orphan(&self, ino: u64) -> Option<Arc<File>> {
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .cloned()
    }

    /// Before the last name of a regular file goes: if the kernel holds
    /// its node, keep the backing file open for whoever still has it open.
    /// An upper file is kept writable when it can be; a lower one never.
    fn keep_if_held(&self, rel: &Path, found: &Found) {
        if !found.meta.is_file() {
            return;
        }
        let Some(ino) = self.inodes_read().held_by_last_name(rel) else {
            return;
        };
        let path = self.layers.real(found.layer, rel);
        let file = if found.layer == UPPER {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .or_else(|_| File::open(&path))
        } else {
            File::open(&path)
        };
        if let Ok(f) = file {
            self.orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ino, Arc::new(f));
        }
    }

    /// The kernel dropped `count` references to `ino`; an orphan whose
    /// node is gone is closed.
    pub fn forget(&self, ino: u64, count: u64) {
        let gone = {
            let mut inodes = self.inodes_write();
            inodes.forget(ino, count);
            !inodes.contains(ino)
        };
        if gone {
            self.orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ino);
        }
    }

    /// Records that folders' merging layers may have changed.
    fn folders_changed(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Looks up `parent/name` for the kernel: its node (taking a reference)
    /// and metadata. A name of a hard-link group whose file was already
    /// copied up through another name is linked to that copy now.
    pub fn lookup(&self, parent: &Path, name: &OsStr) -> io::Result<(u64, Metadata)> {
        let rel = child(parent, name);
        // Read before looking: a change racing with the lookup then leaves
        // the recorded layer stale, never a stale layer marked current.
        let epoch = self.backing_epoch();
        let found = self.find(&rel)?;
        let ino = self.remember(&rel, &found, epoch);
        if found.layer != UPPER && link_key(&found.meta).is_some() {
            let primary = self.path_of(ino)?;
            let copied = fs::symlink_metadata(self.layers.real(UPPER, &primary)).is_ok();
            if primary != rel && copied {
                self.copy_up_node(ino, true)?;
                return Ok((ino, self.find(&rel)?.meta));
            }
        }
        Ok((ino, found.meta))
    }

    /// The node for a found `rel`, taking a kernel reference; records the
    /// layer it was found in at backing epoch `epoch`.
    fn remember(&self, rel: &Path, found: &Found, epoch: u64) -> u64 {
        let key = link_key(&found.meta);
        let seen = Seen {
            layer: found.layer,
            epoch,
        };
        self.inodes_write().lookup(rel, key, Some(seen))
    }

    /// Makes sure `rel` exists in the upper dir, copying it (and its
    /// parents) up if it does not; returns its upper path.
    pub fn copy_up(&self, rel: &Path, data: bool) -> io::Result<PathBuf> {
        let upper = self.layers.real(UPPER, rel);
        if fs::symlink_metadata(&upper).is_ok() {
            return Ok(upper);
        }
        let _guard = self.copy_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.copy_up_locked(rel, data)?;
        Ok(upper)
    }

    fn copy_up_locked(&self, rel: &Path, data: bool) -> io::Result<()> {
        let upper = self.layers.real(UPPER, rel);
        if fs::symlink_metadata(&upper).is_ok() {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.copy_up_locked(parent, true)?;
        }
        let found = self.find(rel)?;
        let src = self.layers.real(found.layer, rel);
        let tmp = self.staging();
        let staged = copyup::copy_entry(&src, &found.meta, &tmp, data)
            .and_then(|()| fs::rename(&tmp, &upper));
        if found.is_dir() {
            self.folders_changed();
        }
        self.backing_changed();
        if staged.is_err() {
            let _ = fs::remove_file(&tmp).or_else(|_| fs::remove_dir(&tmp));
        }
        staged
    }

    /// Copies node `ino` up; for a hard-linked file, links every other
    /// known name of it to the copy, so the names stay one file.
    pub fn copy_up_node(&self, ino: u64, data: bool) -> io::Result<PathBuf> {
        let paths = self.inodes_read().paths(ino);
        let primary = paths.first().ok_or_else(|| errno(libc::ESTALE))?;
        let upper = self.copy_up(primary, data)?;
        if paths.len() > 1 {
            for other in &paths[1..] {
                let other_upper = self.layers.real(UPPER, other);
                if fs::symlink_metadata(&other_upper).is_ok() {
                    continue;
                }
                if let Some(parent) = other.parent() {
                    self.copy_up(parent, true)?;
                }
                fs::hard_link(&upper, &other_upper)?;
                remove_marker(&self.layers.whiteout_path(UPPER, other))?;
            }
            self.backing_changed();
            if let Some(key) = link_key(&fs::symlink_metadata(&upper)?) {
                self.inodes_write().add_key(ino, key);
            }
        }
        Ok(upper)
    }

    /// Refuses names the overlay keeps for itself.
    fn check_name(name: &OsStr) -> io::Result<()> {
        if whiteout::is_marker(name) {
            return Err(errno(libc::EINVAL));
        }
        Ok(())
    }

    /// Prepares creating `parent/name`: copies the parent up and returns the
    /// new entry's path relative to the root and in the upper dir, and
    /// whether a whiteout stands there (the name was deleted from a lower).
    ///
    /// The parent's merging layers (cached) say what is known already: a
    /// parent whose top layer is the upper dir needs no copy-up, and one
    /// that merges nothing below the upper dir holds no whiteouts the
    /// overlay wrote (it writes one only where a lower shows the name), so
    /// neither is looked for on disk; creating a file in a folder made
    /// through the mount costs no `statx`.
    fn begin_create(&self, parent: &Path, name: &OsStr) -> io::Result<(PathBuf, PathBuf, bool)> {
        Self::check_name(name)?;
        let parent_layers = self.dir_layers(parent)?;
        if parent_layers.first() != Some(&UPPER) {
            self.copy_up(parent, true)?;
        }
        let rel = child(parent, name);
        let upper = self.layers.real(UPPER, &rel);
        let whited = parent_layers != [UPPER] && self.layers.whiteout_exists(UPPER, &rel);
        Ok((rel, upper, whited))
    }

    /// The ids a new entry in `parent` gets: the caller's, or the folder's
    /// group when it is set-group-id (as the kernel does).
    fn owner_in(&self, parent_upper: &Path, caller: Caller) -> (u32, u32, bool) {
        match fs::symlink_metadata(parent_upper) {
            Ok(m) if m.mode() & libc::S_ISGID != 0 => (caller.uid, m.gid(), true),
            _ => (caller.uid, caller.gid, false),
        }
    }

    /// Sets the new entry's owner and exact mode (the server's umask must
    /// not apply: the kernel already applied the caller's).
    fn finish_new(&self, upper: &Path, mode: u32, caller: Caller, is_dir: bool) -> io::Result<()> {
        let parent = upper.parent().unwrap_or(Path::new("/"));
        let (uid, gid, sgid_parent) = self.owner_in(parent, caller);
        let mut mode = mode & 0o7777;
        if sgid_parent && is_dir {
            mode |= libc::S_ISGID;
        }
        chown_if_permitted(upper, uid, gid)?;
        fs::set_permissions(upper, fs::Permissions::from_mode(mode))
    }

    /// [`Self::finish_new`] for a regular file just created,
    /// through its descriptor, doing only what creation did not: untarring
    /// makes thousands of files, and by path each step walked the whole
    /// path again. Returns the file's final metadata.
    fn finish_new_file(
        &self,
        file: &File,
        upper: &Path,
        mode: u32,
        caller: Caller,
    ) -> io::Result<Metadata> {
        let created = file.metadata()?;
        // The kernel gave the file our ids, or the folder's group when the
        // folder is set-group-id. Only when its group differs from the
        // caller's must the folder be asked which case this is.
        let (uid, gid) = if created.gid() == caller.gid {
            (caller.uid, caller.gid)
        } else {
            let (uid, gid, _) = self.owner_in(upper.parent().unwrap_or(Path::new("/")), caller);
            (uid, gid)
        };
        let chowned = (created.uid(), created.gid()) != (uid, gid);
        if chowned {
            fchown_if_permitted(file, uid, gid)?;
        }
        // After the chown, which clears set-id bits.
        let mode = mode & 0o7777;
        if chowned || mode != created.mode() & 0o7777 {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            return file.metadata();
        }
        Ok(created)
    }

    pub fn create(
        &self,
        parent: &Path,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> io::Result<(PathBuf, File, Metadata)> {
        let (rel, upper, whited) = self.begin_create(parent, name)?;
        // With the permission bits asked for (set-id bits, if any, are set
        // after the chown, which would clear them): where the server's
        // umask is clear, as in its own process (see `super::serve_fd`),
        // the file needs no chmod. The descriptor is for reading and
        // writing whatever the mode says.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .custom_flags(backing_flags(flags) & !libc::O_ACCMODE)
            .open(&upper)?;
        let meta = self.finish_new_file(&file, &upper, mode, caller)?;
        if whited {
            remove_marker(&self.layers.whiteout_path(UPPER, &rel))?;
        }
        Ok((rel, file, meta))
    }

    pub fn mkdir(
        &self,
        parent: &Path,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> io::Result<(PathBuf, Metadata)> {
        let (rel, upper, whited) = self.begin_create(parent, name)?;
        if whited {
            // The name was deleted from a lower: the new folder must not
            // show the old one's contents, so it is opaque from birth.
            let tmp = self.staging();
            copyup::private_dir(&tmp)?;
            write_marker(&tmp.join(whiteout::OPAQUE))?;
            self.finish_new(&tmp, mode, caller, true)?;
            fs::rename(&tmp, &upper)?;
            remove_marker(&self.layers.whiteout_path(UPPER, &rel))?;
        } else {
            copyup::private_dir(&upper)?;
            self.finish_new(&upper, mode, caller, true)?;
        }
        self.folders_changed();
        Ok((rel.clone(), fs::symlink_metadata(&upper)?))
    }

    pub fn mknod(
        &self,
        parent: &Path,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> io::Result<(PathBuf, Metadata)> {
        let (rel, upper, whited) = self.begin_create(parent, name)?;
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        mknod(&upper, kind, Mode::from_bits_truncate(0o600), rdev).map_err(io::Error::from)?;
        self.finish_new(&upper, mode, caller, false)?;
        if whited {
            remove_marker(&self.layers.whiteout_path(UPPER, &rel))?;
        }
        Ok((rel, fs::symlink_metadata(&upper)?))
    }

    pub fn symlink(
        &self,
        parent: &Path,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> io::Result<(PathBuf, Metadata)> {
        let (rel, upper, whited) = self.begin_create(parent, name)?;
        std::os::unix::fs::symlink(target, &upper)?;
        let (uid, gid, _) = self.owner_in(upper.parent().unwrap_or(Path::new("/")), caller);
        chown_if_permitted(&upper, uid, gid)?;
        if whited {
            remove_marker(&self.layers.whiteout_path(UPPER, &rel))?;
        }
        Ok((rel, fs::symlink_metadata(&upper)?))
    }

    pub fn link(
        &self,
        ino: u64,
        new_parent: &Path,
        name: &OsStr,
    ) -> io::Result<(PathBuf, Metadata)> {
        let src = self.copy_up_node(ino, true)?;
        let (rel, upper, whited) = self.begin_create(new_parent, name)?;
        fs::hard_link(&src, &upper)?;
        if whited {
            remove_marker(&self.layers.whiteout_path(UPPER, &rel))?;
        }
        let meta = fs::symlink_metadata(&upper)?;
        let mut inodes = self.inodes_write();
        inodes.link(ino, &rel);
        if let Some(key) = link_key(&meta) {
            inodes.add_key(ino, key);
        }
        Ok((rel, meta))
    }

    /// After the upper entry of `rel` is gone: if a lower still shows the
    /// name, hide it with a whiteout.
    fn whiteout_if_visible(&self, rel: &Path) -> io::Result<()> {
        if self.layers.lookup(rel)?.is_some() {
            write_marker(&self.layers.whiteout_path(UPPER, rel))?;
        }
        Ok(())
    }

    pub fn unlink(&self, parent: &Path, name: &OsStr) -> io::Result<()> {
        let rel = child(parent, name);
        let found = self.find(&rel)?;
        if found.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.keep_if_held(&rel, &found);
        if found.layer == UPPER {
            fs::remove_file(self.layers.real(UPPER, &rel))?;
        } else {
            self.copy_up(parent, true)?;
        }
        self.whiteout_if_visible(&rel)?;
        self.inodes_write().remove(&rel);
        self.backing_changed();
        Ok(())
    }

    pub fn rmdir(&self, parent: &Path, name: &OsStr) -> io::Result<()> {
        let rel = child(parent, name);
        let found = self.find(&rel)?;
        if !found.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if !self.layers.dir_is_empty(&rel, &found.dir_layers)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        if found.layer == UPPER {
            // Empty as merged: it holds at most whiteouts and the marker.
            fs::remove_dir_all(self.layers.real(UPPER, &rel))?;
        } else {
            self.copy_up(parent, true)?;
        }
        self.whiteout_if_visible(&rel)?;
        self.folders_changed();
        self.inodes_write().remove(&rel);
        // Serving threads may hold the folder open (see `OpenDir`).
        self.backing_changed();
        Ok(())
    }

    /// Removes whatever the upper dir holds at `rel` (a file, or a folder of
    /// markers that a rename is about to replace).
    fn clear_upper(&self, rel: &Path) -> io::Result<()> {
        let upper = self.layers.real(UPPER, rel);
        match fs::symlink_metadata(&upper) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&upper),
            Ok(_) => fs::remove_file(&upper),
            Err(_) => Ok(()),
        }
    }

    pub fn rename(
        &self,
        old_parent: &Path,
        old_name: &OsStr,
        new_parent: &Path,
        new_name: &OsStr,
        noreplace: bool,
    ) -> io::Result<()> {
        Self::check_name(new_name)?;
        let old = child(old_parent, old_name);
        let new = child(new_parent, new_name);
        let src = self.find(&old)?;
        let dst = self.layers.lookup(&new)?;
        if let Some(d) = &dst {
            if noreplace {
                return Err(errno(libc::EEXIST));
            }
            match (src.is_dir(), d.is_dir()) {
                (false, true) => return Err(errno(libc::EISDIR)),
                (true, false) => return Err(errno(libc::ENOTDIR)),
                (true, true) if !self.layers.dir_is_empty(&new, &d.dir_layers)? => {
                    return Err(errno(libc::ENOTEMPTY));
                }
                (false, false) => self.keep_if_held(&new, d),
                _ => {}
            }
        }
        self.copy_up(new_parent, true)?;
        self.copy_up(old_parent, true)?;
        let new_upper = self.layers.real(UPPER, &new);
        let is_dir = src.is_dir();
        if is_dir && src.dir_layers.iter().any(|&l| l != UPPER) {
            self.rename_merged_dir(&old, &src, &new)?;
        } else {
            let old_upper = if is_dir {
                self.layers.real(UPPER, &old)
            } else {
                let ino = self.inodes_read().get(&old);
                match ino {
                    Some(ino) => {
                        self.copy_up_node(ino, true)?;
                        self.layers.real(UPPER, &old)
                    }
                    None => self.copy_up(&old, true)?,
                }
            };
            if dst.as_ref().is_some_and(|d| d.is_dir()) {
                self.clear_upper(&new)?;
            }
            fs::rename(&old_upper, &new_upper)?;
            if is_dir && self.find(&new)?.dir_layers.len() > 1 {
                // An upper-only folder moved over a lower one: keep it whole.
                write_marker(&new_upper.join(whiteout::OPAQUE))?;
            }
        }
        remove_marker(&self.layers.whiteout_path(UPPER, &new))?;
        self.whiteout_if_visible(&old)?;
        if is_dir || dst.as_ref().is_some_and(|d| d.is_dir()) {
            self.folders_changed();
        }
        self.inodes_write().rename(&old, &new, is_dir);
        self.backing_changed();
        Ok(())
    }

    /// Renames a folder that lives (partly) in the lowers: its merged tree
    /// is rebuilt in the work dir (lower files copied, upper files moved),
    /// marked opaque and renamed into place; then the old name is removed.
    fn rename_merged_dir(&self, old: &Path, src: &Found, new: &Path) -> io::Result<()> {
        let _guard = self.copy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = self.staging();
        if let Err(e) = copyup::copy_tree(&self.layers, old, &src.meta, &src.dir_layers, &tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.clear_upper(new)?;
        fs::rename(&tmp, self.layers.real(UPPER, new))?;
        // What is left of the old upper folder is empty folders and markers.
        self.clear_upper(old)
    }

    /// Opens node `ino`'s backing file for reading, or for writing (the
    /// upper copy, made now if need be); an orphan is its kept-open file.
    /// The caller's own open flags are the kernel's business: it checked
    /// them, and it passes the offset of every write (appends included).
    pub fn open_backing(&self, ino: u64, write: bool) -> io::Result<Arc<File>> {
        if let Some(f) = self.orphan(ino) {
            return Ok(f);
        }
        let (path, upper) = if write {
            (self.copy_up_node(ino, true)?, true)
        } else {
            let rel = self.path_of(ino)?;
            let found = self.find(&rel)?;
            (self.layers.real(found.layer, &rel), found.layer == UPPER)
        };
        Ok(Arc::new(open_granted(&path, write, upper)?))
    }

    /// Opens node `ino`'s backing file for reading. A node that a lookup
    /// located (a file `find` or `ls` listed) opens with one `openat` in
    /// its folder, which `dir` keeps open from the last call when it is the
    /// same folder (files are mostly read a folder at a time): the kernel
    /// then walks one name instead of the whole path.
    pub fn open_for_read(&self, ino: u64, dir: &mut Option<OpenDir>) -> io::Result<Arc<File>> {
        if let Some(file) = self.open_located(ino, dir) {
            return Ok(Arc::new(file));
        }
        // Not located, or it failed (a race with a change, a permission to
        // lend in the upper dir): the search answers for sure.
        self.open_backing(ino, false)
    }

    /// Node `ino`'s file for reading if a lookup located it in a lower
    /// layer at the current backing epoch: content that cannot change
    /// (see `prefetch`). None otherwise.
    pub fn open_lower(&self, ino: u64, dir: &mut Option<OpenDir>) -> Option<File> {
        self.open_located_in(ino, dir, |layer| layer != UPPER)
    }

    fn open_located(&self, ino: u64, dir: &mut Option<OpenDir>) -> Option<File> {
        self.open_located_in(ino, dir, |_| true)
    }

    /// Opens node `ino` in the folder a lookup located it in, if that
    /// location is current and its layer passes `wanted`.
    fn open_located_in(
        &self,
        ino: u64,
        dir: &mut Option<OpenDir>,
        wanted: impl Fn(usize) -> bool,
    ) -> Option<File> {
        let epoch = self.backing_epoch();
        let inodes = self.inodes_read();
        let (rel, layer) = inodes.located(ino, epoch).filter(|(_, l)| wanted(*l))?;
        let (parent, name) = (rel.parent()?, rel.file_name()?);
        let held = dir
            .as_ref()
            .is_some_and(|d| d.layer == layer && d.epoch == epoch && d.rel == parent);
        if !held {
            *dir = Some(OpenDir::open(&self.layers, layer, parent, epoch).ok()?);
        }
        let fd = dir.as_ref()?.fd.as_fd();
        let fd = openat(fd, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
        Some(File::from(fd))
    }

    /// The metadata of node `ino`.
    pub fn stat(&self, ino: u64) -> io::Result<Metadata> {
        match self.path_of(ino) {
            Ok(rel) => Ok(self.find_top(&rel)?.meta),
            Err(e) => match self.orphan(ino) {
                Some(f) => f.metadata(),
                None => Err(e),
            },
        }
    }

    /// The real path of node `ino` in the layer that shows it.
    pub fn backing(&self, ino: u64) -> io::Result<PathBuf> {
        let rel = self.path_of(ino)?;
        let found = self.find(&rel)?;
        Ok(self.layers.real(found.layer, &rel))
    }

    pub fn chmod(&self, ino: u64, mode: u32) -> io::Result<()> {
        let upper = self.copy_up_node(ino, true)?;
        fs::set_permissions(upper, fs::Permissions::from_mode(mode & 0o7777))
    }

    /// Changes the owner; an owner record (single-id images) follows, so
    /// a layer made from the upper dir keeps the owner the caller set.
    pub fn chown(&self, ino: u64, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let upper = self.copy_up_node(ino, true)?;
        std::os::unix::fs::lchown(&upper, uid, gid)?;
        owners::rechown(&upper, uid, gid)
    }

    /// Truncates the upper copy (made now if need be), or an orphan.
    pub fn truncate(&self, ino: u64, size: u64) -> io::Result<()> {
        match self.orphan(ino) {
            Some(f) => f.set_len(size),
            None => {
                let upper = self.copy_up_node(ino, size != 0)?;
                OpenOptions::new().write(true).open(upper)?.set_len(size)
            }
        }
    }

    pub fn utimens(
        &self,
        ino: u64,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> io::Result<()> {
        let upper = self.copy_up_node(ino, true)?;
        utimensat(
            AT_FDCWD,
            &upper,
            &time_spec(atime),
            &time_spec(mtime),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io::Error::from)
    }

    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        let upper = self.copy_up_node(ino, true)?;
        sys::lsetxattr(&upper, name, value, flags)
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr) -> io::Result<()> {
        let upper = self.copy_up_node(ino, true)?;
        sys::lremovexattr(&upper, name)
    }
}

/// [`Overlay::utimens`] on an upper file the caller holds open for the
/// node (a serving thread's descriptor for writing it): no path to walk.
pub fn set_times(file: &File, atime: Option<SetTime>, mtime: Option<SetTime>) -> io::Result<()> {
    nix::sys::stat::futimens(file, &time_spec(atime), &time_spec(mtime)).map_err(io::Error::from)
}

fn time_spec(t: Option<SetTime>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(SetTime::Now) => TimeSpec::UTIME_NOW,
        Some(SetTime::At(s, ns)) => TimeSpec::new(s, ns),
    }
}

/// A folder of one layer, held open (`O_PATH`) by a serving thread to open
/// the files in it by name; valid for one backing epoch, as a rename or
/// removal of the folder moves the epoch.
#[derive(Debug)]
pub struct OpenDir {
    layer: usize,
    rel: PathBuf,
    epoch: u64,
    fd: OwnedFd,
}

impl OpenDir {
    fn open(layers: &Layers, layer: usize, rel: &Path, epoch: u64) -> io::Result<OpenDir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(&layers.real(layer, rel), flags, Mode::empty())?;
        Ok(OpenDir {
            layer,
            rel: rel.to_path_buf(),
            epoch,
            fd,
        })
    }
}

/// Opens a backing file for reading or writing that the kernel has already
/// let the caller open so: a READ or WRITE comes only through a descriptor
/// the kernel opened with that access. The mode may still refuse this
/// server, as when a file created read-only (`open(O_CREAT|O_WRONLY,
/// 0444)`, as tar does) is then written through its creating descriptor:
/// the owner lends itself the permission for the open and gives it back
/// (in the upper dir only: a lower layer is never changed).
fn open_granted(path: &Path, write: bool, upper: bool) -> io::Result<File> {
    let open = || OpenOptions::new().read(!write).write(write).open(path);
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) && upper => {
            let meta = fs::metadata(path)?;
            if meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(e);
            }
            let mode = meta.mode() & 0o7777;
            let lent = if write { 0o200 } else { 0o400 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode | lent))?;
            let file = open();
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            file
        }
        other => other,
    }
}

/// The identity under which a file joins a link group: only files with more
/// than one link need one.
pub fn link_key(meta: &Metadata) -> Option<Key> {
    (!meta.is_dir() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

/// The open flags to pass on to the backing file: the caller's, less those
/// that the kernel already handled (creation) or that the backing file
/// cannot honour for us (O_DIRECT's alignment; O_NOATIME needs ownership).
/// O_TRUNC stays: the session asks for atomic O_TRUNC, so a truncating open
/// of a lower file copies up nothing but metadata.
pub fn backing_flags(flags: i32) -> i32 {
    flags
        & !(libc::O_CREAT
            | libc::O_EXCL
            | libc::O_NOCTTY
            | libc::O_DIRECT
            | libc::O_NOATIME
            | libc::O_NOFOLLOW)
}
