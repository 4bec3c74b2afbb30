//! The store's lock: one `flock` on `images/lock`.
//!
//! Writers hold it exclusively around every index change (tags, image
//! metadata, layer folders appearing or disappearing); readers hold it shared
//! so they never see a tag whose image is half removed. The lock is released
//! when the guard drops, and by the kernel if the process dies.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

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
