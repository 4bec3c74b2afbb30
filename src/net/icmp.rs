//! Ping beyond the gateway: echo requests from the container leave through
//! the host's unprivileged ICMP echo sockets, and their replies come back
//! with the container's identifier and sequence number.
//!
//! # Theory of operation
//!
//! An unprivileged process cannot send raw ICMP, but Linux gives it "ping
//! sockets" (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`) when its group is
//! in `net.ipv4.ping_group_range`. Such a socket sends only echo requests:
//! the kernel fills in the checksum and replaces the identifier with the
//! socket's own (its "port"), and it receives only the replies to that
//! identifier. So one socket stands for one identifier of the container
//! (one `ping` process inside): requests of that identifier go out through
//! it to whatever address they name, and each reply is handed back with the
//! container's identifier restored and the replying address as its source.
//!
//! Where the sysctl leaves the user out, `socket()` fails with EACCES; the
//! caller then answers the container with "administratively prohibited", as
//! a firewall would, and `burrow info` says how to allow it ([`probe`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, recvfrom, sendto, socket,
};

/// Echo sockets open at once (one per `ping` running in the container).
const MAX_SOCKETS: usize = 64;
/// A socket whose `ping` sent nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// ICMP and ICMPv6 echo headers: type, code, checksum, identifier, sequence.
const HEADER: usize = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// What became of an echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The host does not let this user open echo sockets.
    Denied,
    /// Dropped (too many sockets, a send error); the container's ping
    /// times out as on a lossy path.
    Dropped,
}

/// An echo reply for the container.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    pub from: IpAddr,
    pub ident: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

struct EchoSocket {
    fd: OwnedFd,
    key: Key,
    last_active: Instant,
}

/// The container's identifier, and whether it pings over IPv6.
type Key = (u16, bool);

/// The echo sockets of one container, watched by the event loop's poll
/// under tokens `base..base + MAX_SOCKETS`.
pub struct Pinger {
    base: usize,
    slots: Vec<Option<EchoSocket>>,
    by_key: HashMap<Key, usize>,
    buf: Vec<u8>,
}

impl Pinger {
    pub fn new(base: usize) -> Pinger {
        Pinger {
            base,
            slots: (0..MAX_SOCKETS).map(|_| None).collect(),
            by_key: HashMap::new(),
            buf: vec![0; 65536],
        }
    }

