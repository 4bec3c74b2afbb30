//! The recipe the container's first process walks, inside its new namespaces.
//!
//! Order matters and each step says why: wait for the id maps, take the stdio,
//! mount everything below the rootfs, `pivot_root`, hide what must be hidden,
//! name the host, bring up loopback, then either become the init and fork the
//! command, or become the command. Errors go back to the parent through the
//! error pipe as one line and an exit code; success is that pipe closing on
//! `exec`.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use caps::CapSet;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::unistd::{Gid, Uid, chdir, execve, sethostname, setresgid, setresuid, setsid};

use super::plan::{Plan, ProcessPlan, TapPlan, set_name};
use super::sys::{self, Forked};
use super::{SandboxError, Stdio, init, mounts};

/// Exit codes the child reports for a command that cannot start, as Docker's.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// The sockets descriptors made inside go out through, each present when
/// the plan asks for what it carries.
pub struct Sockets {
    /// The TAP device, to the supervisor's network.
    pub tap: Option<OwnedFd>,
    /// The FUSE root's `/dev/fuse`, to its server.
    pub fuse_server: Option<OwnedFd>,
    /// The master of the command's pseudo-terminal, to the supervisor.
    pub console: Option<OwnedFd>,
}

/// Runs the recipe; never returns. `maps_done` is read until the parent has
/// written the id maps; `report` carries an error back.
pub fn run(plan: &Plan, stdio: Stdio, maps_done: OwnedFd, report: OwnedFd, sockets: Sockets) -> ! {
    let mut report = Some(report);
    let err = match setup(plan, stdio, maps_done, &mut report, sockets) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = err.exit_code();
    // One message, then exit; the parent reads to EOF.
    if let Some(fd) = report {
        let mut out = std::fs::File::from(fd);
        let _ = out.write_all(&[code as u8]);
        let _ = out.write_all(err.to_string().as_bytes());
    }
    sys::exit_now(code)
}

fn setup(
    plan: &Plan,
    stdio: Stdio,
    maps_done: OwnedFd,
    report: &mut Option<OwnedFd>,
    sockets: Sockets,
) -> Result<Infallible, SandboxError> {
    let Sockets {
        tap: tap_tx,
        fuse_server,
        console,
    } = sockets;
    let setup_err = |step: &str| {
        let step = step.to_string();
        move |e: nix::Error| SandboxError::Setup {
            step,
            source: e.into(),
        }
    };
    // If the supervisor dies, so does the container: nothing is left running
    // that no one watches.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(setup_err("set the parent-death signal"))?;
    sys::reset_signals().map_err(|source| SandboxError::Setup {
        step: "reset signals".into(),
        source,
    })?;
    take_stdio(stdio).map_err(setup_err("attach stdio"))?;
    // Drop every inherited descriptor but those of the handshake.
    let keep = report
        .as_ref()
        .map(|r| r.as_raw_fd())
        .into_iter()
        .chain([maps_done.as_raw_fd()])
        .chain(tap_tx.as_ref().map(|t| t.as_raw_fd()))
        .chain(fuse_server.as_ref().map(|t| t.as_raw_fd()))
        .chain(console.as_ref().map(|t| t.as_raw_fd()))
        .collect::<Vec<_>>();
    sys::close_fds_except(&keep).map_err(|source| SandboxError::Setup {
        step: "close inherited descriptors".into(),
        source,
    })?;
    wait_for_maps(maps_done)?;
    // The TAP device is made before pivot_root: /dev/net/tun is the host's.
    if let (Some(tap), Some(tx)) = (&plan.tap, tap_tx) {
        make_tap(tap, tx)?;
    }

    mounts::prepare_root(&plan.rootfs)?;
    // A FUSE root is mounted first and served from outside: every later
    // step below the rootfs is a request to that server.
    if let (true, Some(server)) = (plan.fuse_root, fuse_server) {
        let fuse = mounts::mount_fuse_root(&plan.rootfs)?;
        super::fdpass::send(&server, fuse.as_fd()).map_err(|source| SandboxError::Setup {
            step: "hand the FUSE mount to its server".into(),
            source,
        })?;
    }
    for op in &plan.mounts {
        mounts::apply(&plan.rootfs, op)?;
    }
    mounts::dev_symlinks(&plan.rootfs)?;
    mounts::pivot(&plan.rootfs)?;
    for p in &plan.masked_paths {
        mounts::mask(p)?;
    }
    for p in &plan.readonly_paths {
        mounts::make_readonly(p)?;
    }
    if plan.readonly_root {
        mounts::readonly_root()?;
    }
    // After pivot_root, so the terminal comes from the container's own
    // devpts: the command sees /dev/pts/0, as under Docker.
    if let Some(sock) = console {
        attach_terminal(sock, plan.process.terminal_size.unwrap_or((24, 80)))?;
    }
    if let Some(name) = &plan.hostname
        && plan.namespaces.contains(CloneFlags::CLONE_NEWUTS)
    {
        sethostname(name).map_err(setup_err("set the hostname"))?;
    }
    if plan.namespaces.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
    }

    if !plan.init {
        return exec_command(&plan.process);
    }
    // The init waits for signals with all of them blocked; block before the
    // fork so none is lost between fork and the init's first wait.
    let all = SigSet::all();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None).map_err(setup_err("block signals"))?;
    match sys::clone_fork(0).map_err(|e| SandboxError::Setup {
        step: "fork the command".into(),
        source: e,
    })? {
        Forked::Child => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(setup_err("unblock signals"))?;
            exec_command(&plan.process)
        }
        Forked::Parent(pid) => {
            // The command's copy of the error pipe closes at its exec; the
            // init's must close now or the parent would wait forever.
            drop(report.take());
            init::run(pid)
        }
    }
}

