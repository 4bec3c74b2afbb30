//! The per-container supervisor: the role conmon plays for Podman.
//!
//! It owns one run of a container. It spawns the sandbox from the bundle's
//! `config.json`, holds the parent end of the container's stdout and stderr,
//! writes every line to the log with its time (and, attached, to the
//! terminal), forwards the signals it receives to the container, reaps it,
//! records the exit code and time, and removes an `--rm` container.
//!
//! Detached, the supervisor is a forked copy of the CLI in a session of its
//! own; the CLI waits on a pipe until the command has been `exec`ed (or an
//! error comes back) and then exits. Attached, the CLI process itself is the
//! supervisor. Either way it is single-threaded, which the sandbox's
//! fork-style clone requires, and one poll loop serves it.
//!
//! If the supervisor dies, the kernel kills the container with it (the
//! container's parent-death signal), and the runtime file it leaves behind
//! lets the next command record the container as exited with that reason.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use super::console::Console;
use super::logs::{self, Stream};
use super::options::{Network, PortHandler};
use super::record::{self, Runtime};
use crate::paths::Dirs;
use crate::sandbox::{self, Plan, Stdio};

/// How a start relates to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Run in the background; return once the command runs.
    Detached,
    /// Stream output here and wait. `log` keeps a copy in the container log;
    /// an `--rm` container started in the foreground needs none, and its
    /// output then goes straight to the terminal with no copying.
    Foreground { log: bool },
}

/// Signals an attached supervisor forwards to the container, as `docker run`
/// does with its signal proxy; SIGCHLD tells it the container has exited.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// A start failure that carries Docker's exit code (125, 126 or 127).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

/// Starts container `id`, whose lock the caller holds (`lock` is released
/// once the command runs). Detached: returns `Ok(None)` when it runs.
/// Foreground: returns `Ok(Some(exit_code))` when it has exited.
pub fn start(
    dirs: &Dirs,
    id: &str,
    attach: Attach,
    interactive: bool,
    lock: record::Lock,
) -> Result<Option<i32>> {
    let spec_path = dirs.container(id).join("config.json");
    let spec = oci_spec::runtime::Spec::load(&spec_path)
        .with_context(|| format!("cannot read the runtime spec {}", spec_path.display()))?;
    let plan = Plan::from_spec(&spec, &dirs.container(id))?;
    match attach {
        Attach::Foreground { .. } => {
            let code = supervise(dirs, id, &plan, attach, interactive, lock, None)?;
            Ok(Some(code))
        }
        Attach::Detached => detach(dirs, id, &plan, lock).map(|()| None),
    }
}

/// Forks the background supervisor and waits for its word that the command
/// runs.
fn detach(dirs: &Dirs, id: &str, plan: &Plan, lock: record::Lock) -> Result<()> {
    let (ready_rx, ready_tx) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    match sandbox::sys::clone_fork(0).context("cannot fork the supervisor")? {
        sandbox::sys::Forked::Child => {
            drop(ready_rx);
            let code = match become_daemon().and_then(|()| {
                supervise(
                    dirs,
                    id,
                    plan,
                    Attach::Detached,
                    false,
                    lock,
                    Some(ready_tx),
                )
            }) {
                Ok(_) => 0,
                Err(_) => 1,
            };
            sandbox::sys::exit_now(code)
        }
        sandbox::sys::Forked::Parent(_) => {
            drop(ready_tx);
            let mut report = Vec::new();
            File::from(ready_rx)
                .read_to_end(&mut report)
                .context("cannot hear from the supervisor")?;
            drop(lock);
            match report.split_first() {
                None => bail!("the supervisor exited before starting the container"),
                Some((0, warnings)) => {
                    for w in String::from_utf8_lossy(warnings).lines() {
                        eprintln!("burrow: warning: {w}");
                    }
                    Ok(())
                }
                Some((&code, msg)) => Err(StartError {
                    code: code.into(),
                    message: String::from_utf8_lossy(msg).into_owned(),
                }
                .into()),
            }
        }
    }
}

/// What a detached supervisor tells the waiting CLI once the container
/// runs: a 0 (started), then the warnings for the user, a line each. (A
/// failed start sends its exit code and message instead: `fail_start`.)
fn ready_report(warnings: &[String]) -> Vec<u8> {
    let mut report = vec![0];
    for w in warnings {
        report.extend(w.replace('\n', " ").as_bytes());
        report.push(b'\n');
    }
    report
}

