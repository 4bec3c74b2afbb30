//! What burrow remembers about a container, and how it tells whether it runs.
//!
//! Two files, written atomically:
//! - `containers/<id>/container.json` ([`Record`]): what the container is and
//!   how its last run ended. Persistent.
//! - `<runtime>/<id>/state.json` ([`Runtime`]): which supervisor runs it now.
//!   Volatile: it vanishes with a reboot, and then the container has stopped.
//!
//! A container is running only while its supervisor is alive; a runtime file
//! whose supervisor is gone means the supervisor died, and the first command
//! that notices records the container as exited with that reason.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::options::{Bind, Network};
use crate::paths::{Dirs, write_atomic};

/// Exit code recorded when the supervisor died and took the container with it.
pub const EXIT_SUPERVISOR_DIED: i32 = 255;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    pub created: String,
    /// The full command line: entrypoint then cmd.
    pub command: Vec<String>,
    pub config: RunConfig,
    pub last: LastRun,
}

/// The user's choices, kept for `inspect` and for starting again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    pub network: Option<Network>,
    pub binds: Vec<Bind>,
    /// `-p` and `-P` mappings as asked (host port 0: any free port).
    #[serde(default)]
    pub ports: Vec<crate::net::PortMapping>,
    /// The image's exposed ports (`80/tcp`), which `ps` and `inspect` show
    /// unpublished ones of, as Docker does.
    #[serde(default)]
    pub exposed: Vec<String>,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub init: bool,
    /// How the rootfs was made; `None` in records older than the choice.
    #[serde(default)]
    pub storage_driver: Option<super::rootfs::Driver>,
    /// The image's layer folders, bottom first: the overlay's lower dirs.
    #[serde(default)]
    pub layers: Vec<std::path::PathBuf>,
    pub interactive: bool,
    /// A pseudo-terminal for the command (`-t`).
    #[serde(default)]
    pub tty: bool,
    pub stop_signal: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// How the latest run went; `started_at` empty until the first start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: Option<i32>,
    /// Why burrow ended or could not start the container, if it was not the
    /// command's own doing.
    pub error: String,
}

/// The running part, present only while a supervisor owns the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub supervisor_pid: i32,
    /// The supervisor's start time in clock ticks since boot, from
    /// `/proc/PID/stat`: tells a live supervisor from a recycled pid.
    pub supervisor_start: u64,
    /// Host pid of the container's first process (0 until it has started).
    pub pid: i32,
    pub started_at: String,
    /// The published ports as bound, with the ports picked for host port 0.
    #[serde(default)]
    pub ports: Vec<crate::net::PortMapping>,
}

/// The state `ps` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Running {
        pid: i32,
        supervisor_pid: i32,
        started_at: String,
    },
    Exited {
        code: i32,
        finished_at: String,
    },
}

impl Status {
    /// Docker's one-word state.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running { .. } => "running",
            Status::Exited { .. } => "exited",
        }
    }
}

pub fn record_path(dirs: &Dirs, id: &str) -> std::path::PathBuf {
    dirs.container(id).join("container.json")
}

pub fn runtime_path(dirs: &Dirs, id: &str) -> std::path::PathBuf {
    dirs.runtime_container(id).join("state.json")
}

pub fn load_record(dirs: &Dirs, id: &str) -> Result<Record> {
    let path = record_path(dirs, id);
    let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is corrupt", path.display()))
}

pub fn save_record(dirs: &Dirs, rec: &Record) -> Result<()> {
    write_record(dirs, rec, true)
}

/// [`save_record`] without the flush to disk, where losing the update in a
/// crash is harmless: the start of a run (a record left without an exit is
/// read as "the supervisor died") and the end of an `--rm` container (whose
/// folder goes next).
pub fn save_record_volatile(dirs: &Dirs, rec: &Record) -> Result<()> {
    write_record(dirs, rec, false)
}

/// Space kept beside each record, so that a container that filled the disk
/// (its writable layer shares the filesystem with its record) can still have
/// its exit recorded, and be started, stopped and removed afterwards.
const RESERVE: &str = "reserve";
const RESERVE_BYTES: usize = 64 * 1024;

