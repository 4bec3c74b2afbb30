//! The sandbox: builds a container from an OCI runtime spec alone.
//!
//! [`Plan::from_spec`] checks the spec and turns it into plain data. [`spawn`]
//! then clones one process into new user, mount, pid, uts, ipc, network and
//! cgroup namespaces, writes its id maps from outside (directly for a single
//! id, through `newuidmap`/`newgidmap` for a subordinate range), and releases
//! it to walk the recipe in [`child`]: mounts, `pivot_root`, masks, hostname,
//! loopback, then the init and the command. The handshake is two pipes: one
//! byte "maps written" parent → child, and an error report child → parent
//! that closes without a word when the command has been `exec`ed.
//!
//! The sandbox knows nothing of images, stores or the CLI: it takes a spec,
//! a bundle folder and three stdio descriptors, and returns a pid.

mod child;
mod enter;
mod fdpass;
pub mod idmap;
mod init;
mod mounts;
pub mod plan;
pub mod probe;
pub(crate) mod sys;

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::Command;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};
use thiserror::Error;

pub use child::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
pub use enter::{exec_in, follow_user_terminal, user_terminal_size};
pub use init::exit_code;
pub use mounts::secure_join;
pub use plan::Plan;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("invalid runtime spec: {0}")]
    Spec(String),
    #[error("{step}: {source}")]
    Setup { step: String, source: io::Error },
    /// The command could not be started; `code` is Docker's (126 or 127).
    #[error("{message}")]
    Start { code: i32, message: String },
}

impl SandboxError {
    /// Docker's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

/// The container's standard streams.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What the caller hands the container besides its stdio.
#[derive(Default)]
pub struct Handover {
    /// For a plan with `fuse_root`: a Unix socket to the FUSE server; the
    /// child sends the `/dev/fuse` descriptor of the root mount through it.
    pub fuse_server: Option<OwnedFd>,
}

/// A started container.
#[derive(Debug)]
pub struct Spawned {
    /// Host pid of the container's first process (the init, or the command).
    pub pid: Pid,
    /// The TAP device made in the container's network namespace, if the plan
    /// asked for one: the supervisor's end of the container's network.
    pub tap: Option<OwnedFd>,
    /// The master of the command's pseudo-terminal, if the plan asked for
    /// one (`ProcessPlan::terminal`).
    pub console: Option<OwnedFd>,
}

/// Starts the container the plan describes once the command has been
/// `exec`ed. The caller owns the child: it must `waitpid` it.
///
/// Must be called from a single-threaded process (see `sys::clone_fork`).
pub fn spawn(plan: &Plan, stdio: Stdio, handover: Handover) -> Result<Spawned, SandboxError> {
    if plan.fuse_root && handover.fuse_server.is_none() {
        return Err(SandboxError::Spec(
            "a FUSE root needs a server to hand the mount to".into(),
        ));
    }
    let pipe = |what: &str| {
        pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::Setup {
            step: format!("create the {what} pipe"),
            source: e.into(),
        })
    };
    let (maps_rx, maps_tx) = pipe("id map")?;
    let (report_rx, report_tx) = pipe("error report")?;
    let (tap_rx, tap_tx) = handover_pair(plan.tap.is_some(), "TAP")?;
    let (console_rx, console_tx) = handover_pair(plan.process.terminal, "terminal")?;

    let child = clone_namespaces(plan.namespaces)?;
    let Some(pid) = child else {
        drop((maps_tx, report_rx, tap_rx, console_rx));
        child::run(
            plan,
            stdio,
            maps_rx,
            report_tx,
            child::Sockets {
                tap: tap_tx,
                fuse_server: handover.fuse_server,
                console: console_tx,
            },
        )
    };
    drop((maps_rx, report_tx, stdio, tap_tx, console_tx, handover));

    let reap = |e: SandboxError| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    if let Err(e) = write_id_maps(pid, &plan.uid_map, &plan.gid_map) {
        return Err(reap(e));
    }
    let mut tx = std::fs::File::from(maps_tx);
    tx.write_all(b"1").map_err(|source| {
        reap(SandboxError::Setup {
            step: "release the container".into(),
            source,
        })
    })?;
    drop(tx);

