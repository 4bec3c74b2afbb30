//! `exec`: a new process inside a running container's namespaces.
//!
//! The recipe: open the namespace files of the container's first process,
//! join its user namespace first (which grants the capabilities needed to
//! join the rest, since the caller owns it), then mount, uts, ipc, network
//! and cgroup; join its pid namespace, which takes effect for children only,
//! so fork; the child then walks the same last steps as a container's
//! command (session, working folder, capabilities, identity, `execve`).

use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::plan::ProcessPlan;
use super::sys::{self, Forked};
use super::{SandboxError, child};

/// The namespaces joined, in order: the user namespace must come first.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// Runs `process` inside the namespaces of `target` (a container's first
/// process), forwarding the usual signals to it, and returns its exit code
/// (Docker's 126/127 when it cannot start).
///
/// Must be called from a single-threaded process: joining a user namespace
/// requires it, and so does the fork.
pub fn exec_in(target: Pid, process: &ProcessPlan) -> Result<i32, SandboxError> {
    let mut files = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{target}/ns/{name}");
        match File::open(&path) {
            Ok(f) => files.push((f, *flag, *name)),
            Err(source) => {
                return Err(SandboxError::Setup {
                    step: format!("open {path}"),
                    source,
                });
            }
        }
    }
    // Signals meant for the command are forwarded once it runs; block them
    // now so none is lost in between.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| SandboxError::Setup {
        step: "block signals".into(),
        source: e.into(),
    })?;
    for (file, flag, name) in &files {
        // A namespace the container shares with the host (`--network host`)
        // is the one we are in already; joining it again is harmless.
        setns(file.as_fd(), *flag).map_err(|e| SandboxError::Setup {
            step: format!("join the container's {name} namespace"),
            source: e.into(),
        })?;
    }
    drop(files);
    let (report_rx, report_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Setup {
            step: "create a pipe".into(),
            source: e.into(),
        })?;
    let child = match sys::clone_fork(0).map_err(|source| SandboxError::Setup {
        step: "fork".into(),
        source,
    })? {
        Forked::Child => {
            drop(report_rx);
            let err = match sys::reset_signals()
                .map_err(|source| SandboxError::Setup {
                    step: "reset signals".into(),
                    source,
                })
                .and_then(|()| child::exec_command(process))
            {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let code = err.exit_code();
            let mut out = File::from(report_tx);
            let _ = std::io::Write::write_all(&mut out, err.to_string().as_bytes());
            sys::exit_now(code)
        }
        Forked::Parent(pid) => pid,
    };
    drop(report_tx);
    let mut report = String::new();
    let _ = std::io::Read::read_to_string(&mut File::from(report_rx), &mut report);
    let status = wait_forwarding(child, &mask)?;
    let code = super::exit_code(status).unwrap_or(125);
    if !report.is_empty() {
        return Err(if code == 126 || code == 127 {
            SandboxError::Start {
                code,
                message: report,
            }
        } else {
            SandboxError::Setup {
                step: "exec".into(),
                source: std::io::Error::other(report),
            }
        });
    }
    Ok(code)
}

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn wait_forwarding(child: Pid, mask: &SigSet) -> Result<WaitStatus, SandboxError> {
    sys::default_action(FORWARDED);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return Ok(status),
            Err(e) => {
                return Err(SandboxError::Setup {
                    step: "wait for the command".into(),
                    source: e.into(),
                });
            }
        }
        match mask.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(child, sig);
            }
        }
    }
}
