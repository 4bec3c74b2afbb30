//! Frames the stack looks at or writes itself, outside smoltcp, over IPv4
//! and IPv6: UDP (which is NATed by hand) and ICMP echo. Checked views only; a
//! frame that does not parse is `None`, and the caller drops it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, Icmpv6DstUnreachable,
    Icmpv6Message, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, UdpRepr,
};

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
/// ICMP and ICMPv6 echo headers are the same size.
const ECHO_HEADER: usize = 8;
const TTL: u8 = 64;

/// What a frame from the container carries, as far as the stack cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// Neither IPv4 nor IPv6 (ARP goes to smoltcp; others are dropped by
    /// the caller).
    NotIp {
        ethertype: EthernetProtocol,
    },
    /// IPv6 neighbour discovery, which smoltcp answers.
    Ndp {
        src: Ipv6Addr,
    },
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        syn_only: bool,
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Range<usize>,
    },
    EchoRequest {
        src: IpAddr,
        dst: IpAddr,
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
    let inspected = match eth.ethertype() {
        EthernetProtocol::Ipv4 => inspect_v4(eth.payload())?,
        EthernetProtocol::Ipv6 => inspect_v6(eth.payload())?,
        ethertype => Inspected::NotIp { ethertype },
    };
    Some((src_mac, inspected))
}

fn inspect_v4(packet: &[u8]) -> Option<Inspected> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
        // Fragments are not reassembled; the container's MTU is ours.
        return Some(Inspected::Other);
    }
    let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    let start = ETH_HEADER + usize::from(ip.header_len());
    Some(match ip.next_header() {
        IpProtocol::Tcp => inspect_tcp(ip.payload(), src, dst)?,
        IpProtocol::Udp => inspect_udp(ip.payload(), start, src, dst)?,
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::ignored()).ok()? {
                Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                } => echo_request(src, dst, ident, seq_no, start, data.len()),
                _ => Inspected::Other,
            }
        }
        _ => Inspected::Other,
    })
}

fn inspect_v6(packet: &[u8]) -> Option<Inspected> {
    let ip = Ipv6Packet::new_checked(packet).ok()?;
    let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
    let start = ETH_HEADER + IPV6_HEADER;
    Some(match ip.next_header() {
        IpProtocol::Tcp => inspect_tcp(ip.payload(), src, dst)?,
        IpProtocol::Udp => inspect_udp(ip.payload(), start, src, dst)?,
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
            match icmp.msg_type() {
                Icmpv6Message::EchoRequest => echo_request(
                    src,
                    dst,
                    icmp.echo_ident(),
                    icmp.echo_seq_no(),
                    start,
                    icmp.payload().len(),
                ),
                Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert => {
                    Inspected::Ndp { src: ip.src_addr() }
                }
                _ => Inspected::Other,
            }
        }
        _ => Inspected::Other,
    })
}

fn inspect_tcp(segment: &[u8], src: IpAddr, dst: IpAddr) -> Option<Inspected> {
    let tcp = TcpPacket::new_checked(segment).ok()?;
    Some(Inspected::Tcp {
        src: SocketAddr::new(src, tcp.src_port()),
        dst: SocketAddr::new(dst, tcp.dst_port()),
        syn_only: tcp.syn() && !tcp.ack() && !tcp.rst(),
    })
}

/// A UDP datagram whose header starts at `start` in the frame.
fn inspect_udp(datagram: &[u8], start: usize, src: IpAddr, dst: IpAddr) -> Option<Inspected> {
    let udp = UdpPacket::new_checked(datagram).ok()?;
    let start = start + UDP_HEADER;
    Some(Inspected::Udp {
        src: SocketAddr::new(src, udp.src_port()),
        dst: SocketAddr::new(dst, udp.dst_port()),
        payload: start..start + udp.payload().len(),
    })
}

/// An echo request whose ICMP header starts at `start` in the frame.
fn echo_request(
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    seq: u16,
    start: usize,
    len: usize,
) -> Inspected {
    let start = start + ECHO_HEADER;
    Inspected::EchoRequest {
        src,
        dst,
        ident,
        seq,
        data: start..start + len,
    }
}

