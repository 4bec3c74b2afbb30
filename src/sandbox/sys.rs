//! The raw system calls the sandbox needs that `nix` does not wrap safely.
//!
//! Every `unsafe` block of the crate's sandbox lives here, one small function
//! each, with the reason it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::unistd::Pid;

/// What `clone_fork` returned on one side of the fork.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// `clone(2)` with namespace flags and fork semantics: no new stack, the child
/// continues from here on a copy-on-write copy of the caller's memory, and the
/// parent gets SIGCHLD when it exits.
///
/// Unlike `unshare`, this puts the child *inside* a new pid namespace as its
/// pid 1, and creates every namespace owned by the new user namespace at once.
///
/// # Safety contract (checked by the callers' design, not the compiler)
/// The caller must be single-threaded: the child gets a copy of only the
/// calling thread, so a lock held by another thread (the allocator's, stdio's)
/// would stay locked forever in the child. burrow's CLI and supervisor never
/// start threads before spawning a container.
pub fn clone_fork(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: with a null stack pointer clone behaves as fork (the child runs
    // on a copy of the parent's stack); no pointers are passed for the
    // parent/child tid or tls arguments because no CLONE_*TID/SETTLS flag is
    // set. Single-threadedness is the documented contract above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Marks every descriptor from `first` upward close-on-exec, so the container's
/// command inherits only its stdio (and whatever the caller deliberately
/// placed below `first`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors; it touches no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Brings the network interface `name` up (`SIOCSIFFLAGS` with `IFF_UP`).
/// Used for `lo` in a fresh network namespace, which starts down.
pub fn set_link_up(sock: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write only the ifreq we pass,
    // which lives for the whole call; ifru_flags is the union member these
    // requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) == -1 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `_exit(2)`: leaves a forked child without running the parent's atexit
/// handlers or flushing stdio buffers it copied from the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Restores default dispositions for the signals a Rust program ignores at
/// startup (SIGPIPE), which `execve` would otherwise pass on to the
/// container's command, and clears the blocked mask the supervisor uses.
pub fn reset_signals() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: installing SIG_DFL runs no handler code, so none of signal(2)'s
    // async-signal-safety concerns apply.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Closes every descriptor from 3 upward except those in `keep`, so that a
/// process that never `exec`s (the container's init) holds no copy of the
/// supervisor's pipes, which would keep them from ever reporting EOF.
pub fn close_fds_except(keep: &[i32]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd >= 3)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > from {
            // SAFETY: close_range only closes descriptors; no memory is
            // touched, and no descriptor in `keep` is in [from, fd - 1].
            let ret = unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
            if ret == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        from = fd.saturating_add(1);
    }
    Ok(())
}

/// Sets SIGPIPE to its default action (die quietly, as a pipeline stage
/// should when `head` stops reading) or to ignored (a supervisor must
/// survive its terminal going away and keep logging).
pub fn set_sigpipe(default: bool) {
    use nix::sys::signal::{SigHandler, Signal};
    let handler = if default {
        SigHandler::SigDfl
    } else {
        SigHandler::SigIgn
    };
    // SAFETY: SIG_DFL and SIG_IGN run no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, handler) };
}

/// Restores the default action of `signals`: a signal a shell set to ignored
/// (as it does for SIGINT in background jobs) is discarded by the kernel,
/// never queued, so a supervisor that must forward it has to undo that.
pub fn default_action(signals: &[nix::sys::signal::Signal]) {
    use nix::sys::signal::SigHandler;
    for s in signals {
        // SAFETY: SIG_DFL runs no handler code.
        let _ = unsafe { nix::sys::signal::signal(*s, SigHandler::SigDfl) };
    }
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_v4(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and the
    // kernel reads a sockaddr of family AF_INET as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Opens `/dev/net/tun` and creates the TAP device `name` in the calling
/// process's network namespace: Ethernet frames, no packet-info header, each
/// frame behind a 10-byte virtio-net header, with checksum offload.
///
/// The header and the offload go together: with them the container's kernel
/// hands its TCP segments over without computing their checksums (the
/// header says "checksum not done"), which was a seventh of the CPU time of
/// an upload; the reader of the descriptor must expect the header.
pub fn open_tap(name: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // Checksum offload only, no TSO: at MTU 65520 a segment is already as
    // large as a GSO packet may be.
    // SAFETY: TUNSETOFFLOAD takes an integer argument and touches no memory.
    if unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::TUN_F_CSUM as libc::c_ulong,
        )
    } == -1
    {
        return Err(io::Error::last_os_error());
    }
    // Persistent: closing the last descriptor then only detaches, instead of
    // unregistering the device synchronously (about 13 ms of RCU waits at
    // every container exit). The device lives in the container's network
    // namespace, whose teardown deletes it in the background.
    // SAFETY: TUNSETPERSIST takes an integer argument and touches no memory.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
    // SAFETY: `fd` was just released by the File that owned it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Gives interface `name` an IPv4 address, netmask and MTU.
pub fn configure_interface(
    sock: BorrowedFd<'_>,
    name: &str,
    addr: std::net::Ipv4Addr,
    netmask: std::net::Ipv4Addr,
    mtu: u32,
) -> io::Result<()> {
    let call = |request: libc::c_ulong, req: &libc::ifreq| {
        // SAFETY: these SIOCSIF* requests read only the ifreq we pass.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, req) } == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
    call(libc::SIOCSIFADDR, &req)?;
    req.ifr_ifru.ifru_netmask = sockaddr_v4(netmask);
    call(libc::SIOCSIFNETMASK, &req)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    call(libc::SIOCSIFMTU, &req)
}

/// Adds the default IPv4 route through `gateway`.
pub fn add_default_route(sock: BorrowedFd<'_>, gateway: std::net::Ipv4Addr) -> io::Result<()> {
    // SAFETY: rtentry is plain old data; all-zeroes is valid (null rt_dev:
    // the kernel picks the interface from the gateway's subnet).
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_v4(std::net::Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_v4(std::net::Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_v4(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads the rtentry we pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives interface `name` the IPv6 address `addr/prefix`. `sock` must be
/// an AF_INET6 socket.
pub fn add_ipv6_address(
    sock: BorrowedFd<'_>,
    name: &str,
    addr: std::net::Ipv6Addr,
    prefix: u8,
) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(name)?;
    let req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(prefix),
        ifr6_ifindex: index as libc::c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads the in6_ifreq we
    // pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's `struct in6_rtmsg` (linux/ipv6_route.h); libc's has
/// private fields.
#[repr(C)]
struct In6Rtmsg {
    dst: [u8; 16],
    src: [u8; 16],
    gateway: [u8; 16],
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// Adds the default IPv6 route through `gateway` on interface `name`.
/// `sock` must be an AF_INET6 socket.
pub fn add_default_route_v6(
    sock: BorrowedFd<'_>,
    name: &str,
    gateway: std::net::Ipv6Addr,
) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(name)?;
    let rt = In6Rtmsg {
        dst: [0; 16],
        src: [0; 16],
        gateway: gateway.octets(),
        kind: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1,
        info: 0,
        flags: libc::RTF_UP as u32 | libc::RTF_GATEWAY as u32,
        ifindex: index as libc::c_int,
    };
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads the in6_rtmsg we pass,
    // which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `ps` show `title` for this process: the kernel reads a process's
/// command line from the argv strings it placed on the process's stack
/// (`arg_start..arg_end` in `/proc/self/stat`), so they are overwritten in
/// place, and the short name is set too. Used by the container's init, which
/// would otherwise show burrow's own command line, host paths included.
pub fn set_process_title(title: &str) {
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(title).unwrap_or_default());
    let Some((start, end)) = argv_area() else {
        return;
    };
    let len = end.saturating_sub(start);
    if len < 2 {
        return;
    }
    let n = title.len().min(len - 1);
    // SAFETY: [start, end) is this process's argv area, as the kernel
    // reports it: writable memory on our own stack that lives as long as the
    // process. Nothing reads argv after this point (the arguments were
    // parsed long before the container's init runs), and the writes stay
    // inside the area.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, len);
        std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, n);
    }
}

/// `arg_start` and `arg_end` from `/proc/self/stat` (fields 48 and 49).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    // Field 3 is the first after the name; 48 is the 46th from there.
    let start = fields.nth(45)?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (start < end).then_some((start, end))
}

/// Makes the terminal open on `fd` the controlling terminal of the calling
/// process, which must lead a session that has none (`TIOCSCTTY`).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value (0: never steal a terminal
    // that another session controls); no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal's size in rows and columns (`TIOCGWINSZ`); `None` when `fd`
/// is not a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points at a live, writable `winsize` for the whole call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (ret == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets a terminal's size (`TIOCSWINSZ`); the kernel then sends SIGWINCH to
/// its foreground process group.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which
    // points at a live `winsize` for the whole call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
