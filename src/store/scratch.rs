//! Scratch folders under `dirs.tmp()`, named `image-<purpose>-<pid>-<random>`.
//!
//! Work that must not be seen half done (an unpack, a layer being deleted)
//! happens in a scratch folder and is renamed into place, or away, in one step.
//! A scratch folder is removed on drop; if the process dies first, the pid in
//! its name lets the next `Store::open` tell it is garbage. Other modules share
//! `tmp/`, so only names starting with `image-` are ever touched here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::layer::remove_tree;

const PREFIX: &str = "image-";

/// A folder removed when dropped (if it still exists: it may have been renamed).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `tmp/image-<purpose>-<pid>-<random>/`.
    pub fn create(tmp: &Path, purpose: &str) -> io::Result<Scratch> {
        fs::create_dir_all(tmp)?;
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let name = format!(
            "{PREFIX}{purpose}-{}-{}",
            std::process::id(),
            hex::encode(random)
        );
        let path = tmp.join(name);
        fs::create_dir(&path)?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover is garbage that the next open removes.
        let _ = remove_tree(&self.path);
    }
}

/// Removes scratch folders whose creating process is gone.
pub fn clean_stale(tmp: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(tmp) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if !alive(pid) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// The pid in `image-<purpose>-<pid>-<random>`, if the name has that shape.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let _random = parts.next()?;
    parts.next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence only. EPERM still means the process exists.
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(owner_pid("image-unpack-123-abcdef"), Some(123));
        assert_eq!(owner_pid("image-unpack-x-abcdef"), None);
        assert_eq!(owner_pid("container-123-abc"), None);
    }

    #[test]
    fn stale_folders_are_removed_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let live = Scratch::create(tmp.path(), "unpack").unwrap();
        // pid_max is below 2^22 on Linux, so this pid cannot be running.
        let dead = tmp.path().join("image-unpack-99999999-00");
        let other = tmp.path().join("someone-elses-1-00");
        fs::create_dir(&dead).unwrap();
        fs::create_dir(&other).unwrap();
        clean_stale(tmp.path()).unwrap();
        assert!(live.path().exists());
        assert!(!dead.exists());
        assert!(other.exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