fn ip_header_len(ip: IpAddr) -> usize {
    if ip.is_ipv6() {
        IPV6_HEADER
    } else {
        IPV4_HEADER
    }
}

/// Length of a UDP frame from `src` carrying `payload_len` bytes.
pub fn udp_frame_len(src: IpAddr, payload_len: usize) -> usize {
    ETH_HEADER + ip_header_len(src) + UDP_HEADER + payload_len
}

/// Writes a UDP datagram from `src` to `dst` (one family) into `buf`
/// (exactly [`udp_frame_len`] bytes).
pub fn emit_udp(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) {
    let ip_buf = emit_headers(
        buf,
        macs,
        (src.ip(), dst.ip()),
        IpProtocol::Udp,
        UDP_HEADER + payload.len(),
    );
    let mut packet = UdpPacket::new_unchecked(ip_buf);
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut packet,
        &IpAddress::from(src.ip()),
        &IpAddress::from(dst.ip()),
        payload.len(),
        |out| out.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
}

/// Length of an ICMP echo frame from `src` carrying `data_len` bytes.
pub fn echo_frame_len(src: IpAddr, data_len: usize) -> usize {
    ETH_HEADER + ip_header_len(src) + ECHO_HEADER + data_len
}

/// Writes an echo reply from `src` to `dst` (one family) into `buf`.
pub fn emit_echo_reply(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    (src, dst): (IpAddr, IpAddr),
    ident: u16,
    seq: u16,
    data: &[u8],
) {
    let (protocol, len) = match src {
        IpAddr::V4(_) => (IpProtocol::Icmp, ECHO_HEADER + data.len()),
        IpAddr::V6(_) => (IpProtocol::Icmpv6, ECHO_HEADER + data.len()),
    };
    let ip_buf = emit_headers(buf, macs, (src, dst), protocol, len);
    match (src, dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => Icmpv6Repr::EchoReply {
            ident,
            seq_no: seq,
            data,
        }
        .emit(
            &src,
            &dst,
            &mut Icmpv6Packet::new_unchecked(ip_buf),
            &ChecksumCapabilities::default(),
        ),
        _ => Icmpv4Repr::EchoReply {
            ident,
            seq_no: seq,
            data,
        }
        .emit(
            &mut Icmpv4Packet::new_unchecked(ip_buf),
            &ChecksumCapabilities::default(),
        ),
    }
}

/// Writes the Ethernet and IP headers (the family of `src`; `dst` must
/// match); returns the IP payload.
fn emit_headers(
    buf: &mut [u8],
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    (src, dst): (IpAddr, IpAddr),
    protocol: IpProtocol,
    payload_len: usize,
) -> &mut [u8] {
    let ethertype = if src.is_ipv6() {
        EthernetProtocol::Ipv6
    } else {
        EthernetProtocol::Ipv4
    };
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype,
    }
    .emit(&mut eth);
    let ip_buf = &mut buf[ETH_HEADER..];
    match (src, dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: protocol,
            payload_len,
            hop_limit: TTL,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut *ip_buf)),
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: protocol,
            payload_len,
            hop_limit: TTL,
        }
        .emit(
            &mut Ipv4Packet::new_unchecked(&mut *ip_buf),
            &ChecksumCapabilities::default(),
        ),
        // Callers pair addresses of one family.
        _ => {}
    }
    &mut buf[ETH_HEADER + ip_header_len(src)..]
}

/// The most of a refused IPv6 datagram an ICMPv6 error quotes: what keeps
/// the error within the minimum IPv6 MTU, 1280 bytes (RFC 4443, 2.4).
const IPV6_QUOTE: usize = 1280 - IPV6_HEADER - 8 - IPV6_HEADER;

