//! Sockets made inside the container's network namespace, for the `-p`
//! relay (`relay.rs`).
//!
//! A socket belongs to the namespace it was created in, whoever uses it
//! later. The supervisor cannot enter the container's namespaces (it is
//! multi-threaded, and joining a user namespace needs a single thread), so
//! a small child of it does (see `sandbox::spawn_in_netns`): the *maker*.
//! Once, it sets up the routing the relay needs (`netlink.rs`) and turns on
//! `net.ipv4.tcp_fwmark_accept` in that namespace; then it answers each
//! request with a batch of fresh TCP sockets, sent over a Unix socket pair
//! (SCM_RIGHTS), each already given what only a privileged process may set:
//! `IP_TRANSPARENT` (bind to the client's address, which is not the
//! container's) and `SO_MARK` (so answers to it are delivered locally).
//! The net thread keeps a small stock ([`Supply`]) so that a connection
//! never waits for the maker; when the stock is empty, or the maker could
//! not start, a connection takes the userspace path instead.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, setsockopt, socket, sockopt,
};

use super::netlink;

/// The mark on relay sockets ("bu"), and the routing table and rule
/// priority it selects; all private to the container's namespace.
pub const MARK: u32 = 0x6275;
const TABLE: u32 = 0x6275;
const RULE_PRIORITY: u32 = 100;
/// Sockets per request, and the stock below which the net thread asks.
const BATCH: usize = 64;
const LOW: usize = 32;

/// The maker's side: sets up the namespace, reports, then serves requests
/// on `chan` until the net thread closes it. Returns the exit code.
pub fn serve(chan: OwnedFd) -> i32 {
    let report = match prepare() {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("cannot prepare the container's network for the -p relay: {e}"),
    };
    if sendmsg::<()>(
        chan.as_raw_fd(),
        &[IoSlice::new(report.as_bytes())],
        &[],
        MsgFlags::empty(),
        None,
    )
    .is_err()
        || report != "ok"
    {
        return 1;
    }
    let mut request = [0u8; 1];
    loop {
        let n = {
            let mut iov = [IoSliceMut::new(&mut request)];
            match recvmsg::<()>(chan.as_raw_fd(), &mut iov, None, MsgFlags::empty()) {
                Ok(msg) => msg.bytes,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 1,
            }
        };
        if n == 0 {
            return 0; // the net thread is gone
        }
        let count = usize::from(request[0]).clamp(1, BATCH);
        let made: Vec<OwnedFd> = (0..count).filter_map(|_| relay_socket().ok()).collect();
        let fds: Vec<RawFd> = made.iter().map(|fd| fd.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        if sendmsg::<()>(
            chan.as_raw_fd(),
            &[IoSlice::new(b"s")],
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .is_err()
        {
            return 1;
        }
    }
}

fn prepare() -> io::Result<()> {
    // Per namespace: /proc/sys/net shows the namespace of whoever opens it.
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/net/ipv4/tcp_fwmark_accept")
        .and_then(|mut f| f.write_all(b"1"))
        .map_err(|e| io::Error::new(e.kind(), format!("net.ipv4.tcp_fwmark_accept: {e}")))?;
    netlink::route_marked_locally(MARK, TABLE, RULE_PRIORITY)
        .map_err(|e| io::Error::new(e.kind(), format!("policy routing: {e}")))?;
    // Prove the options are allowed here before promising sockets.
    relay_socket().map(drop)
}

/// A non-blocking IPv4 TCP socket that may bind to any address and whose
/// packets carry [`MARK`].
fn relay_socket() -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::IpTransparent, &true)?;
    setsockopt(&fd, sockopt::Mark, &MARK)?;
    // A client port may come back while the container still holds the last
    // connection from it in TIME_WAIT.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    // Relayed bytes are sent as they come, as the client sent them.
    // (ACKs keep the kernel's default on purpose: delayed from the start
    // with TCP_QUICKACK off, they would save two segments per short
    // connection, but a server that keeps a connection open and writes an
    // answer in two pieces without TCP_NODELAY (headers, then body) would
    // hold the second for the first one's ACK: 42 ms per answer, measured.)
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    Ok(fd)
}

/// The net thread's side: a stock of sockets from the maker.
pub struct Supply {
    chan: OwnedFd,
    state: State,
    stock: Vec<OwnedFd>,
    asked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ready,
    Failed(String),
}

