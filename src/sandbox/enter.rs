//! `exec`: a new process inside a running container's namespaces.
//!
//! The recipe: open the namespace files of the container's first process,
//! join its user namespace first (which grants the capabilities needed to
//! join the rest, since the caller owns it), then mount, uts, ipc, network
//! and cgroup; join its pid namespace, which takes effect for children only,
//! so fork; the child then walks the same last steps as a container's
//! command (session, working folder, capabilities, identity, `execve`).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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
/// (Docker's 126/127 when it cannot start). With `process.terminal`, the
/// command gets a pseudo-terminal from the container's devpts, sized as
/// `process.terminal_size` says, which this process relays (see [`relay_terminal`]; `interactive`: standard input
/// goes to it too).
///
/// Must be called from a single-threaded process: joining a user namespace
/// requires it, and so does the fork. It stays single-threaded: a process
/// that has joined a pid namespace cannot start threads.
pub fn exec_in(target: Pid, process: &ProcessPlan, interactive: bool) -> Result<i32, SandboxError> {
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
    if process.terminal {
        mask.add(Signal::SIGWINCH);
    }
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
    let (console_rx, console_tx) = super::handover_pair(process.terminal, "terminal")?;
    let child = match sys::clone_fork(0).map_err(|source| SandboxError::Setup {
        step: "fork".into(),
        source,
    })? {
        Forked::Child => {
            drop((report_rx, console_rx));
            let err = match sys::reset_signals()
                .map_err(|source| SandboxError::Setup {
                    step: "reset signals".into(),
                    source,
                })
                // The mount namespace joined, `/dev/ptmx` is the container's.
                .and_then(|()| match console_tx {
                    Some(sock) => {
                        child::attach_terminal(sock, process.terminal_size.unwrap_or((24, 80)))
                    }
                    None => Ok(()),
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
    drop((report_tx, console_tx));
    // Sent before the command runs; nothing comes if it failed to start,
    // which the report then says.
    let master = console_rx.and_then(|sock| super::fdpass::receive(&sock).ok());
    let mut report = String::new();
    let _ = std::io::Read::read_to_string(&mut File::from(report_rx), &mut report);
    let status = match master {
        Some(master) => relay_terminal(child, &mask, master, interactive)?,
        None => wait_forwarding(child, &mask)?,
    };
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

/// Waits for `child` as [`wait_forwarding`] does, meanwhile copying its
/// terminal to standard output and, if `interactive`, standard input to its
/// terminal; the terminal takes the size of this process's (again on
/// SIGWINCH), or 24 by 80. Output still buffered when the command exits is
/// shown; a background process that keeps the terminal open does not hold
/// this up.
fn relay_terminal(
    child: Pid,
    mask: &SigSet,
    master: OwnedFd,
    interactive: bool,
) -> Result<WaitStatus, SandboxError> {
    let err = |step: &str| {
        let step = step.to_string();
        move |e: nix::Error| SandboxError::Setup {
            step,
            source: e.into(),
        }
    };
    sys::default_action(FORWARDED);
    let sigfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(err("watch signals"))?;
    let resize = || follow_user_terminal(master.as_fd());
    let flags = fcntl(&master, FcntlArg::F_GETFL).map_err(err("read the terminal's flags"))?;
    fcntl(
        &master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(err("make the terminal non-blocking"))?;
    let stdin = std::io::stdin();
    let mut input_open = interactive;
    let mut output_open = true;
    let mut status = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Once the command has exited, what its terminal still holds is read
        // and the relay ends.
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if output_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if input_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let timeout = match status {
            Some(_) => PollTimeout::ZERO,
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            r => r.map_err(err("wait for the terminal"))?,
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        let output_ready = output_open && ready[1];
        let input_ready = input_open && ready[if output_open { 2 } else { 1 }];
        if output_ready {
            match nix::unistd::read(&master, &mut buf) {
                Ok(n @ 1..) => {
                    let mut out = std::io::stdout().lock();
                    let _ = std::io::Write::write_all(&mut out, &buf[..n])
                        .and_then(|()| std::io::Write::flush(&mut out));
                    continue;
                }
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                // EIO: no process holds the terminal any more.
                _ => output_open = false,
            }
        }
        if let Some(s) = status {
            return Ok(s);
        }
        if input_ready {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n @ 1..) => {
                    let _ = write_all(&master, &buf[..n]);
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                _ => input_open = false,
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => resize(),
                    Ok(sig) => {
                        let _ = kill(child, sig);
                    }
                    Err(_) => {}
                }
            }
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(s) => status = Some(s),
                Err(e) => return Err(err("wait for the command")(e)),
            }
        }
    }
}

/// The size of the terminal this process writes to (or reads from), if it
/// has one: what a command's terminal is given with `-t`.
pub fn user_terminal_size() -> Option<(u16, u16)> {
    sys::window_size(std::io::stdout().as_fd())
        .or_else(|| sys::window_size(std::io::stdin().as_fd()))
        .filter(|&(rows, cols)| rows > 0 && cols > 0)
}

/// Gives the terminal whose master is `master` the size of the user's, if
/// the user has one (on SIGWINCH).
pub fn follow_user_terminal(master: BorrowedFd<'_>) {
    if let Some((rows, cols)) = user_terminal_size() {
        let _ = sys::set_window_size(master, rows, cols);
    }
}

/// Writes all of `data` to the non-blocking terminal, waiting while it is
/// full (the command is not reading).
fn write_all(fd: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EAGAIN) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

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
