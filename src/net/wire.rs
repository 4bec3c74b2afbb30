//! Frames the stack looks at or writes itself, outside smoltcp: UDP (which
//! is NATed by hand) and ICMP echo of the gateway. Checked views only; a
//! frame that does not parse is `None`, and the caller drops it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
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

/// Length of the "administratively prohibited" answer to `request`.
pub fn prohibited_frame_len(request: &[u8]) -> Option<usize> {
    let (ip, data) = original_datagram(request)?;
    let icmp = Icmpv4Repr::DstUnreachable {
        reason: Icmpv4DstUnreachable::CommProhibited,
        header: ip,
        data,
    };
    Some(ETH_HEADER + IPV4_HEADER + icmp.buffer_len())
}

/// Writes, from `src` to the container, the ICMP "communication
/// administratively prohibited" answer to the IPv4 frame `request`, which
/// quotes its IP header and first 8 payload bytes (RFC 792), as a firewall
/// that refuses it would.
pub fn emit_prohibited(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    src: Ipv4Addr,
    request: &[u8],
) {
    let Some((quoted, data)) = original_datagram(request) else {
        return;
    };
    let icmp = Icmpv4Repr::DstUnreachable {
        reason: Icmpv4DstUnreachable::CommProhibited,
        header: quoted,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: quoted.src_addr,
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

/// The IPv4 header and the first 8 payload bytes of an Ethernet frame.
fn original_datagram(frame: &[u8]) -> Option<(Ipv4Repr, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::ignored()).ok()?;
    let payload = ip.payload();
    Some((repr, &payload[..payload.len().min(8)]))
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
    fn a_refused_echo_request_is_quoted_back_to_its_sender() {
        let macs = (
            EthernetAddress([2, 0, 0, 0, 0, 0x64]),
            EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        );
        let (container, far) = (Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 9));
        let mut request = vec![0; echo_frame_len(16)];
        emit_echo_reply(&mut request, macs, (container, far), 7, 3, &[0xab; 16]);
        let len = prohibited_frame_len(&request).unwrap();
        let mut answer = vec![0; len];
        let gateway = Ipv4Addr::new(10, 0, 2, 2);
        emit_prohibited(&mut answer, (macs.1, macs.0), gateway, &request);

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