fn wait_for_maps(maps_done: OwnedFd) -> Result<(), SandboxError> {
    let mut byte = [0u8; 1];
    match std::fs::File::from(maps_done).read(&mut byte) {
        Ok(1) => Ok(()),
        // EOF: the parent failed to write the maps (it says why) or died.
        _ => Err(SandboxError::Setup {
            step: "wait for the id maps".into(),
            source: std::io::Error::other("the parent gave up"),
        }),
    }
}

/// Opens a pseudo-terminal, makes its slave the standard streams (the
/// command takes it as its controlling terminal once it leads a session,
/// see `exec_command`) and sends the master to the supervisor.
pub(super) fn attach_terminal(sock: OwnedFd, (rows, cols): (u16, u16)) -> Result<(), SandboxError> {
    let step = |what: &'static str| {
        move |e: nix::Error| SandboxError::Setup {
            step: format!("{what} (for -t)"),
            source: e.into(),
        }
    };
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).map_err(step("open /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(step("grant the terminal"))?;
    nix::pty::unlockpt(&master).map_err(step("unlock the terminal"))?;
    sys::set_window_size(master.as_fd(), rows, cols).map_err(|source| SandboxError::Setup {
        step: "size the terminal (for -t)".into(),
        source,
    })?;
    let name = nix::pty::ptsname_r(&master).map_err(step("name the terminal"))?;
    let slave = nix::fcntl::open(name.as_str(), flags, nix::sys::stat::Mode::empty())
        .map_err(step("open the terminal"))?;
    nix::unistd::dup2_stdin(&slave)
        .and_then(|()| nix::unistd::dup2_stdout(&slave))
        .and_then(|()| nix::unistd::dup2_stderr(&slave))
        .map_err(step("attach the terminal"))?;
    super::fdpass::send(&sock, master.as_fd()).map_err(|source| SandboxError::Setup {
        step: "hand the terminal to the supervisor".into(),
        source,
    })
}

fn take_stdio(stdio: Stdio) -> nix::Result<()> {
    nix::unistd::dup2_stdin(stdio.stdin.as_fd())?;
    nix::unistd::dup2_stdout(stdio.stdout.as_fd())?;
    nix::unistd::dup2_stderr(stdio.stderr.as_fd())?;
    Ok(())
}

/// Creates and configures the TAP device and hands its descriptor to the
/// supervisor, which runs the userspace network on it.
fn make_tap(tap: &TapPlan, tx: OwnedFd) -> Result<(), SandboxError> {
    let step = |what: &str| {
        let what = format!("{what} {}", tap.name);
        move |source: std::io::Error| SandboxError::Setup { step: what, source }
    };
    let fd = sys::open_tap(&tap.name).map_err(step("create TAP device"))?;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| step("open a socket to configure")(e.into()))?;
    sys::configure_interface(sock.as_fd(), &tap.name, tap.address, tap.netmask(), tap.mtu)
        .map_err(step("configure"))?;
    sys::set_link_up(sock.as_fd(), &tap.name).map_err(step("bring up"))?;
    sys::add_default_route(sock.as_fd(), tap.gateway).map_err(step("add the default route via"))?;
    if let Some((address, prefix, gateway)) = tap.ipv6 {
        configure_ipv6(&tap.name, address, prefix, gateway)?;
    }
    super::fdpass::send(&tx, fd.as_fd()).map_err(step("hand over"))
}

