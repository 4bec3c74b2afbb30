//! Frames the stack looks at or writes itself, outside smoltcp: UDP (which
//! is NATed by hand) and ICMP echo of the gateway. Checked views only; a
//! frame that does not parse is `None`, and the caller drops it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
};

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const TTL: u8 = 64;

/// What an IPv4 frame from the container carries, as far as the stack cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// Not IPv4 (ARP goes to smoltcp; others are dropped by the caller).
    NotIpv4 {
        ethertype: EthernetProtocol,
    },
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        syn_only: bool,
    },
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Range<usize>,
    },
    EchoRequest {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        data: Range<usize>,
    },
    Other,
}

/// The source MAC and what the frame holds; `None` if it is malformed.
pub fn inspect(frame: &[u8]) -> Option<(EthernetAddress, Inspected)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let src_mac = eth.src_addr();
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Some((
            src_mac,
            Inspected::NotIpv4 {
                ethertype: eth.ethertype(),
            },
        ));
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
        // Fragments are not reassembled; the container's MTU is ours.
        return Some((src_mac, Inspected::Other));
    }
    let (src_ip, dst_ip) = (ip.src_addr(), ip.dst_addr());
    let ip_start = ETH_HEADER + usize::from(ip.header_len());
    let inspected = match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            Inspected::Tcp {
                src: SocketAddrV4::new(src_ip, tcp.src_port()),
                dst: SocketAddrV4::new(dst_ip, tcp.dst_port()),
                syn_only: tcp.syn() && !tcp.ack() && !tcp.rst(),
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            let start = ip_start + UDP_HEADER;
            Inspected::Udp {
                src: SocketAddrV4::new(src_ip, udp.src_port()),
                dst: SocketAddrV4::new(dst_ip, udp.dst_port()),
                payload: start..start + udp.payload().len(),
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::ignored()).ok()? {
                Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                } => {
                    let start = ip_start + 8;
                    Inspected::EchoRequest {
                        src: src_ip,
                        dst: dst_ip,
                        ident,
                        seq: seq_no,
                        data: start..start + data.len(),
                    }
                }
                _ => Inspected::Other,
            }
        }
        _ => Inspected::Other,
    };
    Some((src_mac, inspected))
}

/// Length of a UDP frame carrying `payload_len` bytes.
pub fn udp_frame_len(payload_len: usize) -> usize {
    ETH_HEADER + IPV4_HEADER + UDP_HEADER + payload_len
}

/// Writes a UDP datagram from `src` to `dst` into `buf` (exactly
/// [`udp_frame_len`] bytes).
pub fn emit_udp(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) {
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: UDP_HEADER + payload.len(),
        hop_limit: TTL,
    };
    let ip_buf = emit_headers(buf, macs, &ip);
    let mut packet = UdpPacket::new_unchecked(ip_buf);
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut packet,
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |out| out.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
}

/// Length of an ICMP echo frame carrying `data_len` bytes.
pub fn echo_frame_len(data_len: usize) -> usize {
    ETH_HEADER + IPV4_HEADER + 8 + data_len
}

/// Writes an echo reply from `src` to `dst` into `buf`.
pub fn emit_echo_reply(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    ident: u16,
    seq: u16,
    data: &[u8],
) {
    let icmp = Icmpv4Repr::EchoReply {
        ident,
        seq_no: seq,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: TTL,
    };
    let ip_buf = emit_headers(buf, macs, &ip);
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(ip_buf),
        &ChecksumCapabilities::default(),
    );
}

/// Writes the Ethernet and IPv4 headers; returns the IP payload.
fn emit_headers<'a>(
    buf: &'a mut [u8],
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    ip: &Ipv4Repr,
) -> &'a mut [u8] {
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut packet = Ipv4Packet::new_unchecked(&mut buf[ETH_HEADER..]);
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    &mut buf[ETH_HEADER + IPV4_HEADER..]
}
