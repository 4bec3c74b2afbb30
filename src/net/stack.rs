//! The core: smoltcp's interface and TCP sockets, plus the bookkeeping of
//! NAT flows. It does no I/O and reads no clock: frames come in through
//! [`Stack::ingress`], go out through [`Stack::pop_tx`], time is passed to
//! [`Stack::poll`], and what needs a host socket is asked of the caller as
//! an [`Event`] (TCP) or returned as a [`Datagram`] (UDP, echo).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetProtocol, HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint,
};

use super::device::{Frame, Frames};
use super::wire::{self, Inspected};

pub const DEFAULT_MTU: usize = 65520;
pub const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The same roles over IPv6, on fd00::/64.
pub const CONTAINER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const DNS_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
/// The gateway's MAC, as slirp4netns's (52:55 + the address).
pub const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x52, 0x55, 10, 0, 2, 2]);
/// At most this many TCP connections at once (pending ones included).
pub const MAX_TCP_FLOWS: usize = 4096;
/// What each TCP connection buffers from the container (smoltcp scales
/// the window it advertises to it).
const TCP_RX_BUFFER: usize = 512 * 1024;
/// What each TCP connection buffers for the container: the most that can be
/// in flight to it, since smoltcp keeps what it sent until the container
/// acknowledges it. The container's kernel acknowledges when its reader has
/// taken the data, so with 512 KiB (eight 64 KiB segments) the net thread
/// sat idle waiting for acknowledgements 44% of a `-p` upload. 1 MiB was
/// faster in every paired run (docs/performance.md); larger rings no longer
/// fit the cache beside the frames and cost more CPU per byte.
const TCP_TX_BUFFER: usize = 1024 * 1024;
/// Finished TCP sockets kept for the next connections. A new socket's two
/// buffers are 1.5 MiB the allocator zeroes (it reuses freed heap memory,
/// so calloc must clear it): that memset was 40% of the CPU time of short
/// `-p` connections. A reused socket's buffers need no clearing (smoltcp's
/// ring only reads what it wrote). Few are kept, since each may hold its
/// buffers resident.
const SPARE_TCP_SOCKETS: usize = 8;
/// Datagrams held while the container's MAC is being asked for.
const MAX_HELD: usize = 16;

/// A host socket the stack needs made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Connect a host TCP socket to `to`, then call [`Stack::connected`].
    Connect { id: u64, to: SocketAddr },
}

/// A datagram from the container that leaves through a host socket. The
/// payload is `frame.data()[payload]`; give the frame back with
/// [`Stack::recycle`].
#[derive(Debug)]
pub struct Datagram {
    pub frame: Frame,
    pub kind: DatagramKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramKind {
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Range<usize>,
    },
    Echo {
        dst: IpAddr,
        ident: u16,
        seq: u16,
        data: Range<usize>,
    },
}

/// A SYN waiting for its host connect.
#[derive(Debug)]
struct Pending {
    frame: Frame,
    local: SocketAddr,
    remote: SocketAddr,
}

/// (container-side endpoint, our endpoint) of a TCP connection.
type FlowKey = (SocketAddr, SocketAddr);

/// Where a container's outbound connection or datagram really goes: the
/// gateway is the host's loopback (of the same family), the DNS address the
/// host's resolver, the container's own network nowhere, the rest itself.
pub fn nat_destination(
    dst: SocketAddr,
    allow_host_loopback: bool,
    dns: Option<SocketAddr>,
    udp: bool,
) -> Option<SocketAddr> {
    let ip = dst.ip();
    if ip == GATEWAY_IP || ip == GATEWAY_IP6 {
        let loopback = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return allow_host_loopback.then_some(SocketAddr::new(loopback, dst.port()));
    }
    if ip == DNS_IP || ip == DNS_IP6 {
        return (udp && dst.port() == 53).then_some(dns).flatten();
    }
    let outside = match ip {
        IpAddr::V4(ip) => {
            ip.octets()[..3] != [10, 0, 2]
                && !(ip.is_broadcast()
                    || ip.is_multicast()
                    || ip.is_unspecified()
                    || ip.is_loopback())
        }
        IpAddr::V6(ip) => {
            ip.segments()[..4] != [0xfd00, 0, 0, 0]
                && (ip.segments()[0] & 0xffc0) != 0xfe80
                && !(ip.is_multicast() || ip.is_unspecified() || ip.is_loopback())
                && ip.to_ipv4_mapped().is_none()
        }
    };
    outside.then_some(dst)
}