/// Waits up to `timeout` for the maker's report on `chan`: `Ok` once it
/// said its namespace is ready, else why not (its own words, or that it
/// exited or kept silent). The supervisor waits for it before the
/// container counts as started, so a `run -d` can tell the user when
/// published ports must take the slower userspace path.
pub fn await_report(chan: &OwnedFd, timeout: std::time::Duration) -> Result<(), String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => {
                return Err(format!(
                    "the -p relay's socket maker did not answer within {} ms",
                    timeout.as_millis()
                ));
            }
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("the -p relay's socket maker: {e}")),
        }
    }
    let mut buf = [0u8; 512];
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(chan.as_raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT) {
            Ok(msg) if msg.bytes == 0 => {
                return Err("the -p relay's socket maker exited".into());
            }
            Ok(msg) => {
                let n = msg.bytes;
                return match &buf[..n] {
                    b"ok" => Ok(()),
                    why => Err(String::from_utf8_lossy(why).into_owned()),
                };
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("the -p relay's socket maker: {e}")),
        }
    }
}

impl Supply {
    /// Takes the net thread's end of the channel of a maker that reported
    /// ready ([`await_report`]); non-blocking is set here, and the first
    /// batch is asked for at once.
    pub fn new(chan: OwnedFd) -> io::Result<Supply> {
        let flags = nix::fcntl::fcntl(&chan, nix::fcntl::FcntlArg::F_GETFL)?;
        nix::fcntl::fcntl(
            &chan,
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        )?;
        let mut supply = Supply {
            chan,
            state: State::Ready,
            stock: Vec::new(),
            asked: false,
        };
        supply.ask();
        Ok(supply)
    }

    pub fn fd(&self) -> RawFd {
        self.chan.as_raw_fd()
    }

    /// Why the relay is not in use, once the maker said so (or died).
    pub fn failure(&self) -> Option<&str> {
        match &self.state {
            State::Failed(why) => Some(why),
            _ => None,
        }
    }

    /// Reads what the maker sent: batches of sockets.
    pub fn receive(&mut self) {
        loop {
            let mut buf = [0u8; 512];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; BATCH]);
            let (bytes, fds) = match recvmsg::<()>(
                self.chan.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for cmsg in msg.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmRights(got) = cmsg {
                            fds.extend(got.into_iter().map(owned));
                        }
                    }
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.fail(format!("the -p relay's socket maker: {e}"));
                    return;
                }
            };
            if bytes == 0 {
                self.fail("the -p relay's socket maker exited".into());
                return;
            }
            match self.state {
                State::Ready => {
                    self.asked = false;
                    self.stock.extend(fds);
                }
                State::Failed(_) => {}
            }
        }
    }

    fn fail(&mut self, why: String) {
        if !matches!(self.state, State::Failed(_)) {
            self.state = State::Failed(why);
        }
        self.stock.clear();
    }

    /// A socket for one connection, if one is in stock; asks for more when
    /// the stock runs low.
    pub fn take(&mut self) -> Option<OwnedFd> {
        let socket = self.stock.pop();
        if self.stock.len() < LOW {
            self.ask();
        }
        socket
    }

    fn ask(&mut self) {
        if self.asked || self.state != State::Ready {
            return;
        }
        let request = [BATCH as u8];
        match sendmsg::<()>(
            self.chan.as_fd().as_raw_fd(),
            &[IoSlice::new(&request)],
            &[],
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(_) => self.asked = true,
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => self.fail(format!("the -p relay's socket maker: {e}")),
        }
    }
}

#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel just installed `fd` in this process for us through
    // SCM_RIGHTS (with MSG_CMSG_CLOEXEC); nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A socket pair like the one between the net thread and the maker.
    fn pair() -> (OwnedFd, OwnedFd) {
        nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn say(chan: &OwnedFd, words: &[u8]) {
        sendmsg::<()>(
            chan.as_raw_fd(),
            &[IoSlice::new(words)],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn a_maker_that_says_ok_is_ready() {
        let (ours, theirs) = pair();
        say(&theirs, b"ok");
        assert_eq!(await_report(&ours, Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn a_maker_that_failed_is_quoted() {
        let (ours, theirs) = pair();
        say(&theirs, b"cannot prepare: policy routing: EPERM");
        assert_eq!(
            await_report(&ours, Duration::from_secs(1)),
            Err("cannot prepare: policy routing: EPERM".into())
        );
    }

    #[test]
    fn a_maker_that_exits_or_keeps_silent_is_not_waited_for() {
        let (ours, theirs) = pair();
        drop(theirs);
        assert_eq!(
            await_report(&ours, Duration::from_secs(1)),
            Err("the -p relay's socket maker exited".into())
        );
        let (ours, _theirs) = pair();
        let why = await_report(&ours, Duration::from_millis(50)).unwrap_err();
        assert!(why.contains("did not answer within 50 ms"), "{why}");
    }

    #[test]
    fn a_new_supply_asks_for_its_first_batch_at_once() {
        let (ours, theirs) = pair();
        let _supply = Supply::new(ours).unwrap();
        let mut request = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut request)];
        let got = recvmsg::<()>(theirs.as_raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT)
            .unwrap()
            .bytes;
        assert_eq!(&request[..got], &[BATCH as u8]);
    }
}
