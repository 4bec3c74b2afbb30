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
    /// The frame behind an empty header (no offload asked of the
    /// container's kernel: the frame is complete), to write to the TAP.
    pub fn tap_data(&mut self) -> &[u8] {
        self.buf[..VNET_HDR_LEN].fill(0);
        &self.buf[..VNET_HDR_LEN + self.len]
    }
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
        Frame {
            len: len.min(self.frame_size),
            buf,
        }
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
        // cost a pass over every byte here. What we send is checksummed.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
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
        self.tx.push_back(frame);
        result
    }
}
