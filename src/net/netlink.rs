//! The two routing entries the `-p` relay needs in the container's network
//! namespace, written over rtnetlink (no `ip` binary is assumed):
//!
//! ```text
//! ip rule add pref PRIORITY fwmark MARK lookup TABLE
//! ip route add local 0.0.0.0/0 dev lo table TABLE
//! ```
//!
//! Packets carrying `MARK` are delivered locally whatever their destination.
//! The relay's sockets carry it (SO_MARK), and with `tcp_fwmark_accept` so
//! do the container's sockets accepted from them: a server's answers to a
//! relayed client's address (10.0.2.2, or the client's real address) thus
//! come back to the relay socket bound to that address instead of leaving
//! through tap0. Nothing else is marked, so the container's own traffic is
//! routed as before. See `nsock.rs` for the sockets.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

// From the kernel's uapi headers: linux/fib_rules.h (libc lacks them).
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FR_ACT_TO_TBL: u8 = 1;

/// Adds the rule and the route (see the module documentation). Needs
/// CAP_NET_ADMIN over the namespace the calling thread is in.
pub fn route_marked_locally(mark: u32, table: u32, priority: u32) -> io::Result<()> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1,
    // res2, action, then u32 flags.
    let rule = [
        libc::AF_INET as u8,
        0,
        0,
        0,
        0,
        0,
        0,
        FR_ACT_TO_TBL,
        0,
        0,
        0,
        0,
    ];
    let attrs = [
        (FRA_PRIORITY, priority),
        (FRA_FWMARK, mark),
        (FRA_TABLE, table),
    ];
    ask(&sock, libc::RTM_NEWRULE, 1, &rule, &attrs)?;
    // struct rtmsg: family, dst_len (0: the default route), src_len, tos,
    // table (in RTA_TABLE instead), protocol, scope, type, then u32 flags.
    let route = [
        libc::AF_INET as u8,
        0,
        0,
        0,
        0,
        libc::RTPROT_BOOT,
        libc::RT_SCOPE_HOST,
        libc::RTN_LOCAL,
        0,
        0,
        0,
        0,
    ];
    let lo = nix::net::if_::if_nametoindex("lo")?;
    let attrs = [(libc::RTA_OIF, lo), (libc::RTA_TABLE, table)];
    ask(&sock, libc::RTM_NEWROUTE, 2, &route, &attrs)
}

/// Sends one create request and waits for the kernel's acknowledgement;
/// "already there" counts as done.
fn ask(sock: &OwnedFd, kind: u16, seq: u32, body: &[u8], attrs: &[(u16, u32)]) -> io::Result<()> {
    let msg = message(kind, seq, body, attrs);
    send(sock.as_raw_fd(), &msg, MsgFlags::empty())?;
    let mut answer = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty())?;
    match acknowledgement(&answer[..n], seq) {
        Some(0) => Ok(()),
        Some(errno) if -errno == libc::EEXIST => Ok(()),
        Some(errno) => Err(io::Error::from_raw_os_error(-errno)),
        None => Err(io::Error::other("rtnetlink gave no acknowledgement")),
    }
}

/// A netlink message: the 16-byte header, `body` (a multiple of four
/// bytes) and one u32 attribute per entry of `attrs`.
fn message(kind: u16, seq: u32, body: &[u8], attrs: &[(u16, u32)]) -> Vec<u8> {
    let len = 16 + body.len() + attrs.len() * 8;
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(body);
    for &(kind, value) in attrs {
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&value.to_ne_bytes());
    }
    msg
}

/// The error code (0 or a negative errno) of an NLMSG_ERROR answer to
/// request `seq`.
fn acknowledgement(answer: &[u8], seq: u32) -> Option<i32> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(answer.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?));
    if i32::from(u16_at(4)?) != libc::NLMSG_ERROR || u32_at(8)? != seq {
        return None;
    }
    Some(u32_at(16)? as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_the_kernel_reads_them() {
        let msg = message(libc::RTM_NEWRULE, 7, &[1; 12], &[(FRA_FWMARK, 0x42)]);
        assert_eq!(msg.len(), 36);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 36);
        assert_eq!(
            u16::from_ne_bytes(msg[4..6].try_into().unwrap()),
            libc::RTM_NEWRULE
        );
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
        assert_eq!(&msg[16..28], &[1; 12]);
        assert_eq!(u16::from_ne_bytes(msg[28..30].try_into().unwrap()), 8);
        assert_eq!(
            u16::from_ne_bytes(msg[30..32].try_into().unwrap()),
            FRA_FWMARK
        );
        assert_eq!(u32::from_ne_bytes(msg[32..36].try_into().unwrap()), 0x42);
    }

    #[test]
    fn acknowledgements_are_matched_to_their_request() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[8..12].copy_from_slice(&3u32.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(acknowledgement(&ack, 3), Some(-libc::EPERM));
        assert_eq!(acknowledgement(&ack, 4), None);
        assert_eq!(acknowledgement(&ack[..10], 3), None);
    }
}