/// The ICMP "communication administratively prohibited" error for a
/// datagram: ICMPv4 (type 3, code 13) or ICMPv6 (type 1, code 1).
enum Prohibited<'a> {
    V4(Icmpv4Repr<'a>),
    V6(Icmpv6Repr<'a>),
}

impl<'a> Prohibited<'a> {
    /// The error for the IP datagram in the Ethernet frame `request`, and
    /// the address it was sent to (the quoted datagram's source).
    fn answering(request: &'a [u8]) -> Option<(Prohibited<'a>, IpAddr)> {
        let eth = EthernetFrame::new_checked(request).ok()?;
        let ip_start = ETH_HEADER;
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(&request[ip_start..]).ok()?;
                let header = Ipv4Repr::parse(&ip, &ChecksumCapabilities::ignored()).ok()?;
                let payload = &request[ip_start + ip.header_len() as usize..][..ip.payload().len()];
                let data = &payload[..payload.len().min(8)];
                let icmp = Icmpv4Repr::DstUnreachable {
                    reason: Icmpv4DstUnreachable::CommProhibited,
                    header,
                    data,
                };
                Some((Prohibited::V4(icmp), IpAddr::V4(header.src_addr)))
            }
            EthernetProtocol::Ipv6 => {
                let ip = Ipv6Packet::new_checked(&request[ip_start..]).ok()?;
                let header = Ipv6Repr::parse(&ip).ok()?;
                let payload = &request[ip_start + IPV6_HEADER..][..ip.payload().len()];
                let data = &payload[..payload.len().min(IPV6_QUOTE)];
                let icmp = Icmpv6Repr::DstUnreachable {
                    reason: Icmpv6DstUnreachable::AdminProhibit,
                    header,
                    data,
                };
                Some((Prohibited::V6(icmp), IpAddr::V6(header.src_addr)))
            }
            _ => None,
        }
    }

    fn ip_payload_len(&self) -> usize {
        match self {
            Prohibited::V4(icmp) => icmp.buffer_len(),
            Prohibited::V6(icmp) => icmp.buffer_len(),
        }
    }
}

/// Length of the "administratively prohibited" answer to `request`.
pub fn prohibited_frame_len(request: &[u8]) -> Option<usize> {
    let (icmp, to) = Prohibited::answering(request)?;
    Some(ETH_HEADER + ip_header_len(to) + icmp.ip_payload_len())
}

/// Writes, from the gateway (`gateway`: its IPv4 and IPv6 address) to the
/// container, the ICMP "communication administratively prohibited" answer
/// to the IP frame `request`, as a firewall that refuses it would: it
/// quotes the request's IP header and the start of its payload (8 bytes
/// for IPv4, RFC 792; as much as fits the minimum MTU for IPv6, RFC 4443).
pub fn emit_prohibited(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    gateway: (Ipv4Addr, Ipv6Addr),
    request: &[u8],
) {
    let Some((icmp, to)) = Prohibited::answering(request) else {
        return;
    };
    let (from, protocol) = match to {
        IpAddr::V4(_) => (IpAddr::V4(gateway.0), IpProtocol::Icmp),
        IpAddr::V6(_) => (IpAddr::V6(gateway.1), IpProtocol::Icmpv6),
    };
    let ip_buf = emit_headers(buf, macs, (from, to), protocol, icmp.ip_payload_len());
    let caps = ChecksumCapabilities::default();
    match (icmp, from, to) {
        (Prohibited::V4(icmp), _, _) => icmp.emit(&mut Icmpv4Packet::new_unchecked(ip_buf), &caps),
        (Prohibited::V6(icmp), IpAddr::V6(from), IpAddr::V6(to)) => {
            icmp.emit(&from, &to, &mut Icmpv6Packet::new_unchecked(ip_buf), &caps)
        }
        _ => {}
    }
}

/// Length of an ARP frame for IPv4 over Ethernet.
pub const ARP_FRAME_LEN: usize = ETH_HEADER + 28;

/// The sender of an ARP frame (request or reply): its MAC and address.
pub fn arp_sender(frame: &[u8]) -> Option<(EthernetAddress, Ipv4Addr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let arp = ArpPacket::new_checked(eth.payload()).ok()?;
    match ArpRepr::parse(&arp).ok()? {
        ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        } => Some((source_hardware_addr, source_protocol_addr)),
        _ => None,
    }
}

