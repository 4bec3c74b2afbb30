//! An in-memory smoltcp device: two frame queues and a buffer pool.
//!
//! The stack never touches a file descriptor. The event loop reads TAP
//! frames into pooled buffers and queues them here; smoltcp consumes them and
//! queues its own frames, which the loop writes to the TAP. Tests drive the
//! same queues by hand. Buffers are allocated once at full frame size and
//! reused, so the hot path allocates nothing; the queues are bounded.
//!
//! On the TAP every frame sits behind a virtio-net header (the sandbox
//! creates the device with `IFF_VNET_HDR` and checksum offload), so each
//! buffer keeps room for one in front of the frame: the TAP is read into and
//! written from the whole buffer, the stack sees only the frame.

use std::cell::RefCell;
use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames smoltcp may queue before the loop writes them out.
const TX_QUEUE_MAX: usize = 64;
/// Free buffers kept for reuse; more are freed.
const POOL_MAX: usize = 128;
/// `struct virtio_net_hdr`, in front of every frame on the TAP.
pub const VNET_HDR_LEN: usize = 10;

/// One Ethernet frame in a buffer of the device's full frame size, with
/// room for the virtio-net header in front.
#[derive(Debug)]
pub struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    /// The whole frame area, to write a frame into (then [`Frame::set_len`]).
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf[VNET_HDR_LEN..]
    }
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len() - VNET_HDR_LEN);
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }
    /// The whole buffer, header included, to read from the TAP into (then
    /// [`Frame::set_tap_len`]).
    pub fn tap_buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    /// Takes the length of a TAP read. The container's header is ignored:
    /// it can only say that checksums were left undone, and nothing here
    /// checks them (see `capabilities`).
    pub fn set_tap_len(&mut self, n: usize) {
        self.set_len(n.saturating_sub(VNET_HDR_LEN));
    }
    /// The frame behind its header, to write to the TAP. The header is
    /// empty (the frame is complete) unless [`Frame::offload_tcp_checksum`]
    /// filled it.
    pub fn tap_data(&self) -> &[u8] {
        &self.buf[..VNET_HDR_LEN + self.len]
    }

    /// Leaves the TCP checksum of this frame (IPv4 or IPv6, as smoltcp
    /// emits them: no IP options or extension headers) to the container's
    /// kernel: the checksum field gets the pseudo-header's sum and the
    /// header says where the rest is to be summed (`NEEDS_CSUM`). The
    /// kernel takes such a packet as verified (it came from a "device" that
    /// promises the sum) and completes it only if it forwards the packet, so
    /// neither side passes over the payload for it. Other frames are left
    /// complete.
    pub fn offload_tcp_checksum(&mut self) {
        let Some((start, pseudo)) = tcp_pseudo_header_sum(self.data()) else {
            return;
        };
        let at = VNET_HDR_LEN + start + TCP_CHECKSUM_OFFSET;
        // hdr_len: the headers, which the kernel wants in the linear part.
        let tcp_header_len = usize::from(self.buf[VNET_HDR_LEN + start + 12] >> 4) * 4;
        self.buf[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        // struct virtio_net_hdr, native-endian (the TAP is not set to a
        // fixed endianness): flags, gso_type, hdr_len, gso_size,
        // csum_start, csum_offset.
        let header = &mut self.buf[..VNET_HDR_LEN];
        header.fill(0);
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        header[2..4].copy_from_slice(&((start + tcp_header_len) as u16).to_ne_bytes());
        header[6..8].copy_from_slice(&(start as u16).to_ne_bytes());
        header[8..10].copy_from_slice(&(TCP_CHECKSUM_OFFSET as u16).to_ne_bytes());
    }
}

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const TCP_CHECKSUM_OFFSET: usize = 16;

/// Where the TCP header of an Ethernet frame starts, and the folded (not
/// inverted) sum of its pseudo-header; `None` for anything but TCP.
fn tcp_pseudo_header_sum(frame: &[u8]) -> Option<(usize, u16)> {
    const ETH: usize = 14;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    let start = match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ip = frame.get(ETH..ETH + 20)?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ip[9] != 6 || header_len < 20 || total_len < header_len {
                return None;
            }
            add(&ip[12..20]);
            add(&[0, 6]);
            add(&((total_len - header_len) as u16).to_be_bytes());
            ETH + header_len
        }
        [0x86, 0xdd] => {
            let ip = frame.get(ETH..ETH + 40)?;
            if ip[6] != 6 {
                return None;
            }
            add(&ip[8..40]);
            add(&[0, 0, ip[4], ip[5]]);
            add(&[0, 0, 0, 6]);
            ETH + 40
        }
        _ => return None,
    };
    if frame.len() < start + 20 {
        return None;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    Some((start, sum as u16))
}

#[derive(Debug)]
struct Pool {
    free: Vec<Vec<u8>>,
    frame_size: usize,
}