/// Whether `ip` is the container's own address (of either family).
fn is_container(ip: IpAddr) -> bool {
    ip == CONTAINER_IP || ip == CONTAINER_IP6
}

pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: Frames,
    container_mac: Option<EthernetAddress>,
    /// Datagrams for the container that wait for its MAC (see [`Stack::hold`]).
    held: Vec<Frame>,
    allow_host_loopback: bool,
    flows: HashMap<FlowKey, SocketHandle>,
    keys: HashMap<SocketHandle, FlowKey>,
    pending: HashMap<u64, Pending>,
    pending_keys: HashMap<FlowKey, u64>,
    next_id: u64,
    events: VecDeque<Event>,
    /// Closed sockets to reuse (see [`SPARE_TCP_SOCKETS`]).
    spare: Vec<tcp::Socket<'static>>,
}

impl Stack {
    pub fn new(mtu: usize, allow_host_loopback: bool, now: Instant) -> Stack {
        let mut dev = Frames::new(mtu);
        let mut config = Config::new(HardwareAddress::Ethernet(GATEWAY_MAC));
        config.random_seed = u64::from(std::process::id()) ^ now.total_micros() as u64;
        let mut iface = Interface::new(config, &mut dev, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(GATEWAY_IP.into(), 24));
            let _ = addrs.push(IpCidr::new(GATEWAY_IP6.into(), 64));
            // fd00::3 is on the container's link, so it is asked for by
            // neighbour solicitation, which smoltcp answers only for its own
            // addresses (10.0.2.3 needs no such entry: any_ip answers ARP).
            let _ = addrs.push(IpCidr::new(DNS_IP6.into(), 64));
        });
        // Accept packets for every address: each one is a NAT destination.
        iface.set_any_ip(true);
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            container_mac: None,
            held: Vec::new(),
            allow_host_loopback,
            flows: HashMap::new(),
            keys: HashMap::new(),
            pending: HashMap::new(),
            pending_keys: HashMap::new(),
            next_id: 1,
            events: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// A buffer to read one frame from the TAP into.
    pub fn frame(&mut self) -> Frame {
        self.dev.frame()
    }
    pub fn recycle(&mut self, frame: Frame) {
        self.dev.recycle(frame);
    }
    /// The next frame for the container.
    pub fn pop_tx(&mut self) -> Option<Frame> {
        self.dev.pop_tx()
    }
    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    pub fn tcp_flow_count(&self) -> usize {
        self.keys.len() + self.pending.len()
    }

    /// Takes one frame from the container. TCP and ARP go to smoltcp (a new
    /// connection's SYN waits for its host connect); UDP and echo requests
    /// to other hosts come back as a [`Datagram`]; the rest is answered here
    /// or dropped.
    pub fn ingress(&mut self, frame: Frame) -> Option<Datagram> {
        let Some((src_mac, inspected)) = wire::inspect(frame.data()) else {
            self.dev.recycle(frame);
            return None;
        };
        match inspected {
            Inspected::NotIp {
                ethertype: EthernetProtocol::Arp,
            } => {
                if let Some((mac, ip)) = wire::arp_sender(frame.data()) {
                    self.learn(mac, ip.into());
                }
                self.dev.push_rx(frame);
            }
            Inspected::Ndp { src } => {
                self.learn(src_mac, src.into());
                self.dev.push_rx(frame);
            }
            Inspected::NotIp { .. } | Inspected::Other => self.dev.recycle(frame),
            Inspected::Tcp { src, dst, syn_only } => {
                self.learn(src_mac, src.ip());
                self.tcp_ingress(frame, src, dst, syn_only);
            }
            Inspected::Udp { src, dst, payload } => {
                self.learn(src_mac, src.ip());
                return Some(Datagram {
                    frame,
                    kind: DatagramKind::Udp { src, dst, payload },
                });
            }
            Inspected::EchoRequest {
                src,
                dst,
                ident,
                seq,
                data,
            } => {
                self.learn(src_mac, src);
                if [
                    GATEWAY_IP.into(),
                    DNS_IP.into(),
                    GATEWAY_IP6.into(),
                    DNS_IP6.into(),
                ]
                .contains(&dst)
                {
                    let payload = frame.data()[data].to_vec();
                    self.echo_reply(dst, ident, seq, &payload);
                    self.dev.recycle(frame);
                } else {
                    return Some(Datagram {
                        frame,
                        kind: DatagramKind::Echo {
                            dst,
                            ident,
                            seq,
                            data,
                        },
                    });
                }
            }
        }
        None
    }

    /// The container's MAC is that of its frames from its own address.
    fn learn(&mut self, mac: EthernetAddress, ip: IpAddr) {
        if is_container(ip) && mac.is_unicast() {
            self.container_mac = Some(mac);
            for mut frame in std::mem::take(&mut self.held) {
                wire::set_destination_mac(frame.data_mut(), mac);
                self.dev.push_tx(frame);
            }
        }
    }

    fn tcp_ingress(&mut self, frame: Frame, src: SocketAddr, dst: SocketAddr, syn_only: bool) {
        let key = (src, dst);
        if !syn_only || self.flows.contains_key(&key) {
            return self.dev.push_rx(frame);
        }
        if self.pending_keys.contains_key(&key) {
            // A retransmitted SYN while the host connect runs.
            return self.dev.recycle(frame);
        }
        let target = nat_destination(dst, self.allow_host_loopback, None, false);
        match target {
            Some(to) if is_container(src.ip()) && self.tcp_flow_count() < MAX_TCP_FLOWS => {
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(
                    id,
                    Pending {
                        frame,
                        local: dst,
                        remote: src,
                    },
                );
                self.pending_keys.insert(key, id);
                self.events.push_back(Event::Connect { id, to });
            }
            // No socket takes it, so smoltcp answers with a RST.
            _ => self.dev.push_rx(frame),
        }
    }

    /// The host connect of `id` finished. On success the SYN reaches a new
    /// socket listening on its destination, whose handle is returned; on
    /// failure it reaches none, and the container gets a RST.
    pub fn connected(&mut self, id: u64, ok: bool) -> Option<SocketHandle> {
        let pending = self.pending.remove(&id)?;
        let key = (pending.remote, pending.local);
        self.pending_keys.remove(&key);
        let mut handle = None;
        if ok {
            let mut socket = self.tcp_socket();
            if socket
                .listen(IpListenEndpoint::from(endpoint(pending.local)))
                .is_ok()
            {
                let h = self.sockets.add(socket);
                self.flows.insert(key, h);
                self.keys.insert(h, key);
                handle = Some(h);
            }
        }
        self.dev.push_rx(pending.frame);
        handle
    }

    /// Opens a connection to the container's `port` for a `-p` client,
    /// from `client` (its real address when `real_source`, else the
    /// gateway's). Returns `None` when flows are exhausted.
    pub fn open_inbound(
        &mut self,
        client: SocketAddr,
        port: u16,
        real_source: bool,
        now: Instant,
    ) -> Option<SocketHandle> {
        if self.tcp_flow_count() >= MAX_TCP_FLOWS {
            return None;
        }
        let remote = SocketAddr::new(CONTAINER_IP.into(), port);
        let source = visible_source(client.ip(), real_source);
        let mut local = SocketAddr::new(source.into(), client.port().max(1));
        // Two clients may look alike once mapped (127.0.0.1 and 127.0.0.2
        // are both the gateway): pick another port then.
        let mut tries = 0u32;
        while self.flows.contains_key(&(remote, local))
            || self.pending_keys.contains_key(&(remote, local))
        {
            tries += 1;
            if tries > 64 {
                return None;
            }
            let port = 49152
                + ((u64::from(local.port()) * 7919 + now.total_micros() as u64 + u64::from(tries))
                    % 16384) as u16;
            local.set_port(port);
        }
        let mut socket = self.tcp_socket();
        socket
            .connect(self.iface.context(), endpoint(remote), endpoint(local))
            .ok()?;
        let h = self.sockets.add(socket);
        self.flows.insert((remote, local), h);
        self.keys.insert(h, (remote, local));
        Some(h)
    }

    /// Forgets a finished connection.
    pub fn remove(&mut self, handle: SocketHandle) {
        if let Some(key) = self.keys.remove(&handle) {
            self.flows.remove(&key);
            if let smoltcp::socket::Socket::Tcp(mut socket) = self.sockets.remove(handle)
                && self.spare.len() < SPARE_TCP_SOCKETS
            {
                // Closed without a segment (it has left the set). The next
                // listen or connect resets the connection state (sequence
                // numbers, windows, timers, buffers) and keeps the options
                // set in `new_tcp_socket`; what smoltcp leaves (duplicate-ACK
                // tracking, a fast-retransmit flag) is overwritten by the new
                // connection's first ACKs or at worst resends unacked data.
                socket.abort();
                self.spare.push(socket);
            }
        }
    }

    /// A closed TCP socket: a spare one, or a new one.
    fn tcp_socket(&mut self) -> tcp::Socket<'static> {
        self.spare.pop().unwrap_or_else(new_tcp_socket)
    }

    /// Drops a SYN whose host connect is abandoned (e.g. at shutdown).
    pub fn forget_pending(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            self.pending_keys.remove(&(p.remote, p.local));
            self.dev.recycle(p.frame);
        }
    }

    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Sends a datagram to the container's `port`, from `from` (to its
    /// address of that family).
    pub fn udp_to_container(&mut self, from: SocketAddr, port: u16, payload: &[u8]) -> bool {
        let mac = self.container_mac.unwrap_or(EthernetAddress::BROADCAST);
        let len = wire::udp_frame_len(from.ip(), payload.len());
        let mut frame = self.dev.frame();
        if len > frame.buffer_mut().len() {
            self.dev.recycle(frame);
            return false;
        }
        frame.set_len(len);
        wire::emit_udp(
            frame.data_mut(),
            (GATEWAY_MAC, mac),
            from,
            SocketAddr::new(container_address(from.ip()), port),
            payload,
        );
        if self.container_mac.is_some() {
            self.dev.push_tx(frame);
        } else {
            self.hold(frame);
        }
        true
    }

    /// Keeps a frame for the container until its MAC is known, and asks
    /// for it. A `-p` UDP datagram can be the first frame between the two
    /// sides (a server that has not sent anything yet), and UDP does not go
    /// through smoltcp, whose neighbour cache would have asked.
    fn hold(&mut self, frame: Frame) {
        if self.held.len() >= MAX_HELD {
            return self.dev.recycle(frame);
        }
        self.held.push(frame);
        let mut arp = self.dev.frame();
        arp.set_len(wire::ARP_FRAME_LEN);
        wire::emit_arp_request(arp.data_mut(), GATEWAY_MAC, GATEWAY_IP, CONTAINER_IP);
        self.dev.push_tx(arp);
    }

    /// Sends an echo reply from `from` to the container.
    pub fn echo_reply(&mut self, from: IpAddr, ident: u16, seq: u16, data: &[u8]) {
        let Some(mac) = self.container_mac else {
            return;
        };
        let mut frame = self.dev.frame();
        let len = wire::echo_frame_len(from, data.len());
        if len > frame.buffer_mut().len() {
            return self.dev.recycle(frame);
        }
        frame.set_len(len);
        wire::emit_echo_reply(
            frame.data_mut(),
            (GATEWAY_MAC, mac),
            (from, container_address(from)),
            ident,
            seq,
            data,
        );
        self.dev.push_tx(frame);
    }

    /// Answers the container's `request` (a frame it sent) with "communication
    /// administratively prohibited" from the gateway, so a client fails
    /// promptly instead of waiting for a reply that cannot come.
    pub fn refuse(&mut self, request: Frame) {
        let (Some(mac), Some(len)) = (
            self.container_mac,
            wire::prohibited_frame_len(request.data()),
        ) else {
            return self.dev.recycle(request);
        };
        let mut frame = self.dev.frame();
        if len > frame.buffer_mut().len() {
            self.dev.recycle(frame);
            return self.dev.recycle(request);
        }
        frame.set_len(len);
        wire::emit_prohibited(
            frame.data_mut(),
            (GATEWAY_MAC, mac),
            (GATEWAY_IP, GATEWAY_IP6),
            request.data(),
        );
        self.dev.recycle(request);
        self.dev.push_tx(frame);
    }

    /// Runs smoltcp: processes queued frames, sends what sockets have.
    /// Returns whether any socket may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let changed = self.iface.poll(now, &mut self.dev, &mut self.sockets);
        changed == smoltcp::iface::PollResult::SocketStateChanged
    }

    /// Whether frames wait: for smoltcp (poll again) or for the TAP.
    pub fn busy(&self) -> bool {
        self.dev.rx_pending() || self.dev.tx_full()
    }

    /// How long until smoltcp needs polling again (`None`: not until
    /// something happens).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }
}