/// Gives the TAP its IPv6 address and default route, where the kernel has
/// IPv6 (a kernel without it, or with it turned off, leaves the container
/// IPv4-only).
fn configure_ipv6(
    name: &str,
    address: std::net::Ipv6Addr,
    prefix: u8,
    gateway: std::net::Ipv6Addr,
) -> Result<(), SandboxError> {
    let step = |what: &str| {
        let what = format!("{what} {name}");
        move |source: std::io::Error| SandboxError::Setup { step: what, source }
    };
    let conf = Path::new("/proc/sys/net/ipv6/conf").join(name);
    let disabled = std::fs::read_to_string(conf.join("disable_ipv6"))
        .map(|v| v.trim() != "0")
        .unwrap_or(true);
    if disabled {
        // No IPv6 in this kernel, or turned off (net.ipv6.conf.default).
        return Ok(());
    }
    // No duplicate address detection: the address is the only one on this
    // private link, and it would stay unusable ("tentative") for a second
    // or more after the container starts. /proc/sys/net is still the
    // host's procfs here, but its net entries are those of the reader's
    // network namespace: the container's.
    std::fs::write(conf.join("accept_dad"), "0").map_err(step("turn off DAD on"))?;
    let sock = socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| step("open an IPv6 socket to configure")(e.into()))?;
    sys::add_ipv6_address(sock.as_fd(), name, address, prefix)
        .map_err(step("give an IPv6 address to"))?;
    sys::add_default_route_v6(sock.as_fd(), name, gateway)
        .map_err(step("add the default IPv6 route via"))
}

fn loopback_up() -> Result<(), SandboxError> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| SandboxError::Setup {
        step: "open a socket for lo".into(),
        source: e.into(),
    })?;
    sys::set_link_up(sock.as_fd(), "lo").map_err(|source| SandboxError::Setup {
        step: "bring up lo".into(),
        source,
    })
}

