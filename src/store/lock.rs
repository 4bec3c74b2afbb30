//! The store's locks.
//!
//! One `flock` on `images/lock`: writers hold it exclusively around every
//! index change (tags, image metadata, layer folders appearing or
//! disappearing); readers hold it shared so they never see a tag whose image
//! is half removed. It is held for moments, never while downloading.
//!
//! A [`Claim`] per layer being fetched (`images/locks/<diff_id>`), held for
//! the whole download and unpack, so two pulls that need the same layer
//! fetch it once: the second waits, then finds the layer in the store.
//!
//! Every lock is released when its guard drops, and by the kernel if the
//! process dies.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    // Closing the file releases the flock; the field is only kept alive.
    _file: File,
}

/// Blocks until `path` is locked exclusively.
pub fn exclusive(path: &Path) -> io::Result<LockGuard> {
    let file = open(path)?;
    file.lock()?;
    Ok(LockGuard { _file: file })
}

/// Blocks until `path` is locked for reading.
pub fn shared(path: &Path) -> io::Result<LockGuard> {
    let file = open(path)?;
    file.lock_shared()?;
    Ok(LockGuard { _file: file })
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// An exclusive claim on one piece of work (a layer being fetched) that
/// other processes wait for: a flock on a file of its own, removed when the
/// claim is released so finished work leaves no file behind. A holder that
/// dies releases the flock with its last descriptor, and the next waiter
/// takes over (the file stays until that waiter finishes).
#[derive(Debug)]
pub struct Claim {
    _file: File,
    path: PathBuf,
}

impl Claim {
    /// Blocks until `path` is claimed; `waiting` runs once if another
    /// process holds it first.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> io::Result<Claim> {
        let mut waiting = Some(waiting);
        loop {
            let file = open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    if let Some(w) = waiting.take() {
                        w();
                    }
                    file.lock()?;
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
            // The previous holder removes the file as it leaves; if it did so
            // after we opened it, we hold a lock on a file no one else can
            // find, while a newcomer may lock a new file at the same path.
            // Only a lock on the file the path names right now counts.
            if is_current(&file, path)? {
                return Ok(Claim {
                    _file: file,
                    path: path.to_path_buf(),
                });
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while still locked, so no one can lock it and then lose it;
        // the flock goes when `_file` closes right after.
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether `file` is the file `path` names now.
fn is_current(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_claim_makes_the_next_one_wait_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let first = Claim::acquire(&path, || panic!("nobody held it")).unwrap();
        let waited = AtomicBool::new(false);
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let second = Claim::acquire(&path, || waited.store(true, Ordering::SeqCst));
                got.store(true, Ordering::SeqCst);
                drop(second.unwrap());
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(waited.load(Ordering::SeqCst));
            assert!(!got.load(Ordering::SeqCst), "both held the claim");
            // The first removes the file as it leaves; the waiter must not
            // keep a lock on that orphan while the path is free.
            drop(first);
        });
        assert!(got.load(Ordering::SeqCst));
        assert!(!path.exists());
    }
}
