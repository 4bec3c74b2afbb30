//! Where burrow keeps things.
//!
//! Persistent data (images, containers, logs) lives under `$XDG_DATA_HOME/burrow`
//! (default `~/.local/share/burrow`), or `--root`. Runtime state that must vanish
//! with a reboot (which supervisor runs which container) lives under
//! `$XDG_RUNTIME_DIR/burrow`, or a private 0700 folder in `/tmp` when that is unset,
//! as it is on most CI runners; `--runroot` overrides it.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The two roots every command works under.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Persistent data: `images/`, `layers/`, `containers/`.
    pub data: PathBuf,
    /// Volatile state: one folder per running container.
    pub runtime: PathBuf,
}

impl Dirs {
    /// Resolves the roots from flags and the environment and creates them.
    pub fn resolve(root: Option<PathBuf>, runroot: Option<PathBuf>) -> Result<Dirs> {
        let data = match root {
            Some(r) => absolute(r)?,
            None => default_data_dir()?,
        };
        let runtime = match runroot {
            Some(r) => absolute(r)?,
            None => default_runtime_dir()?,
        };
        make_private_dir(&data)
            .with_context(|| format!("cannot create data folder {}", data.display()))?;
        make_private_dir(&runtime)
            .with_context(|| format!("cannot create runtime folder {}", runtime.display()))?;
        Ok(Dirs { data, runtime })
    }

    pub fn containers(&self) -> PathBuf {
        self.data.join("containers")
    }

    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    pub fn runtime_container(&self, id: &str) -> PathBuf {
        self.runtime.join(id)
    }

    /// Scratch space on the same filesystem as the data, so renames are atomic.
    pub fn tmp(&self) -> PathBuf {
        self.data.join("tmp")
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn default_data_dir() -> Result<PathBuf> {
    if let Some(d) = env_dir("XDG_DATA_HOME") {
        return Ok(d.join("burrow"));
    }
    match env_dir("HOME") {
        Some(h) => Ok(h.join(".local/share/burrow")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set; pass --root DIR"),
    }
}

fn default_runtime_dir() -> Result<PathBuf> {
    if let Some(d) = env_dir("XDG_RUNTIME_DIR") {
        return Ok(d.join("burrow"));
    }
    let uid = nix::unistd::getuid().as_raw();
    let dir = PathBuf::from(format!("/tmp/burrow-run-{uid}"));
    // /tmp is shared: refuse a folder someone else planted for us.
    if let Ok(meta) = fs::symlink_metadata(&dir)
        && (!meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0)
    {
        bail!(
            "runtime folder {} is not a private folder owned by uid {uid}; remove it or set XDG_RUNTIME_DIR",
            dir.display()
        );
    }
    Ok(dir)
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same folder,
/// fsynced, then renamed over the target. Readers see the old or the new file,
/// never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_replacing(path, contents, true)
}

/// [`write_atomic`] without the fsync, for state that a reboot makes
/// meaningless anyway (the runtime folder): readers still never see a torn
/// file, and a container start saves a disk flush.
pub fn write_volatile(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_replacing(path, contents, false)
}

fn write_replacing(path: &Path, contents: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        if durable {
            f.sync_data()?;
        }
        Ok(())
    });
    // A full disk fails the write: leave no half-written temporary behind.
    let result = written.and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder in the way makes the rename fail after the write.
        let target = dir.path().join("record.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        assert!(write_atomic(&target, b"{}").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
    }
}