    /// The socket slot a poll token stands for, if it is one of ours.
    pub fn slot(&self, token: Token) -> Option<usize> {
        token
            .0
            .checked_sub(self.base)
            .filter(|&slot| slot < MAX_SOCKETS)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Sends the container's echo request `ident`/`seq` with `data` to `dst`.
    pub fn send(
        &mut self,
        registry: &Registry,
        dst: IpAddr,
        ident: u16,
        seq: u16,
        data: &[u8],
    ) -> Outcome {
        let key = (ident, dst.is_ipv6());
        let slot = match self.by_key.get(&key) {
            Some(&slot) => slot,
            None => match self.open(registry, key) {
                Ok(Some(slot)) => slot,
                Ok(None) => return Outcome::Dropped,
                Err(Errno::EACCES | Errno::EPERM) => return Outcome::Denied,
                Err(_) => return Outcome::Dropped,
            },
        };
        let Some(echo) = self.slots[slot].as_mut() else {
            return Outcome::Dropped;
        };
        echo.last_active = Instant::now();
        let len = HEADER + data.len();
        if len > self.buf.len() {
            return Outcome::Dropped;
        }
        let request = if dst.is_ipv6() {
            ECHO_REQUEST_V6
        } else {
            ECHO_REQUEST_V4
        };
        // Checksum and identifier are the kernel's to fill in.
        self.buf[..HEADER].copy_from_slice(&[request, 0, 0, 0, 0, 0, 0, 0]);
        self.buf[6..8].copy_from_slice(&seq.to_be_bytes());
        self.buf[HEADER..len].copy_from_slice(data);
        let fd = echo.fd.as_raw_fd();
        let sent = match dst {
            IpAddr::V4(ip) => sendto(
                fd,
                &self.buf[..len],
                &SockaddrIn::from(SocketAddrV4::new(ip, 0)),
                MsgFlags::MSG_DONTWAIT,
            ),
            IpAddr::V6(ip) => sendto(
                fd,
                &self.buf[..len],
                &SockaddrIn6::from(SocketAddrV6::new(ip, 0, 0, 0)),
                MsgFlags::MSG_DONTWAIT,
            ),
        };
        match sent {
            Ok(_) => Outcome::Sent,
            Err(_) => Outcome::Dropped,
        }
    }

    /// Opens and watches the socket for `key`; `None` when all are in use.
    fn open(&mut self, registry: &Registry, key: Key) -> Result<Option<usize>, Errno> {
        let Some(slot) = self.slots.iter().position(Option::is_none) else {
            return Ok(None);
        };
        let fd = open_echo_socket(key.1)?;
        registry
            .register(
                &mut SourceFd(&fd.as_raw_fd()),
                Token(self.base + slot),
                Interest::READABLE,
            )
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        self.slots[slot] = Some(EchoSocket {
            fd,
            key,
            last_active: Instant::now(),
        });
        self.by_key.insert(key, slot);
        Ok(Some(slot))
    }

    /// Reads every reply waiting on `slot` and hands each to `deliver`.
    pub fn receive(&mut self, slot: usize, mut deliver: impl FnMut(Reply<'_>)) {
        let Some(Some(echo)) = self.slots.get(slot) else {
            return;
        };
        let (ident, v6) = echo.key;
        let fd = echo.fd.as_raw_fd();
        loop {
            let (n, from) = match recvfrom::<SockaddrStorage>(fd, &mut self.buf) {
                Ok(got) => got,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            let from = match from {
                Some(addr) if v6 => addr.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())),
                Some(addr) => addr.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())),
                None => None,
            };
            let reply = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
            match (from, &self.buf[..n]) {
                (Some(from), [kind, 0, _, _, _, _, s0, s1, data @ ..]) if *kind == reply => {
                    deliver(Reply {
                        from,
                        ident,
                        seq: u16::from_be_bytes([*s0, *s1]),
                        data,
                    })
                }
                _ => {}
            }
        }
    }

    /// Closes the sockets of `ping`s that have gone quiet.
    pub fn sweep(&mut self, registry: &Registry) {
        for slot in 0..self.slots.len() {
            let idle = self.slots[slot]
                .as_ref()
                .is_some_and(|echo| echo.last_active.elapsed() > IDLE);
            if idle && let Some(echo) = self.slots[slot].take() {
                let _ = registry.deregister(&mut SourceFd(&echo.fd.as_raw_fd()));
                self.by_key.remove(&echo.key);
            }
        }
    }
}

fn open_echo_socket(v6: bool) -> Result<OwnedFd, Errno> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )
}

/// Whether this user may open echo sockets here, for `burrow info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingSupport {
    pub available: bool,
    /// One line: what was found and, when unavailable, the fix.
    pub detail: String,
}

/// Tries to open an echo socket, as the network would.
pub fn probe() -> PingSupport {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let gid = nix::unistd::getegid();
    match open_echo_socket(false) {
        Ok(_) => PingSupport {
            available: true,
            detail: format!(
                "containers can ping any address (net.ipv4.ping_group_range = {range} includes gid {gid})"
            ),
        },
        Err(err) => PingSupport {
            available: false,
            detail: format!(
                "containers can ping only the gateway 10.0.2.2: ICMP echo sockets are refused ({}; net.ipv4.ping_group_range = {range} leaves out gid {gid}); to allow them, as root: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
                io::Error::from(err)
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Runs only where the sysctl lets this user ping: a real echo to the
    /// host's own loopback (the container may not ask for that one, but the
    /// socket mechanics are the same).
    #[test]
    fn an_echo_socket_round_trip_keeps_ident_and_sequence() {
        if !probe().available {
            eprintln!("skipped: ICMP echo sockets are not allowed here");
            return;
        }
        let mut poll = mio::Poll::new().unwrap();
        let mut pinger = Pinger::new(100);
        let dst = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            pinger.send(poll.registry(), dst, 0x1234, 7, b"hello"),
            Outcome::Sent
        );
        let mut events = mio::Events::with_capacity(4);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.is_empty() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for event in events.iter() {
                let slot = pinger.slot(event.token()).expect("our token");
                pinger.receive(slot, |r| {
                    got.push((r.from, r.ident, r.seq, r.data.to_vec()))
                });
            }
        }
        assert_eq!(got, vec![(dst, 0x1234, 7, b"hello".to_vec())]);
    }
}