/// Writes the record; on a full disk, gives up the container's reserve and
/// tries once more, then refills the reserve from whatever space is free.
fn write_record(dirs: &Dirs, rec: &Record, durable: bool) -> Result<()> {
    let path = record_path(dirs, &rec.id);
    let bytes = serde_json::to_vec_pretty(rec)?;
    let write = || {
        if durable {
            write_atomic(&path, &bytes)
        } else {
            crate::paths::write_volatile(&path, &bytes)
        }
    };
    let reserve = dirs.container(&rec.id).join(RESERVE);
    let mut result = write();
    if result.as_ref().is_err_and(is_disk_full) && fs::remove_file(&reserve).is_ok() {
        result = write();
    }
    result.with_context(|| format!("cannot write {}", path.display()))?;
    refill_reserve(&reserve);
    Ok(())
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Best effort: a reserve cut short by a full disk still helps, and the next
/// record written tops it up.
fn refill_reserve(path: &Path) {
    if fs::metadata(path).is_ok_and(|m| m.len() >= RESERVE_BYTES as u64) {
        return;
    }
    let _ = File::create(path).and_then(|mut f| f.write_all(&[0; RESERVE_BYTES]));
}

pub fn load_runtime(dirs: &Dirs, id: &str) -> Option<Runtime> {
    fs::read(runtime_path(dirs, id))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
}

pub fn save_runtime(dirs: &Dirs, id: &str, rt: &Runtime) -> Result<()> {
    let dir = dirs.runtime_container(id);
    crate::paths::make_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    crate::paths::write_volatile(&runtime_path(dirs, id), &serde_json::to_vec(rt)?)
        .context("cannot write the runtime state")
}

pub fn clear_runtime(dirs: &Dirs, id: &str) {
    let _ = fs::remove_dir_all(dirs.runtime_container(id));
}

/// A live process's start time in clock ticks since boot, or `None` if it is
/// gone or a zombie (a dead supervisor whose parent has not reaped it).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces, so count from the
    // closing parenthesis: field 3 is the state, field 22 the start time.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the supervisor recorded in `rt` is still the process it was.
pub fn supervisor_alive(rt: &Runtime) -> bool {
    process_start_time(rt.supervisor_pid) == Some(rt.supervisor_start)
}

/// A per-container lock, held while a command changes the container's state.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(dirs: &Dirs, id: &str) -> Result<Lock> {
    let path = dirs.container(id).join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Lock(f))
}

/// The lock on the set of containers, held while names are taken or freed.
pub fn lock_all(dirs: &Dirs) -> Result<Lock> {
    let dir = dirs.containers();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Lock(f))
}

/// Works out the status, and records a dead supervisor's container as exited.
/// Takes the container's lock only when it has something to repair.
pub fn status(dirs: &Dirs, rec: &mut Record) -> Result<Status> {
    status_with(dirs, rec, false)
}

/// [`status`] for a caller that already holds the container's [`lock`]
/// (a second flock of the same file from this process would wait forever).
pub fn status_locked(dirs: &Dirs, rec: &mut Record) -> Result<Status> {
    status_with(dirs, rec, true)
}

fn status_with(dirs: &Dirs, rec: &mut Record, locked: bool) -> Result<Status> {
    if let Some(rt) = load_runtime(dirs, &rec.id) {
        if supervisor_alive(&rt) {
            return Ok(Status::Running {
                pid: rt.pid,
                supervisor_pid: rt.supervisor_pid,
                started_at: rt.started_at,
            });
        }
        let _guard = if locked {
            None
        } else {
            Some(lock(dirs, &rec.id)?)
        };
        // Re-read under the lock: the supervisor may have just finished.
        *rec = load_record(dirs, &rec.id)?;
        if load_runtime(dirs, &rec.id).is_some() {
            // A supervisor records the exit before it clears the runtime
            // file; no exit code means it died while the container ran.
            if rec.last.exit_code.is_none() {
                rec.last.exit_code = Some(EXIT_SUPERVISOR_DIED);
                rec.last.finished_at = crate::timefmt::now();
                rec.last.error = format!(
                    "the supervisor (pid {}) died unexpectedly; the container was killed with it",
                    rt.supervisor_pid
                );
                save_record(dirs, rec)?;
            }
            clear_runtime(dirs, &rec.id);
        }
    }
    Ok(match rec.last.exit_code {
        Some(code) if !rec.last.started_at.is_empty() => Status::Exited {
            code,
            finished_at: rec.last.finished_at.clone(),
        },
        _ => Status::Created,
    })
}

/// Whether a folder is a container (has a record); used to skip debris.
pub fn is_container_dir(dir: &Path) -> bool {
    dir.join("container.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert_eq!(process_start_time(me), Some(t));
        assert_eq!(process_start_time(i32::MAX), None);
    }
}