    let mut report = Vec::new();
    std::fs::File::from(report_rx)
        .read_to_end(&mut report)
        .map_err(|source| {
            reap(SandboxError::Setup {
                step: "read the start report".into(),
                source,
            })
        })?;
    match report.split_first() {
        None => {
            let receive = |sock: Option<OwnedFd>, what: &str| match sock {
                Some(sock) => fdpass::receive(&sock).map(Some).map_err(|source| {
                    reap(SandboxError::Setup {
                        step: format!("receive the {what}"),
                        source,
                    })
                }),
                None => Ok(None),
            };
            let tap = receive(tap_rx, "TAP device")?;
            let console = receive(console_rx, "terminal")?;
            Ok(Spawned { pid, tap, console })
        }
        Some((&code, message)) => {
            let _ = waitpid(pid, None);
            let message = String::from_utf8_lossy(message).into_owned();
            Err(match code {
                126 | 127 => SandboxError::Start {
                    code: code.into(),
                    message,
                },
                _ => SandboxError::Setup {
                    step: "container setup".into(),
                    source: io::Error::other(message),
                },
            })
        }
    }
}

/// Clones the first process; `None` in the child. The cgroup namespace is
/// best effort: kernels or sandboxes that refuse it get the host's view.
fn clone_namespaces(flags: CloneFlags) -> Result<Option<Pid>, SandboxError> {
    let attempt = |f: CloneFlags| sys::clone_fork(f.bits());
    let res = match attempt(flags) {
        Err(e)
            if flags.contains(CloneFlags::CLONE_NEWCGROUP)
                && e.raw_os_error() == Some(libc::EINVAL) =>
        {
            attempt(flags - CloneFlags::CLONE_NEWCGROUP)
        }
        r => r,
    };
    match res {
        Ok(sys::Forked::Child) => Ok(None),
        Ok(sys::Forked::Parent(pid)) => Ok(Some(pid)),
        Err(e) => Err(SandboxError::Setup {
            step: probe::userns_hint("create the container's namespaces"),
            source: e,
        }),
    }
}

/// Writes the child's uid and gid maps from outside its namespace.
fn write_id_maps(
    pid: Pid,
    uid_map: &[idmap::IdMap],
    gid_map: &[idmap::IdMap],
) -> Result<(), SandboxError> {
    let own_uid = nix::unistd::geteuid().as_raw();
    let own_gid = nix::unistd::getegid().as_raw();
    if idmap::needs_helper(uid_map, own_uid) || idmap::needs_helper(gid_map, own_gid) {
        // The two setuid helpers are independent: run them side by side.
        let uid_helper = start_helper("newuidmap", pid, uid_map)?;
        let gid_helper = start_helper("newgidmap", pid, gid_map)?;
        let (uid_done, gid_done) = (uid_helper.finish(), gid_helper.finish());
        return uid_done.and(gid_done);
    }
    let proc_file = |name: &str, text: &str| {
        std::fs::write(format!("/proc/{pid}/{name}"), text).map_err(|source| SandboxError::Setup {
            step: format!("write /proc/{pid}/{name}"),
            source,
        })
    };
    // An unprivileged process may map only its own ids, and only after giving
    // up setgroups for the namespace.
    proc_file("setgroups", "deny")?;
    proc_file("uid_map", &idmap::proc_format(uid_map))?;
    proc_file("gid_map", &idmap::proc_format(gid_map))
}

/// A [`handover_channel`] if `wanted`, as (receiver's end, sender's end);
/// `what` names what goes through it, for the error.
fn handover_pair(
    wanted: bool,
    what: &str,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), SandboxError> {
    if !wanted {
        return Ok((None, None));
    }
    let (rx, tx) = fdpass::channel().map_err(|source| SandboxError::Setup {
        step: format!("create the {what} hand-over socket"),
        source,
    })?;
    Ok((Some(rx), Some(tx)))
}

/// A connected Unix socket pair for handing descriptors over:
/// (receiver's end, sender's end).
pub fn handover_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    fdpass::channel()
}

/// Receives one descriptor from a [`handover_channel`] end.
pub fn receive_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    fdpass::receive(sock)
}

/// Starts `f` in a child process that is root of a fresh user namespace with
/// these maps and returns its pid without waiting: how the supervisor runs a
/// FUSE server that owns files of every mapped id. The child keeps only the
/// descriptors in `keep` (besides stdio) and exits with `f`'s result.
///
/// Must be called from a single-threaded process (see `sys::clone_fork`).
pub fn spawn_in_userns(
    uid_map: &[idmap::IdMap],
    gid_map: &[idmap::IdMap],
    keep: &[std::os::fd::RawFd],
    f: impl FnOnce() -> i32,
) -> Result<Pid, SandboxError> {
    let (maps_rx, maps_tx) = pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::Setup {
        step: "create a pipe".into(),
        source: e.into(),
    })?;
    let pid = match clone_namespaces(CloneFlags::CLONE_NEWUSER)? {
        None => {
            drop(maps_tx);
            let mut keep = keep.to_vec();
            keep.push(std::os::fd::AsRawFd::as_raw_fd(&maps_rx));
            let _ = sys::close_fds_except(&keep);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let mut byte = [0u8; 1];
            let code = match std::fs::File::from(maps_rx).read(&mut byte) {
                Ok(1) => f(),
                _ => 125,
            };
            sys::exit_now(code)
        }
        Some(pid) => pid,
    };
    drop(maps_rx);
    if let Err(e) = write_id_maps(pid, uid_map, gid_map) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    std::fs::File::from(maps_tx)
        .write_all(b"1")
        .map_err(|source| SandboxError::Setup {
            step: "release the helper".into(),
            source,
        })?;
    Ok(pid)
}