/// Leaves the CLI's session and terminal, so closing the terminal does not
/// signal the supervisor, and points its stdio at /dev/null.
fn become_daemon() -> Result<()> {
    nix::unistd::setsid()?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    nix::unistd::dup2_stdout(null.as_fd())?;
    nix::unistd::dup2_stderr(null.as_fd())?;
    Ok(())
}

/// Runs one life of the container in this process.
fn supervise(
    dirs: &Dirs,
    id: &str,
    plan: &Plan,
    attach: Attach,
    interactive: bool,
    lock: record::Lock,
    ready: Option<OwnedFd>,
) -> Result<i32> {
    let log = attach != Attach::Foreground { log: false };
    let foreground = matches!(attach, Attach::Foreground { .. });
    let tty = plan.process.terminal;
    // Output to a closed terminal must not kill the supervisor, and with it
    // the container.
    sandbox::sys::set_sigpipe(false);
    let mut rec = record::load_record(dirs, id)?;
    let me = std::process::id() as i32;
    let mut rt = Runtime {
        supervisor_pid: me,
        supervisor_start: record::process_start_time(me).unwrap_or(0),
        pid: 0,
        started_at: crate::timefmt::now(),
        ports: Vec::new(),
    };
    record::save_runtime(dirs, id, &rt)?;
    rec.last = record::LastRun {
        started_at: rt.started_at.clone(),
        ..Default::default()
    };
    record::save_record_volatile(dirs, &rec)?;

    // Block the signals we wait for before the container exists, so none
    // arrives unhandled; the sandbox's child unblocks them for itself.
    let mut mask = SigSet::empty();
    for s in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        mask.add(*s);
    }
    // The user's terminal changing size resizes the container's.
    if tty && foreground {
        mask.add(Signal::SIGWINCH);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    sandbox::sys::default_action(FORWARDED);
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;

    // Host ports are bound before the container exists, so a port in use
    // fails the start with nothing left running.
    let slirp = match &rec.config.network {
        Some(Network::Slirp {
            allow_host_loopback,
            port_handler,
            gateway_source,
        }) => Some((*allow_host_loopback, *port_handler, *gateway_source)),
        _ => None,
    };
    let bound = match slirp
        .map(|_| crate::net::bind_ports(&rec.config.ports))
        .transpose()
    {
        Ok(b) => b,
        Err(e) => return Err(fail_start(dirs, &mut rec, 125, e.to_string(), ready)),
    };
    rt.ports = bound.as_ref().map(|b| b.mappings()).unwrap_or_default();

    // With -t the container's streams are its terminal, made inside.
    let (stdio, pipes) = match tty {
        true => (null_stdio()?, None),
        false => make_stdio(log, interactive)?,
    };
    let mut fuse = None;
    let mut handover = sandbox::Handover::default();
    if plan.fuse_root {
        match FuseServer::start(dirs, &rec, plan) {
            Ok((server, sock)) => {
                fuse = Some(server);
                handover.fuse_server = Some(sock);
            }
            Err(e) => return Err(fail_start(dirs, &mut rec, 125, format!("{e:#}"), ready)),
        }
    }
    // The command's terminal starts at the size of the user's.
    let sized;
    let size = match tty && foreground {
        true => sandbox::user_terminal_size(),
        false => None,
    };
    let plan = match size {
        Some(size) => {
            sized = Plan {
                process: sandbox::plan::ProcessPlan {
                    terminal_size: Some(size),
                    ..plan.process.clone()
                },
                ..plan.clone()
            };
            &sized
        }
        None => plan,
    };
    let spawned = match sandbox::spawn(plan, stdio, handover) {
        Ok(s) => s,
        Err(e) => {
            if let Some(f) = fuse {
                f.kill();
            }
            return Err(fail_start(
                dirs,
                &mut rec,
                e.exit_code(),
                e.to_string(),
                ready,
            ));
        }
    };
    let pid = spawned.pid;
    let mut console = spawned.console.map(Console::new);
    // The network holds one or two descriptors per connection (more while
    // bytes wait in a pipe): allow it as many as the hard limit does. The
    // container, already started, keeps the limits it inherited.
    raise_nofile();
    // Published TCP ports take the kernel path when its socket maker runs.
    // What went wrong on the way is told to the user with the start.
    let mut warnings = Vec::new();
    let maker = match (&bound, slirp) {
        (Some(ports), Some((_, PortHandler::Kernel, _))) if ports.has_tcp() => {
            match SocketMaker::start(pid) {
                Ok(maker) => Some(maker),
                Err(e) => {
                    warnings.push(format!(
                        "{e:#}; published ports use the userspace network stack"
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    // The network runs on a thread of its own; from here on this process is
    // multi-threaded and must not fork again until the thread is joined.
    let mut maker_pid = None;
    let network = match (spawned.tap, bound, slirp) {
        (Some(tap), Some(ports), Some((allow_host_loopback, _, gateway_source))) => {
            let cfg = crate::net::NetConfig {
                allow_host_loopback,
                keep_gateway_source: gateway_source,
                ..crate::net::NetConfig::from_host()
            };
            let chan = maker.map(|(helper, chan)| {
                maker_pid = Some(helper);
                chan
            });
            Some(NetThread::start(tap, cfg, ports, chan)?)
        }
        _ => None,
    };
    rt.pid = pid.as_raw();
    record::save_runtime(dirs, id, &rt)?;
    match ready {
        Some(tx) => File::from(tx).write_all(&ready_report(&warnings))?,
        None => warnings
            .iter()
            .for_each(|w| eprintln!("burrow: warning: {w}")),
    }
    drop(lock);

    let streams = match (&mut console, pipes) {
        (Some(console), _) => {
            if interactive && foreground {
                console.forward_input()?;
            }
            vec![(console.output()?, Stream::Stdout)]
        }
        (None, Some([out, err])) => vec![(out, Stream::Stdout), (err, Stream::Stderr)],
        (None, None) => Vec::new(),
    };
    let output = Output {
        streams,
        log,
        echo: foreground,
    };
    let server_pid = fuse.as_ref().map(|f| f.pid);
    let served = serve(dirs, id, pid, server_pid, &sigfd, output, console.as_ref());
    // The user's terminal is itself again before anything is printed.
    drop(console);
    if let Some(net) = network {
        net.stop();
    }
    // The net thread closed its channel: the maker is exiting.
    if let Some(helper) = maker_pid {
        helper.finish();
    }
    let mut error = String::new();
    if let Some(f) = fuse {
        if served.as_ref().is_ok_and(|s| s.server_died) {
            error = "the FUSE overlay server died; the container was stopped".into();
        }
        f.finish();
    }
    let status = served?.status;
    finish(dirs, id, sandbox::exit_code(status).unwrap_or(125), error)
}

/// Raises this process's soft limit on open files to its hard limit.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A helper process of the supervisor's (the FUSE server, the socket
/// maker).
struct Helper {
    pid: Pid,
}

impl Helper {
    fn kill(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }

    /// Reaps a helper that is exiting on its own, and kills it if it
    /// lingers.
    fn finish(self) {
        for _ in 0..100 {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => return,
            }
        }
        self.kill();
    }
}

/// The `-p` relay's socket maker (`net::nsock`): a child of the supervisor
/// inside the container's user and network namespaces.
struct SocketMaker;

impl SocketMaker {
    /// How long the maker may take to set up the namespace: a fork, a
    /// sysctl and two netlink messages, which take milliseconds.
    const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    /// Starts it and waits for its report; returns it and the net thread's
    /// end of its channel, or why the relay cannot be used (the maker is
    /// then gone).
    fn start(container: Pid) -> Result<(Helper, OwnedFd)> {
        let (ours, theirs) =
            sandbox::handover_channel().context("cannot create the socket maker's channel")?;
        let keep = [std::os::fd::AsRawFd::as_raw_fd(&theirs)];
        let pid = sandbox::spawn_in_netns(container, &keep, move || {
            crate::net::serve_socket_maker(theirs)
        })
        .context("cannot start the -p relay's socket maker")?;
        let helper = Helper { pid };
        match crate::net::await_socket_maker(&ours, Self::REPORT_TIMEOUT) {
            Ok(()) => Ok((helper, ours)),
            Err(why) => {
                helper.kill();
                Err(anyhow::anyhow!(why))
            }
        }
    }
}

/// burrow's FUSE overlay server for a `fuse` root: a child of the
/// supervisor, root of a user namespace with the container's maps (so it
/// owns files of every container user), waiting for the sandbox to hand it
/// the root mount's `/dev/fuse` descriptor.
struct FuseServer {
    pid: Pid,
}

impl FuseServer {
    /// Starts the server; returns it and the socket end the sandbox sends on.
    fn start(dirs: &Dirs, rec: &record::Record, plan: &Plan) -> Result<(FuseServer, OwnedFd)> {
        let dir = dirs.container(&rec.id);
        let lowers: Vec<std::path::PathBuf> = rec.config.layers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            bail!(
                "container {} records no image layers for its FUSE overlay; recreate it",
                rec.name
            );
        }
        let mut opts = crate::overlay::Options::new(lowers, dir.join("upper"), dir.join("work"));
        opts.allow_other = true;
        let (rx, tx) =
            sandbox::handover_channel().context("cannot create the FUSE hand-over socket")?;
        let keep = [std::os::fd::AsRawFd::as_raw_fd(&rx)];
        let pid = sandbox::spawn_in_userns(&plan.uid_map, &plan.gid_map, &keep, move || {
            let served = sandbox::receive_fd(&rx)
                .map_err(|e| e.to_string())
                .and_then(|fd| crate::overlay::serve_fd(fd, &opts).map_err(|e| format!("{e:#}")));
            i32::from(served.is_err())
        })?;
        Ok((FuseServer { pid }, tx))
    }

    fn kill(self) {
        Helper { pid: self.pid }.kill()
    }

    /// After the container: its mount namespace is gone, so the kernel has
    /// ended the FUSE connection and the server is exiting.
    fn finish(self) {
        Helper { pid: self.pid }.finish()
    }
}

/// What the poll loop saw: the container's wait status, and whether the
/// FUSE server died under it.
struct Served {
    status: WaitStatus,
    server_died: bool,
}

/// The userspace network's thread and the pipe that stops it.
struct NetThread {
    stop: OwnedFd,
    handle: std::thread::JoinHandle<Result<(), crate::net::NetError>>,
}

impl NetThread {
    fn start(
        tap: OwnedFd,
        cfg: crate::net::NetConfig,
        ports: crate::net::BoundPorts,
        maker: Option<OwnedFd>,
    ) -> Result<NetThread> {
        let (stop_rx, stop) = pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")?;
        let handle = std::thread::Builder::new()
            .name("net".into())
            .spawn(move || crate::net::run(tap, cfg, ports, stop_rx, maker))
            .context("cannot start the network thread")?;
        Ok(NetThread { stop, handle })
    }

    /// Closes the stop pipe and waits for the loop to end.
    fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

/// Where the container's output comes from and goes: `streams` are read
/// until they end, copied to the log if `log` and to this process's own
/// stdout and stderr if `echo`.
struct Output {
    streams: Vec<(OwnedFd, Stream)>,
    log: bool,
    echo: bool,
}

/// Standard streams for a container whose terminal replaces them.
fn null_stdio() -> Result<Stdio> {
    let null = || -> Result<OwnedFd> { Ok(File::open("/dev/null")?.into()) };
    Ok(Stdio {
        stdin: null()?,
        stdout: null()?,
        stderr: null()?,
    })
}

/// The container's stdio: pipes to read when logging, else this process's
/// own descriptors. Stdin is /dev/null unless `-i`.
fn make_stdio(log: bool, interactive: bool) -> Result<(Stdio, Option<[OwnedFd; 2]>)> {
    let stdin: OwnedFd = if interactive {
        io::stdin().as_fd().try_clone_to_owned()?
    } else {
        File::open("/dev/null")?.into()
    };
    if !log {
        let stdout = io::stdout().as_fd().try_clone_to_owned()?;
        let stderr = io::stderr().as_fd().try_clone_to_owned()?;
        return Ok((
            Stdio {
                stdin,
                stdout,
                stderr,
            },
            None,
        ));
    }
    let (out_rx, out_tx) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_rx, err_tx) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((
        Stdio {
            stdin,
            stdout: out_tx,
            stderr: err_tx,
        },
        Some([out_rx, err_rx]),
    ))
}

/// Records a failed start and turns it into the error the CLI reports.
fn fail_start(
    dirs: &Dirs,
    rec: &mut record::Record,
    code: i32,
    message: String,
    ready: Option<OwnedFd>,
) -> anyhow::Error {
    rec.last.exit_code = Some(code);
    rec.last.finished_at = crate::timefmt::now();
    rec.last.error = message.clone();
    let _ = record::save_record(dirs, rec);
    record::clear_runtime(dirs, &rec.id);
    if let Some(tx) = ready {
        let mut f = File::from(tx);
        let _ = f.write_all(&[code as u8]);
        let _ = f.write_all(message.as_bytes());
    }
    if rec.config.auto_remove {
        let _ = super::remove_files(dirs, &rec.id);
    }
    StartError { code, message }.into()
}

/// The poll loop: copies output to the log (and the terminal when attached),
/// forwards signals, and returns the container's wait status once it has
/// exited and its output is drained.
fn serve(
    dirs: &Dirs,
    id: &str,
    pid: Pid,
    server: Option<Pid>,
    sigfd: &SignalFd,
    output: Output,
    console: Option<&Console>,
) -> Result<Served> {
    let Output {
        streams: mut open,
        log,
        echo,
    } = output;
    let mut writer = match log && !open.is_empty() {
        true => Some(
            logs::Writer::open(&logs::path(dirs, id)).context("cannot open the container log")?,
        ),
        false => None,
    };
    let mut status = None;
    let mut server_died = false;
    let mut buf = vec![0u8; 64 * 1024];
    while status.is_none() || !open.is_empty() {
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r?,
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        for i in (0..open.len()).rev() {
            if !ready[i] {
                continue;
            }
            let n = nix::unistd::read(&open[i].0, &mut buf).unwrap_or(0);
            if n == 0 {
                open.remove(i);
                continue;
            }
            let stream = open[i].1;
            if let Some(w) = writer.as_mut() {
                let _ = w.write(stream, &buf[..n]);
            }
            if echo {
                let _ = match stream {
                    Stream::Stdout => io::stdout()
                        .write_all(&buf[..n])
                        .and_then(|()| io::stdout().flush()),
                    Stream::Stderr => io::stderr().write_all(&buf[..n]),
                };
            }
        }
        if ready[ready.len() - 1] {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) => {}
                    Some(Signal::SIGWINCH) => {
                        if let Some(console) = console {
                            console.resize();
                        }
                    }
                    Some(s) => {
                        let _ = kill(pid, s);
                    }
                    None => {}
                }
            }
            if status.is_none() {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(s) => status = Some(s),
                    Err(e) => return Err(e).context("cannot wait for the container"),
                }
            }
            // A FUSE server that dies leaves the container's files hanging
            // on a dead connection: stop the container, with the reason.
            if let (Some(server), false, None) = (server, server_died, status) {
                match waitpid(server, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    // A clean end: the mount went away with the container,
                    // which is exiting (its namespaces go before its
                    // parent hears of it).
                    Ok(WaitStatus::Exited(_, 0)) => {}
                    _ => {
                        server_died = true;
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
            }
        }
    }
    if let Some(w) = writer.as_mut() {
        let _ = w.flush();
    }
    Ok(Served {
        status: status.expect("the loop ends only with a status"),
        server_died,
    })
}

/// Records the exit, clears the runtime state, removes an `--rm` container.
fn finish(dirs: &Dirs, id: &str, code: i32, error: String) -> Result<i32> {
    let _guard = record::lock(dirs, id)?;
    let mut rec = record::load_record(dirs, id)?;
    rec.last.exit_code = Some(code);
    rec.last.error = error;
    rec.last.finished_at = crate::timefmt::now();
    if rec.config.auto_remove {
        record::save_record_volatile(dirs, &rec)?;
    } else {
        record::save_record(dirs, &rec)?;
    }
    record::clear_runtime(dirs, id);
    if rec.config.auto_remove {
        drop(_guard);
        super::remove_files(dirs, id)?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::ready_report;

    #[test]
    fn a_ready_report_is_a_zero_then_a_line_per_warning() {
        assert_eq!(ready_report(&[]), vec![0]);
        let report = ready_report(&["relay down:\nrouting".into(), "second".into()]);
        assert_eq!(report[0], 0);
        assert_eq!(&report[1..], b"relay down: routing\nsecond\n");
    }
}