/// The address the container sees for a `-p` client: the real one, except
/// that loopback and IPv6 clients (which the container's kernel would drop,
/// or which a server listening on 0.0.0.0 only would not take) are shown as
/// the gateway, which stands for the host: `-p` always reaches the
/// container over IPv4, as Docker's proxy does.
pub fn visible_source(client: IpAddr, real_source: bool) -> Ipv4Addr {
    let v4 = match client {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match v4 {
        Some(v4)
            if real_source
                && !v4.is_loopback()
                && !v4.is_unspecified()
                && v4.octets()[..3] != [10, 0, 2] =>
        {
            v4
        }
        _ => GATEWAY_IP,
    }
}

/// The container's address of the family of `peer`.
fn container_address(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => CONTAINER_IP.into(),
        IpAddr::V6(_) => CONTAINER_IP6.into(),
    }
}

fn endpoint(addr: SocketAddr) -> IpEndpoint {
    IpEndpoint::new(addr.ip().into(), addr.port())
}

fn new_tcp_socket() -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]);
    let tx = tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]);
    let mut socket = tcp::Socket::new(rx, tx);
    // The splice forwards what it reads at once; Nagle would only delay
    // request/response traffic.
    socket.set_nagle_enabled(false);
    // A peer that stops acknowledging for this long is gone.
    socket.set_timeout(Some(SmolDuration::from_secs(120)));
    // Timestamps that only grow let the container's kernel accept a new
    // connection on a 4-tuple it still holds in TIME_WAIT (RFC 6191). `-p`
    // connections reuse the host client's port, which the host recycles
    // within seconds under load; without this, half of those SYNs are
    // answered with a stale ACK and the connect stalls for smoltcp's
    // one-second retransmission timeout.
    socket.set_tsval_generator(Some(timestamp_millis));
    socket
}

/// A millisecond clock for TCP timestamps, shared by every socket.
fn timestamp_millis() -> u32 {
    // One supervisor serves one container (one network namespace), so a
    // clock starting with the supervisor only needs to grow.
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    (start.elapsed().as_millis() as u64).wrapping_add(1) as u32
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
