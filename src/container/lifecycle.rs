//! Acting on a container's life from outside: signals, `stop`, `wait`,
//! `rm`, and the removal of its files (which may belong to the container's
//! users, i.e. to subordinate ids).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::host_ids;
use super::record::{self, Record, Status};
use crate::paths::Dirs;

/// The signal `stop` sends first: the image's StopSignal, else SIGTERM.
pub fn stop_signal(rec: &Record) -> Signal {
    parse_signal(&rec.config.stop_signal).unwrap_or(Signal::SIGTERM)
}

/// Parses `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow!("invalid signal: {s}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| anyhow!("invalid signal: {s}"))
}

/// Sends a signal to a running container's first process (the init, which
/// forwards it to the command).
pub fn signal(dirs: &Dirs, rec: &Record, sig: Signal) -> Result<()> {
    let mut r = rec.clone();
    match record::status(dirs, &mut r)? {
        Status::Running { pid, .. } if pid > 0 => kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("cannot signal container {}", rec.name)),
        _ => bail!("container {} is not running", rec.name),
    }
}

/// Stops a container: its stop signal, then SIGKILL after `timeout`.
/// Stopping a stopped container is not an error, as in Docker.
pub fn stop(dirs: &Dirs, rec: &Record, timeout: Duration) -> Result<()> {
    if signal(dirs, rec, stop_signal(rec)).is_err() {
        return Ok(());
    }
    if wait_stopped(dirs, rec, timeout)? {
        return Ok(());
    }
    let _ = signal(dirs, rec, Signal::SIGKILL);
    if wait_stopped(dirs, rec, Duration::from_secs(10))? {
        return Ok(());
    }
    bail!(
        "container {} did not stop within 10 seconds of SIGKILL",
        rec.name
    )
}

/// Polls until the container is not running; `false` on timeout.
pub fn wait_stopped(dirs: &Dirs, rec: &Record, timeout: Duration) -> Result<bool> {
    // `None`: wait forever (Duration::MAX does not fit in an Instant).
    let deadline = Instant::now().checked_add(timeout);
    let mut r = rec.clone();
    loop {
        match record::status(dirs, &mut r) {
            Ok(Status::Running { .. }) => {}
            Ok(_) => return Ok(true),
            // Removed meanwhile (an --rm container): it has stopped.
            Err(_) if !dirs.container(&rec.id).exists() => return Ok(true),
            Err(e) => return Err(e),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a container; a running one only with `force` (killed first).
pub fn remove(dirs: &Dirs, rec: &Record, force: bool) -> Result<()> {
    let mut r = rec.clone();
    if let Status::Running { .. } = record::status(dirs, &mut r)? {
        if !force {
            bail!(
                "cannot remove container {}: it is running; stop it first or force removal with: burrow rm -f {}",
                rec.name,
                rec.name
            );
        }
        let _ = signal(dirs, rec, Signal::SIGKILL);
        if !wait_stopped(dirs, rec, Duration::from_secs(10))? {
            bail!("container {} did not stop after SIGKILL", rec.name);
        }
    }
    let _all = record::lock_all(dirs)?;
    remove_files(dirs, &rec.id)
}

/// Deletes a container's folders. Files its users created belong to
/// subordinate ids the caller cannot delete directly; those are removed as
/// root of a user namespace with the same maps.
pub fn remove_files(dirs: &Dirs, id: &str) -> Result<()> {
    record::clear_runtime(dirs, id);
    let dir = dirs.container(id);
    if !dir.exists() {
        return Ok(());
    }
    // Move it aside first: a half-deleted container is never listed.
    let doomed = dirs.tmp().join(format!("rm-{id}"));
    fs::create_dir_all(dirs.tmp())?;
    fs::rename(&dir, &doomed).with_context(|| format!("cannot remove {}", dir.display()))?;
    remove_tree(&doomed)
}

/// Removes a tree, falling back to a user namespace with the subordinate
/// ranges for files owned by container users.
pub fn remove_tree(path: &Path) -> Result<()> {
    make_writable(path);
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let ids = host_ids();
    let code = crate::sandbox::as_namespace_root(
        nix::sched::CloneFlags::empty(),
        &ids.uid_map,
        &ids.gid_map,
        || {
            make_writable(path);
            i32::from(fs::remove_dir_all(path).is_err())
        },
    )?;
    if code != 0 || path.exists() {
        bail!(
            "cannot remove {}: files in it belong to ids burrow cannot map",
            path.display()
        );
    }
    Ok(())
}

/// Adds owner write permission to folders so their entries can be removed
/// (a container may leave read-only folders behind).
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}