/// Runs `f` in a child process that joined the user and network namespaces
/// of `target` (a container's first process), as that namespace's root, and
/// returns its pid without waiting: how the supervisor gets sockets made
/// inside a container's network. The child keeps only the descriptors in
/// `keep` (besides stdio), dies with its parent, and exits with `f`'s
/// result (125 if it could not join).
///
/// Must be called from a single-threaded process: the fork requires it, and
/// so does joining a user namespace (in the child).
pub fn spawn_in_netns(
    target: Pid,
    keep: &[std::os::fd::RawFd],
    f: impl FnOnce() -> i32,
) -> Result<Pid, SandboxError> {
    let open = |name: &str| {
        let path = format!("/proc/{target}/ns/{name}");
        std::fs::File::open(&path).map_err(|source| SandboxError::Setup {
            step: format!("open {path}"),
            source,
        })
    };
    let (user, net) = (open("user")?, open("net")?);
    match sys::clone_fork(0).map_err(|source| SandboxError::Setup {
        step: "fork".into(),
        source,
    })? {
        sys::Forked::Child => {
            use std::os::fd::{AsFd, AsRawFd};
            let mut keep = keep.to_vec();
            keep.extend([user.as_raw_fd(), net.as_raw_fd()]);
            let _ = sys::close_fds_except(&keep);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            // The user namespace first: its owner (us) gains the
            // capabilities there that joining its network namespace needs.
            let joined = nix::sched::setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)
                .and_then(|()| nix::sched::setns(net.as_fd(), CloneFlags::CLONE_NEWNET));
            drop((user, net));
            sys::exit_now(if joined.is_ok() { f() } else { 125 })
        }
        sys::Forked::Parent(pid) => Ok(pid),
    }
}

/// Runs `f` in a child process that is root of a fresh user namespace with
/// these maps (no other namespace), and returns its exit code. With a
/// subordinate range mapped, that root may remove or chown files owned by
/// any mapped id: how burrow deletes what a container's users created.
pub fn as_namespace_root(
    extra: CloneFlags,
    uid_map: &[idmap::IdMap],
    gid_map: &[idmap::IdMap],
    f: impl FnOnce() -> i32,
) -> Result<i32, SandboxError> {
    let (maps_rx, maps_tx) = pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::Setup {
        step: "create a pipe".into(),
        source: e.into(),
    })?;
    let pid = match clone_namespaces(CloneFlags::CLONE_NEWUSER | extra)? {
        None => {
            drop(maps_tx);
            let mut byte = [0u8; 1];
            let code = match std::fs::File::from(maps_rx).read(&mut byte) {
                Ok(1) => f(),
                _ => 125,
            };
            sys::exit_now(code)
        }
        Some(pid) => pid,
    };
    drop(maps_rx);
    let mapped = write_id_maps(pid, uid_map, gid_map);
    if mapped.is_ok() {
        let _ = std::fs::File::from(maps_tx).write_all(b"1");
    } else {
        drop(maps_tx);
    }
    let status = waitpid(pid, None).map_err(|e| SandboxError::Setup {
        step: "wait for the helper".into(),
        source: e.into(),
    })?;
    mapped?;
    Ok(exit_code(status).unwrap_or(125))
}

/// A running `newuidmap`/`newgidmap`.
struct Helper {
    child: std::process::Child,
    what: String,
}

fn start_helper(name: &str, pid: Pid, maps: &[idmap::IdMap]) -> Result<Helper, SandboxError> {
    let helper = idmap::find_helper(name).ok_or_else(|| SandboxError::Setup {
        step: format!("find {name}"),
        source: io::Error::other(
            "not installed; install the uidmap package or remove the subordinate ranges",
        ),
    })?;
    let child = Command::new(&helper)
        .arg(pid.to_string())
        .args(idmap::helper_args(maps))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| SandboxError::Setup {
            step: format!("run {}", helper.display()),
            source,
        })?;
    let what = format!("{name} {pid} {}", idmap::helper_args(maps).join(" "));
    Ok(Helper { child, what })
}

impl Helper {
    fn finish(self) -> Result<(), SandboxError> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|source| SandboxError::Setup {
                step: format!("wait for {}", self.what),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(SandboxError::Setup {
            step: self.what,
            source: io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        })
    }
}