/// Becomes the container's command: session, working folder, identity,
/// capabilities, then `execve`.
pub(super) fn exec_command(p: &ProcessPlan) -> Result<Infallible, SandboxError> {
    let err = |step: String| {
        move |e: nix::Error| SandboxError::Setup {
            step,
            source: e.into(),
        }
    };
    setsid().map_err(err("start a session".into()))?;
    if p.terminal {
        sys::set_controlling_terminal(std::io::stdin().as_fd()).map_err(|source| {
            SandboxError::Setup {
                step: "take the terminal (for -t)".into(),
                source,
            }
        })?;
    }
    // Docker creates a missing working folder rather than failing.
    let _ = std::fs::create_dir_all(&p.cwd);
    chdir(&p.cwd).map_err(err(format!(
        "chdir to working directory {}",
        p.cwd.display()
    )))?;

    for cap in caps::all().difference(&p.bounding) {
        match caps::drop(None, CapSet::Bounding, *cap) {
            Ok(()) => {}
            // Capabilities newer than this kernel are not in the set anyway.
            Err(_) if !caps::has_cap(None, CapSet::Bounding, *cap).unwrap_or(false) => {}
            Err(e) => return Err(caps_err("bounding", e)),
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(err("keep capabilities".into()))?;
    set_identity(p)?;
    // capset(2) requires effective ⊆ permitted after every call: shrink
    // effective first, then permitted (the spec asks effective ⊆ permitted).
    caps::set(None, CapSet::Effective, &p.effective)
        .map_err(|e| caps_err(set_name(CapSet::Effective), e))?;
    caps::set(None, CapSet::Permitted, &p.permitted)
        .map_err(|e| caps_err(set_name(CapSet::Permitted), e))?;
    caps::set(None, CapSet::Inheritable, &p.inheritable)
        .map_err(|e| caps_err(set_name(CapSet::Inheritable), e))?;
    caps::set(None, CapSet::Ambient, &p.ambient)
        .map_err(|e| caps_err(set_name(CapSet::Ambient), e))?;
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(err("set no_new_privs".into()))?;
    }
    sys::cloexec_from(3).map_err(|source| SandboxError::Setup {
        step: "close descriptors".into(),
        source,
    })?;
    exec(p)
}

fn caps_err(set: &str, e: caps::errors::CapsError) -> SandboxError {
    SandboxError::Setup {
        step: format!("set the {set} capabilities"),
        source: std::io::Error::other(e.to_string()),
    }
}

fn set_identity(p: &ProcessPlan) -> Result<(), SandboxError> {
    let gids: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        Ok(()) => {}
        // In single-id mode setgroups is denied; fine when no groups are asked.
        Err(nix::Error::EPERM) if gids.is_empty() => {}
        Err(e) => {
            return Err(SandboxError::Setup {
                step: "set supplementary groups".into(),
                source: e.into(),
            });
        }
    }
    let (uid, gid) = (Uid::from_raw(p.uid), Gid::from_raw(p.gid));
    setresgid(gid, gid, gid).map_err(|e| SandboxError::Setup {
        step: format!(
            "switch to gid {} (is it mapped in the user namespace?)",
            p.gid
        ),
        source: e.into(),
    })?;
    setresuid(uid, uid, uid).map_err(|e| SandboxError::Setup {
        step: format!(
            "switch to uid {} (is it mapped in the user namespace?)",
            p.uid
        ),
        source: e.into(),
    })
}

/// `execvpe` with the container's own `PATH`: the search must use the
/// container's environment, not burrow's.
fn exec(p: &ProcessPlan) -> Result<Infallible, SandboxError> {
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| SandboxError::Spec("argument contains a NUL byte".into()))
    };
    let args = p
        .args
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = p
        .env
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let cmd = &p.args[0];
    let candidates: Vec<std::path::PathBuf> = if cmd.contains('/') {
        vec![cmd.into()]
    } else {
        let path = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(cmd))
            .collect()
    };
    let mut denied = None;
    for c in &candidates {
        let file = cstr(c.as_os_str().as_bytes())?;
        match execve(&file, &args, &env) {
            Err(nix::Error::EACCES) | Err(nix::Error::ENOEXEC) | Err(nix::Error::EISDIR) => {
                denied = Some(c.clone())
            }
            Err(_) => {}
            Ok(never) => match never {},
        }
    }
    Err(match denied {
        Some(path) => SandboxError::Start {
            code: EXIT_NOT_EXECUTABLE,
            message: format!("exec: \"{}\": permission denied", path.display()),
        },
        None if cmd.contains('/') => SandboxError::Start {
            code: EXIT_NOT_FOUND,
            message: format!("exec: \"{cmd}\": stat {cmd}: no such file or directory"),
        },
        None => SandboxError::Start {
            code: EXIT_NOT_FOUND,
            message: format!("exec: \"{cmd}\": executable file not found in $PATH"),
        },
    })
}