/// Writes a broadcast "who has `target`? tell `src`" into `buf` (exactly
/// [`ARP_FRAME_LEN`] bytes).
pub fn emit_arp_request(buf: &mut [u8], src_mac: EthernetAddress, src: Ipv4Addr, target: Ipv4Addr) {
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: src_mac,
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_HEADER..]));
}

/// Sets the destination MAC of a frame written before it was known.
pub fn set_destination_mac(frame: &mut [u8], mac: EthernetAddress) {
    if frame.len() >= ETH_HEADER {
        EthernetFrame::new_unchecked(frame).set_dst_addr(mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Icmpv4Message;

    #[test]
    fn a_refused_ipv6_echo_request_gets_an_icmpv6_prohibited_answer() {
        let macs = (
            EthernetAddress([2, 0, 0, 0, 0, 0x64]),
            EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        );
        let container: Ipv6Addr = "fd00::100".parse().unwrap();
        let far: Ipv6Addr = "2001:db8::9".parse().unwrap();
        let gateway: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut request = vec![0; echo_frame_len(container.into(), 2000)];
        let ends = (container.into(), far.into());
        emit_echo_reply(&mut request, macs, ends, 7, 3, &[0xab; 2000]);
        let len = prohibited_frame_len(&request).unwrap();
        // Within the minimum IPv6 MTU, however large the request.
        assert_eq!(len, ETH_HEADER + 1280);
        let mut answer = vec![0; len];
        let v4 = Ipv4Addr::new(10, 0, 2, 2);
        emit_prohibited(&mut answer, (macs.1, macs.0), (v4, gateway), &request);

        let eth = EthernetFrame::new_checked(&answer[..]).unwrap();
        assert_eq!(eth.dst_addr(), macs.0);
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (gateway, container));
        assert_eq!(ip.next_header(), IpProtocol::Icmpv6);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&gateway, &container));
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv6Message::DstUnreachable, 1)
        );
        // The quote: the request's IPv6 header, then its echo header.
        let quote = Ipv6Packet::new_unchecked(icmp.payload());
        assert_eq!((quote.src_addr(), quote.dst_addr()), (container, far));
        assert_eq!(
            &icmp.payload()[IPV6_HEADER + 4..IPV6_HEADER + 8],
            &[0, 7, 0, 3][..]
        );
    }

    #[test]
    fn a_refused_echo_request_is_quoted_back_to_its_sender() {
        let macs = (
            EthernetAddress([2, 0, 0, 0, 0, 0x64]),
            EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        );
        let (container, far) = (Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 9));
        let mut request = vec![0; echo_frame_len(container.into(), 16)];
        let ends = (container.into(), far.into());
        emit_echo_reply(&mut request, macs, ends, 7, 3, &[0xab; 16]);
        let len = prohibited_frame_len(&request).unwrap();
        let mut answer = vec![0; len];
        let gateway = Ipv4Addr::new(10, 0, 2, 2);
        emit_prohibited(
            &mut answer,
            (macs.1, macs.0),
            (gateway, Ipv6Addr::LOCALHOST),
            &request,
        );

        let eth = EthernetFrame::new_checked(&answer[..]).unwrap();
        assert_eq!(eth.dst_addr(), macs.0);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (gateway, container));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv4Message::DstUnreachable, 13)
        );
        // smoltcp's parser wants the whole quoted datagram, so read the
        // quote by hand: the request's IP header, then its echo header with
        // the identifier and sequence number.
        let quote = Ipv4Packet::new_unchecked(icmp.data());
        assert_eq!((quote.src_addr(), quote.dst_addr()), (container, far));
        assert_eq!(icmp.data().len(), 28);
        assert_eq!(&icmp.data()[24..], &[0, 7, 0, 3][..]);
    }

    #[test]
    fn an_arp_request_names_its_sender() {
        let mac = EthernetAddress([0x52, 0x55, 10, 0, 2, 2]);
        let mut frame = vec![0; ARP_FRAME_LEN];
        let (gateway, container) = (Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 100));
        emit_arp_request(&mut frame, mac, gateway, container);
        assert_eq!(arp_sender(&frame), Some((mac, gateway)));
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.target_protocol_addr(), &container.octets()[..]);
    }
}