impl Pool {
    fn take(&mut self, len: usize) -> Frame {
        let buf = self
            .free
            .pop()
            .unwrap_or_else(|| vec![0; VNET_HDR_LEN + self.frame_size]);
        let mut frame = Frame {
            len: len.min(self.frame_size),
            buf,
        };
        // A complete frame unless told otherwise (a TAP read may have left
        // a header here).
        frame.buf[..VNET_HDR_LEN].fill(0);
        frame
    }
    fn give(&mut self, frame: Frame) {
        if self.free.len() < POOL_MAX {
            self.free.push(frame.buf);
        }
    }
}

/// The queues between the event loop and smoltcp.
#[derive(Debug)]
pub struct Frames {
    rx: VecDeque<Frame>,
    tx: VecDeque<Frame>,
    pool: RefCell<Pool>,
    mtu: usize,
}

impl Frames {
    /// A device for IP packets up to `mtu` bytes (plus the Ethernet header).
    pub fn new(mtu: usize) -> Frames {
        let frame_size = mtu + 14;
        Frames {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            pool: RefCell::new(Pool {
                free: Vec::new(),
                frame_size,
            }),
            mtu,
        }
    }
    /// A buffer to read one frame into.
    pub fn frame(&mut self) -> Frame {
        let size = self.pool.get_mut().frame_size;
        self.pool.get_mut().take(size)
    }
    pub fn recycle(&mut self, frame: Frame) {
        self.pool.get_mut().give(frame);
    }
    /// Queues a frame for smoltcp to process.
    pub fn push_rx(&mut self, frame: Frame) {
        self.rx.push_back(frame);
    }
    /// Queues a frame for the container, unless the queue is full.
    pub fn push_tx(&mut self, frame: Frame) {
        if self.tx.len() < TX_QUEUE_MAX {
            self.tx.push_back(frame);
        } else {
            self.recycle(frame);
        }
    }
    pub fn pop_tx(&mut self) -> Option<Frame> {
        self.tx.pop_front()
    }
    pub fn rx_pending(&self) -> bool {
        !self.rx.is_empty()
    }
    pub fn tx_full(&self) -> bool {
        self.tx.len() >= TX_QUEUE_MAX
    }
}

pub struct RxToken<'a> {
    frame: Frame,
    pool: &'a RefCell<Pool>,
}

pub struct TxToken<'a> {
    tx: &'a mut VecDeque<Frame>,
    pool: &'a RefCell<Pool>,
}

impl phy::Device for Frames {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                pool: &self.pool,
            },
            TxToken {
                tx: &mut self.tx,
                pool: &self.pool,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < TX_QUEUE_MAX).then_some(TxToken {
            tx: &mut self.tx,
            pool: &self.pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(TX_QUEUE_MAX);
        // Nothing from the container is verified: its kernel leaves TCP and
        // UDP checksums undone (the TAP offers checksum offload, and a
        // virtual wire cannot corrupt), and what it does compute would only
        // cost a pass over every byte here. What we send is checksummed,
        // TCP's by the container's kernel (`Frame::offload_tcp_checksum`).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::None;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.frame.data());
        self.pool.borrow_mut().give(self.frame);
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.pool.borrow_mut().take(len);
        let result = f(frame.data_mut());
        // smoltcp left TCP checksums at zero (see `capabilities`).
        frame.offload_tcp_checksum();
        self.tx.push_back(frame);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
        Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    /// What the kernel does with a `NEEDS_CSUM` packet it forwards.
    fn complete(frame: &mut Frame) {
        let header = &frame.buf[..VNET_HDR_LEN];
        let start = usize::from(u16::from_ne_bytes([header[6], header[7]]));
        let offset = usize::from(u16::from_ne_bytes([header[8], header[9]]));
        let data = frame.data_mut();
        let mut sum: u32 = 0;
        for pair in data[start..].chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        data[start + offset..start + offset + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }

    #[test]
    fn an_offloaded_tcp_checksum_completes_to_the_right_one() {
        let (src, dst) = (
            Ipv4Address::new(10, 0, 2, 2),
            Ipv4Address::new(10, 0, 2, 100),
        );
        let payload = b"hello, odd-length payload";
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(7),
            ack_number: Some(TcpSeqNumber(9)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut frames = Frames::new(1500);
        let mut frame = frames.frame();
        frame.set_len(14 + 20 + tcp.buffer_len());
        let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut eth);
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &ChecksumCapabilities::default());
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        // As smoltcp leaves it with `Checksum::None`: zero.
        tcp.emit(
            &mut segment,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::ignored(),
        );
        segment.set_checksum(0);

        frame.offload_tcp_checksum();
        assert_eq!(frame.tap_data()[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        complete(&mut frame);
        let eth = EthernetFrame::new_checked(frame.data()).unwrap();
        let packet = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let segment = TcpPacket::new_checked(packet.payload()).unwrap();
        assert!(segment.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)));
    }

    #[test]
    fn frames_other_than_tcp_stay_complete() {
        let mut frames = Frames::new(1500);
        let mut frame = frames.frame();
        frame.set_len(60);
        frame.data_mut()[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        frame.offload_tcp_checksum();
        assert!(frame.tap_data()[..VNET_HDR_LEN].iter().all(|&b| b == 0));
    }
}
