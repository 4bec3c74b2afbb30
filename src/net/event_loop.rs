//! The I/O around the [`Stack`]: one mio poll over the TAP, the stop pipe,
//! the published ports and every host socket of a flow.
//!
//! Each turn: wait (no timeout beyond what smoltcp or the idle sweep
//! needs, so an idle container costs nothing); note which sockets became
//! ready (edge-triggered: a flag stays set until a call would block); read a
//! batch of TAP frames into the stack; move bytes between host streams and
//! smoltcp sockets as far as both sides allow; poll smoltcp; write its
//! frames to the TAP. Backpressure is the socket buffers: a host stream is
//! read only into free smoltcp buffer space, and smoltcp's window shrinks
//! while the host does not take what the container sends.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant as StdInstant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{setsockopt, sockopt};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;

use super::icmp::{Outcome, Pinger};
use super::nsock::Supply;
use super::publish::HostSocket;
use super::relay::{self, Pipes, Relay, Side};
use super::stack::{self, Datagram, DatagramKind, Event, Stack};
use super::{BoundPorts, NetConfig, NetError, PortMapping};

const TAP: Token = Token(0);
const STOP: Token = Token(1);
const SUPPLY: Token = Token(2);
const PORT_BASE: usize = 3;
/// Echo sockets (see icmp.rs); published ports stay below.
const PING_BASE: usize = 1 << 19;
const FLOW_BASE: usize = 1 << 20;
/// A relayed flow's socket inside the container (its host socket has the
/// flow's own token).
const INNER_BASE: usize = 1 << 40;
/// TAP frames read per turn before smoltcp gets to run.
const RX_BATCH: usize = 64;
/// At most this many UDP flows (each one host socket).
const MAX_UDP_FLOWS: usize = 1024;
const UDP_IDLE: Duration = Duration::from_secs(60);
const DNS_IDLE: Duration = Duration::from_secs(10);
const TCP_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// `-p` connections per port being opened into the container at once. A
/// server with a short listen backlog (busybox httpd's is 9) drops the
/// handshakes that overflow it, and smoltcp's retransmissions (one second
/// at least, then doubling) make such a burst take tens of seconds; the
/// kernel keeps the rest in the host listener's backlog or we hold them.
const MAX_OPENING: usize = 8;
/// A connection counts as opened once the container answered on it, or
/// after this long.
const OPENING_GRACE: Duration = Duration::from_secs(1);
/// Accepted `-p` clients waiting for their turn, per port.
const MAX_WAITING: usize = 4096;

enum Flow {
    Tcp(TcpFlow),
    Udp(UdpFlow),
    /// A `-p` connection on the kernel path (`relay.rs`).
    Relay(Relay),
}

struct TcpFlow {
    stream: TcpStream,
    /// `None` while the host connect of this pending SYN runs.
    handle: Option<SocketHandle>,
    pending_id: u64,
    readable: bool,
    writable: bool,
    /// The host sent FIN (we closed the smoltcp socket).
    host_eof: bool,
    /// The container sent FIN (we shut the host stream's write side).
    shut_wr: bool,
    /// Seen closed once; removed at the next turn, after smoltcp sent its RST.
    closed_seen: bool,
    last_active: StdInstant,
    /// For a `-p` connection still opening: the published port's index.
    opening: Option<usize>,
    opened_at: StdInstant,
    /// Bytes moved each way, to tell when the container has answered.
    to_container: u64,
    to_host: u64,
}

struct UdpFlow {
    socket: UdpSocket,
    key: (u16, SocketAddr),
    /// Replies reach the container from here (the destination it used).
    nat_src: SocketAddr,
    last_active: StdInstant,
    idle: Duration,
}

/// What became of a `-p` client offered to the kernel path.
enum Relayed {
    /// Relayed (or refused for good, and closed).
    Yes,
    /// The kernel path is in use but has no socket in stock yet.
    Later(TcpStream),
    /// The kernel path is not in use: take the userspace one.
    No(TcpStream),
}

/// A `-p` UDP client: replies go back through the published socket.
struct InboundUdp {
    port_index: usize,
    client: SocketAddr,
    last_active: StdInstant,
}

enum Published {
    Tcp(TcpListener, PortMapping),
    Udp(UdpSocket, PortMapping),
}

pub struct EventLoop {
    poll: Poll,
    tap: File,
    _stop: OwnedFd,
    cfg: NetConfig,
    stack: Stack,
    start: StdInstant,
    published: Vec<Published>,
    flows: Vec<Option<Flow>>,
    free: Vec<usize>,
    pending: HashMap<u64, usize>,
    udp_out: HashMap<(u16, SocketAddr), usize>,
    /// (container port, client as the container sees it) → client.
    udp_in: HashMap<(u16, SocketAddr), InboundUdp>,
    pinger: Pinger,
    tap_readable: bool,
    datagram: Vec<u8>,
    last_sweep: StdInstant,
    /// Per published port: connections opening, and clients waiting.
    opening: Vec<usize>,
    waiting: Vec<std::collections::VecDeque<(TcpStream, SocketAddr)>>,
    /// Sockets inside the container for the kernel path of `-p`, when it
    /// is in use.
    supply: Option<Supply>,
    pipes: Pipes,
    /// Flows on the kernel path.
    relays: usize,
}

fn io_err(step: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Io { step, source }
}

impl EventLoop {
    pub fn new(
        tap: OwnedFd,
        cfg: NetConfig,
        ports: BoundPorts,
        stop: OwnedFd,
        maker: Option<OwnedFd>,
    ) -> Result<EventLoop, NetError> {
        let poll = Poll::new().map_err(io_err("create the poll"))?;
        let flags =
            fcntl(&tap, FcntlArg::F_GETFL).map_err(|e| io_err("read the TAP's flags")(e.into()))?;
        fcntl(
            &tap,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| io_err("make the TAP non-blocking")(e.into()))?;
        let registry = poll.registry();
        registry
            .register(&mut SourceFd(&tap.as_raw_fd()), TAP, Interest::READABLE)
            .map_err(io_err("watch the TAP"))?;
        registry
            .register(&mut SourceFd(&stop.as_raw_fd()), STOP, Interest::READABLE)
            .map_err(io_err("watch the stop pipe"))?;
        let mut published = Vec::new();
        for (i, (map, socket)) in ports.ports.into_iter().enumerate() {
            let token = Token(PORT_BASE + i);
            let entry = match socket {
                HostSocket::Tcp(listener) => {
                    listener
                        .set_nonblocking(true)
                        .map_err(io_err("make a published port non-blocking"))?;
                    // Accepted clients inherit it: bytes are relayed as they come.
                    let _ = setsockopt(&listener, sockopt::TcpNoDelay, &true);
                    let mut listener = TcpListener::from_std(listener);
                    registry
                        .register(&mut listener, token, Interest::READABLE)
                        .map_err(io_err("watch a published port"))?;
                    Published::Tcp(listener, map)
                }
                HostSocket::Udp(socket) => {
                    socket
                        .set_nonblocking(true)
                        .map_err(io_err("make a published port non-blocking"))?;
                    let mut socket = UdpSocket::from_std(socket);
                    registry
                        .register(&mut socket, token, Interest::READABLE)
                        .map_err(io_err("watch a published port"))?;
                    Published::Udp(socket, map)
                }
            };
            published.push(entry);
        }
        let supply = match maker {
            Some(chan) => {
                let supply = Supply::new(chan).map_err(io_err("watch the socket maker"))?;
                registry
                    .register(&mut SourceFd(&supply.fd()), SUPPLY, Interest::READABLE)
                    .map_err(io_err("watch the socket maker"))?;
                Some(supply)
            }
            None => None,
        };
        let start = StdInstant::now();
        let count = published.len();
        Ok(EventLoop {
            poll,
            tap: File::from(tap),
            _stop: stop,
            stack: Stack::new(cfg.mtu, cfg.allow_host_loopback, Instant::from_micros(0)),
            cfg,
            start,
            published,
            flows: Vec::new(),
            free: Vec::new(),
            pending: HashMap::new(),
            udp_out: HashMap::new(),
            udp_in: HashMap::new(),
            pinger: Pinger::new(PING_BASE),
            tap_readable: true,
            datagram: vec![0; 65536],
            last_sweep: start,
            opening: vec![0; count],
            waiting: (0..count).map(|_| Default::default()).collect(),
            supply,
            pipes: Pipes::default(),
            relays: 0,
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    pub fn run(mut self) -> Result<(), NetError> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(io_err("wait for events")(err)),
            }
            for event in events.iter() {
                match event.token() {
                    TAP => self.tap_readable = true,
                    STOP => return Ok(()),
                    SUPPLY => self.receive_sockets(),
                    Token(t) if t >= INNER_BASE => {
                        if let Some(Some(Flow::Relay(relay))) = self.flows.get_mut(t - INNER_BASE) {
                            relay.ready(
                                Side::Inner,
                                event.is_readable() || event.is_read_closed() || event.is_error(),
                                event.is_writable() || event.is_write_closed(),
                            );
                        }
                    }
                    Token(t) if t >= FLOW_BASE => self.flow_event(
                        t - FLOW_BASE,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable() || event.is_write_closed(),
                    ),
                    Token(t) if t >= PING_BASE => self.ping_replies(Token(t)),
                    Token(t) => self.port_event(t - PORT_BASE),
                }
            }
            self.turn();
        }
    }

    /// How long the next wait may last.
    fn timeout(&mut self) -> Option<Duration> {
        if self.tap_readable || self.stack.busy() {
            return Some(Duration::ZERO);
        }
        let now = self.now();
        let mut timeout = self.stack.poll_delay(now);
        if self.opening.iter().any(|&n| n > 0) {
            let tick = OPENING_GRACE / 4;
            timeout = Some(timeout.map_or(tick, |t| t.min(tick)));
        }
        if self.flows.len() > self.free.len() || !self.udp_in.is_empty() || !self.pinger.is_empty()
        {
            let sweep = SWEEP_EVERY.saturating_sub(self.last_sweep.elapsed());
            timeout = Some(timeout.map_or(sweep, |t| t.min(sweep)));
        }
        timeout
    }

    /// One round of work after the events were noted.
    fn turn(&mut self) {
        if self.tap_readable {
            self.read_tap();
        }
        for _ in 0..8 {
            self.service_flows();
            let now = self.now();
            self.stack.poll(now);
            self.start_connects();
            let wrote = self.write_tap();
            // Freed buffer space or new data may let the splice go on.
            if !wrote && !self.stack.busy() {
                break;
            }
        }
        self.service_flows();
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.sweep();
        }
    }

    fn read_tap(&mut self) {
        for _ in 0..RX_BATCH {
            let mut frame = self.stack.frame();
            match self.tap.read(frame.tap_buffer_mut()) {
                Ok(0) => {
                    self.stack.recycle(frame);
                    self.tap_readable = false;
                    return;
                }
                Ok(n) => {
                    frame.set_tap_len(n);
                    if let Some(dgram) = self.stack.ingress(frame) {
                        self.datagram_out(dgram);
                    }
                }
                Err(err) => {
                    self.stack.recycle(frame);
                    if err.kind() != io::ErrorKind::Interrupted {
                        self.tap_readable = false;
                        return;
                    }
                }
            }
        }
    }

    /// Writes smoltcp's frames; returns whether any was written.
    fn write_tap(&mut self) -> bool {
        let mut wrote = false;
        while let Some(frame) = self.stack.pop_tx() {
            // A full TAP queue or a down link drops the frame, as a wire
            // would; TCP retransmits.
            let _ = self.tap.write(frame.tap_data());
            self.stack.recycle(frame);
            wrote = true;
        }
        wrote
    }

    /// Adds a TCP flow and watches its host socket; a flow that cannot be
    /// watched is dropped at once (`None`).
    fn add_tcp_flow(&mut self, flow: TcpFlow) -> Option<usize> {
        let i = self.add_flow(Flow::Tcp(flow));
        let registered = match &mut self.flows[i] {
            Some(Flow::Tcp(tcp)) => self
                .poll
                .registry()
                .register(
                    &mut tcp.stream,
                    Token(FLOW_BASE + i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok(),
            _ => false,
        };
        if registered {
            Some(i)
        } else {
            self.drop_flow(i);
            None
        }
    }

    fn add_flow(&mut self, flow: Flow) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.flows[i] = Some(flow);
                i
            }
            None => {
                self.flows.push(Some(flow));
                self.flows.len() - 1
            }
        }
    }

    fn drop_flow(&mut self, i: usize) {
        let Some(flow) = self.flows[i].take() else {
            return;
        };
        self.free.push(i);
        match flow {
            Flow::Tcp(mut tcp) => {
                let _ = self.poll.registry().deregister(&mut tcp.stream);
                if let Some(index) = tcp.opening {
                    self.opening[index] -= 1;
                }
                match tcp.handle {
                    Some(h) => self.stack.remove(h),
                    None => {
                        self.pending.remove(&tcp.pending_id);
                        self.stack.forget_pending(tcp.pending_id);
                    }
                }
            }
            Flow::Udp(mut udp) => {
                let _ = self.poll.registry().deregister(&mut udp.socket);
                self.udp_out.remove(&udp.key);
            }
            // Closing the sockets takes them out of the poll.
            Flow::Relay(mut relay) => {
                self.relays -= 1;
                if let Some(index) = relay.opening {
                    self.opening[index] -= 1;
                }
                relay.release(&mut self.pipes);
            }
        }
    }

    /// Host connects for the SYNs the stack is holding.
    fn start_connects(&mut self) {
        while let Some(Event::Connect { id, to }) = self.stack.take_event() {
            let stream = match TcpStream::connect(to) {
                Ok(stream) => stream,
                Err(_) => {
                    self.stack.connected(id, false);
                    continue;
                }
            };
            let Some(i) = self.add_tcp_flow(TcpFlow::new(stream, None, id)) else {
                self.stack.connected(id, false);
                continue;
            };
            self.pending.insert(id, i);
        }
    }

    fn flow_event(&mut self, i: usize, readable: bool, writable: bool) {
        match self.flows.get_mut(i) {
            Some(Some(Flow::Tcp(tcp))) => {
                tcp.readable |= readable;
                tcp.writable |= writable;
                if tcp.handle.is_none() && (readable || writable) {
                    self.finish_connect(i);
                }
            }
            Some(Some(Flow::Udp(_))) if readable => self.udp_replies(i),
            Some(Some(Flow::Relay(relay))) => relay.ready(Side::Host, readable, writable),
            _ => {}
        }
    }

    /// A pending host connect became ready: done, failed, or spurious.
    fn finish_connect(&mut self, i: usize) {
        let Some(Some(Flow::Tcp(tcp))) = self.flows.get_mut(i) else {
            return;
        };
        let ok = match tcp.stream.take_error() {
            Ok(Some(_)) | Err(_) => false,
            Ok(None) => match tcp.stream.peer_addr() {
                Ok(_) => true,
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => false,
            },
        };
        let id = tcp.pending_id;
        self.pending.remove(&id);
        if !ok {
            self.stack.connected(id, false);
            // Flow i holds no handle: free its slot without touching the stack.
            if let Some(Flow::Tcp(mut tcp)) = self.flows[i].take() {
                let _ = self.poll.registry().deregister(&mut tcp.stream);
            }
            self.free.push(i);
            return;
        }
        let _ = tcp.stream.set_nodelay(true);
        match self.stack.connected(id, true) {
            Some(h) => tcp.handle = Some(h),
            None => {
                if let Some(Flow::Tcp(mut tcp)) = self.flows[i].take() {
                    let _ = self.poll.registry().deregister(&mut tcp.stream);
                }
                self.free.push(i);
            }
        }
    }

    fn port_event(&mut self, index: usize) {
        match self.published.get(index) {
            Some(Published::Tcp(..)) => self.accept(index),
            Some(Published::Udp(..)) => self.udp_inbound(index),
            None => {}
        }
    }

    /// Accepts `-p` clients; they wait for their turn to be opened.
    fn accept(&mut self, index: usize) {
        loop {
            let Some(Published::Tcp(listener, _)) = self.published.get(index) else {
                return;
            };
            match listener.accept() {
                Ok(accepted) => {
                    if self.waiting[index].len() < MAX_WAITING {
                        self.waiting[index].push_back(accepted);
                    }
                    // Each client is on its way in before the next accept.
                    self.open_waiting(index);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE...: skip this one; a full fd table
                // resolves as flows end.
                Err(_) => break,
            }
        }
    }

    /// Opens connections into the container for waiting `-p` clients, a
    /// few at a time (see [`MAX_OPENING`]).
    fn open_waiting(&mut self, index: usize) {
        while self.opening[index] < MAX_OPENING {
            let Some((stream, client)) = self.waiting[index].pop_front() else {
                return;
            };
            let Some(Published::Tcp(_, map)) = self.published.get(index) else {
                return;
            };
            let port = map.container_port;
            let real = !self.cfg.keep_gateway_source;
            let stream = match self.try_relay(stream, client, port, index) {
                Relayed::Yes => continue,
                Relayed::Later(stream) => {
                    // Resumed when the maker's next batch arrives.
                    self.waiting[index].push_front((stream, client));
                    return;
                }
                Relayed::No(stream) => stream,
            };
            let now = self.now();
            let Some(handle) = self.stack.open_inbound(client, port, real, now) else {
                continue; // dropping the stream closes it
            };
            let _ = stream.set_nodelay(true);
            let mut flow = TcpFlow::new(stream, Some(handle), 0);
            flow.writable = true;
            flow.opening = Some(index);
            self.opening[index] += 1;
            self.add_tcp_flow(flow);
        }
    }

    /// Puts a `-p` client on the kernel path, if it is in use.
    ///
    /// Once the kernel path is in use, a client never falls back to the
    /// userspace stack while the maker works: the container's kernel may
    /// still hold the same address and port pair in TIME_WAIT from a
    /// relayed connection, and would refuse a SYN with another stack's
    /// timestamps (PAWS) for as long as they keep coming.
    fn try_relay(
        &mut self,
        stream: TcpStream,
        client: SocketAddr,
        port: u16,
        index: usize,
    ) -> Relayed {
        let Some(supply) = self.supply.as_mut() else {
            return Relayed::No(stream);
        };
        if self.relays >= stack::MAX_TCP_FLOWS {
            // As many as the userspace path allows: wait for one to end.
            return Relayed::Later(stream);
        }
        let seen = stack::visible_source(client.ip(), !self.cfg.keep_gateway_source);
        let to = SocketAddr::from((stack::CONTAINER_IP, port));
        // The client's own port if it is free inside, else any.
        let mut inner = None;
        for source_port in [client.port(), 0] {
            let Some(socket) = supply.take() else {
                return Relayed::Later(stream);
            };
            match relay::connect_inside(socket, (seen, source_port).into(), to) {
                Ok(s) => {
                    inner = Some(s);
                    break;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EADDRINUSE | libc::EADDRNOTAVAIL)
                    ) => {}
                Err(_) => break,
            }
        }
        let Some(inner) = inner else {
            // Dropping the client closes it: it can try again.
            return Relayed::Yes;
        };
        // (TCP_NODELAY comes with the listener's, see EventLoop::new.)
        let mut relay = Relay::new(stream, inner, Some(index));
        // What the client has sent goes in first; the container starts on it
        // while the sockets are registered.
        match relay.pump_unwatched(&mut self.pipes) {
            relay::Status::Open => {}
            status => {
                if status == relay::Status::Failed {
                    relay.reset();
                }
                relay.release(&mut self.pipes);
                return Relayed::Yes;
            }
        }
        let i = self.add_flow(Flow::Relay(relay));
        self.relays += 1;
        self.opening[index] += 1;
        let registered = match &mut self.flows[i] {
            Some(Flow::Relay(relay)) => watch_relay(self.poll.registry(), relay, i, true).is_ok(),
            _ => false,
        };
        if !registered {
            self.drop_flow(i);
        }
        Relayed::Yes
    }

    /// Sockets from `nsock`, or word that the maker is gone.
    fn receive_sockets(&mut self) {
        if let Some(supply) = self.supply.as_mut() {
            supply.receive();
            if let Some(why) = supply.failure() {
                // Every -p connection takes the userspace path from now on.
                eprintln!("burrow: {why}; published ports use the userspace network stack");
                self.supply = None;
            }
        }
        self.resume_waiting();
    }

    fn resume_waiting(&mut self) {
        for index in 0..self.waiting.len() {
            if !self.waiting[index].is_empty() {
                self.open_waiting(index);
            }
        }
    }

    /// Datagrams from `-p` UDP clients, into the container.
    fn udp_inbound(&mut self, index: usize) {
        loop {
            let Some(Published::Udp(socket, map)) = self.published.get(index) else {
                return;
            };
            let port = map.container_port;
            let (n, client) = match socket.recv_from(&mut self.datagram) {
                Ok(got) => got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let seen = SocketAddr::new(
                stack::visible_source(client.ip(), !self.cfg.keep_gateway_source).into(),
                client.port(),
            );
            if self.udp_in.len() < MAX_UDP_FLOWS || self.udp_in.contains_key(&(port, seen)) {
                self.udp_in.insert(
                    (port, seen),
                    InboundUdp {
                        port_index: index,
                        client,
                        last_active: StdInstant::now(),
                    },
                );
                self.stack.udp_to_container(seen, port, &self.datagram[..n]);
            }
        }
    }

    /// Replies on an outbound UDP flow, back to the container.
    fn udp_replies(&mut self, i: usize) {
        loop {
            let Some(Some(Flow::Udp(udp))) = self.flows.get_mut(i) else {
                return;
            };
            match udp.socket.recv(&mut self.datagram) {
                Ok(n) => {
                    udp.last_active = StdInstant::now();
                    let (from, port) = (udp.nat_src, udp.key.0);
                    self.stack.udp_to_container(from, port, &self.datagram[..n]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or an ICMP error reported on the socket.
                Err(_) => return,
            }
        }
    }

    /// A datagram the container sent to somewhere outside.
    fn datagram_out(&mut self, dgram: Datagram) {
        match &dgram.kind {
            DatagramKind::Udp { src, dst, payload } => {
                self.udp_out(*src, *dst, &dgram.frame.data()[payload.clone()]);
            }
            DatagramKind::Echo {
                dst,
                ident,
                seq,
                data,
            } => {
                let dst = *dst;
                // Only outside addresses; the gateway's pings never get here.
                let outside = stack::nat_destination((dst, 0).into(), false, None, false);
                if outside.is_some() {
                    let data = &dgram.frame.data()[data.clone()];
                    let registry = self.poll.registry();
                    if self.pinger.send(registry, dst, *ident, *seq, data) == Outcome::Denied {
                        // The host forbids this user ICMP echo sockets
                        // (net.ipv4.ping_group_range): say so at once.
                        return self.stack.refuse(dgram.frame);
                    }
                }
            }
        }
        self.stack.recycle(dgram.frame);
    }

    /// Echo replies from the host, back to the container.
    fn ping_replies(&mut self, token: Token) {
        let Some(slot) = self.pinger.slot(token) else {
            return;
        };
        let stack = &mut self.stack;
        self.pinger.receive(slot, |reply| {
            stack.echo_reply(reply.from, reply.ident, reply.seq, reply.data);
        });
    }

    fn udp_out(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        if src.ip() != stack::CONTAINER_IP && src.ip() != stack::CONTAINER_IP6 {
            return;
        }
        // A reply to a -p client?
        if let Some(inbound) = self.udp_in.get_mut(&(src.port(), dst)) {
            inbound.last_active = StdInstant::now();
            if let Some(Published::Udp(socket, _)) = self.published.get(inbound.port_index) {
                let _ = socket.send_to(payload, inbound.client);
            }
            return;
        }
        let key = (src.port(), dst);
        let i = match self.udp_out.get(&key) {
            Some(&i) => i,
            None => match self.open_udp(key) {
                Some(i) => i,
                None => return,
            },
        };
        if let Some(Some(Flow::Udp(udp))) = self.flows.get_mut(i) {
            udp.last_active = StdInstant::now();
            let _ = udp.socket.send(payload);
        }
    }

    fn open_udp(&mut self, key: (u16, SocketAddr)) -> Option<usize> {
        if self.udp_out.len() >= MAX_UDP_FLOWS {
            return None;
        }
        let dns = self.cfg.dns_servers.first().copied();
        let to = stack::nat_destination(key.1, self.cfg.allow_host_loopback, dns, true)?;
        let any: IpAddr = match to {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
        socket.connect(to).ok()?;
        let idle = if key.1.ip() == stack::DNS_IP || key.1.ip() == stack::DNS_IP6 {
            DNS_IDLE
        } else {
            UDP_IDLE
        };
        let flow = UdpFlow {
            socket,
            key,
            nat_src: key.1,
            last_active: StdInstant::now(),
            idle,
        };
        let i = self.add_flow(Flow::Udp(flow));
        if let Some(Flow::Udp(udp)) = &mut self.flows[i]
            && self
                .poll
                .registry()
                .register(&mut udp.socket, Token(FLOW_BASE + i), Interest::READABLE)
                .is_err()
        {
            self.flows[i] = None;
            self.free.push(i);
            return None;
        }
        self.udp_out.insert(key, i);
        Some(i)
    }

    /// Moves data both ways on every connected TCP flow; ends finished ones.
    fn service_flows(&mut self) {
        for i in 0..self.flows.len() {
            if let Some(Some(Flow::Relay(_))) = self.flows.get(i) {
                self.service_relay(i);
                continue;
            }
            let Some(Some(Flow::Tcp(tcp))) = self.flows.get_mut(i) else {
                continue;
            };
            let Some(handle) = tcp.handle else { continue };
            let socket = self.stack.socket(handle);
            let alive = tcp.splice(socket);
            if let Some(index) = tcp.opening
                && (!alive || tcp.opened(socket))
            {
                tcp.opening = None;
                self.opening[index] -= 1;
                self.open_waiting(index);
            }
            if !alive {
                self.drop_flow(i);
            }
        }
    }

    fn service_relay(&mut self, i: usize) {
        let Some(Some(Flow::Relay(relay))) = self.flows.get_mut(i) else {
            return;
        };
        let mut status = relay.pump(&mut self.pipes);
        if status == relay::Status::Failed {
            relay.reset();
        }
        if status == relay::Status::Open
            && watch_relay(self.poll.registry(), relay, i, false).is_err()
        {
            relay.reset();
            status = relay::Status::Failed;
        }
        if let Some(index) = relay.opening
            && (status != relay::Status::Open || relay.opened(OPENING_GRACE))
        {
            relay.opening = None;
            self.opening[index] -= 1;
            self.open_waiting(index);
        }
        if status != relay::Status::Open {
            self.drop_flow(i);
            if self.relays + 1 == stack::MAX_TCP_FLOWS {
                // Clients held back by the cap may go now.
                self.resume_waiting();
            }
        }
    }

    /// Ends flows idle for too long.
    fn sweep(&mut self) {
        self.last_sweep = StdInstant::now();
        for i in 0..self.flows.len() {
            let expired = match &self.flows[i] {
                Some(Flow::Tcp(tcp)) => tcp.last_active.elapsed() > TCP_IDLE,
                Some(Flow::Udp(udp)) => udp.last_active.elapsed() > udp.idle,
                Some(Flow::Relay(relay)) => relay.last_active.elapsed() > TCP_IDLE,
                None => false,
            };
            if expired {
                if let Some(Some(Flow::Tcp(tcp))) = self.flows.get(i)
                    && let Some(h) = tcp.handle
                {
                    self.stack.socket(h).abort();
                }
                self.drop_flow(i);
            }
        }
        self.udp_in
            .retain(|_, inbound| inbound.last_active.elapsed() <= UDP_IDLE);
        self.pinger.sweep(self.poll.registry());
    }
}

/// Registers a relay's two sockets (`first`), or adds writability to the
/// interest of a side that now waits to write: a relay's sockets are
/// watched for writing only from then on (see `Relay::unwatched_writes`).
fn watch_relay(
    registry: &mio::Registry,
    relay: &mut Relay,
    i: usize,
    first: bool,
) -> io::Result<()> {
    let (host_out, inner_out) = relay.unwatched_writes();
    let sides = [
        (&mut relay.host, Token(FLOW_BASE + i), host_out),
        (&mut relay.inner, Token(INNER_BASE + i), inner_out),
    ];
    for (stream, token, out) in sides {
        let interest = if out {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if first {
            registry.register(stream, token, interest)?;
        } else if out {
            registry.reregister(stream, token, interest)?;
        }
    }
    Ok(())
}

impl TcpFlow {
    fn new(stream: TcpStream, handle: Option<SocketHandle>, pending_id: u64) -> TcpFlow {
        TcpFlow {
            stream,
            handle,
            pending_id,
            readable: false,
            writable: false,
            host_eof: false,
            shut_wr: false,
            closed_seen: false,
            last_active: StdInstant::now(),
            opening: None,
            opened_at: StdInstant::now(),
            to_container: 0,
            to_host: 0,
        }
    }

    /// Whether the container has answered on this connection (or it had
    /// its grace time).
    fn opened(&self, socket: &smoltcp::socket::tcp::Socket<'static>) -> bool {
        let answered = match socket.state() {
            State::SynSent | State::Listen | State::SynReceived => false,
            State::Established => {
                self.to_host > 0 || (self.to_container > 0 && socket.send_queue() == 0)
            }
            _ => true,
        };
        answered || self.opened_at.elapsed() >= OPENING_GRACE
    }

    /// Splices both directions as far as they go; returns false when the
    /// flow is over.
    fn splice(&mut self, socket: &mut smoltcp::socket::tcp::Socket<'static>) -> bool {
        match socket.state() {
            State::Closed | State::TimeWait => {
                if self.closed_seen {
                    return false;
                }
                self.closed_seen = true;
                if !(self.host_eof && self.shut_wr) {
                    // Reset, not closed in order: the host peer gets a RST
                    // too (a linger of zero makes close() send one), so a
                    // client of a port nobody listens on inside fails fast.
                    let _ = setsockopt(
                        &self.stream,
                        sockopt::Linger,
                        &libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        },
                    );
                }
                return true;
            }
            State::Listen | State::SynSent | State::SynReceived => return true,
            _ => {}
        }
        // Container → host.
        while self.writable && socket.can_recv() {
            let stream = &mut self.stream;
            match socket.recv(|buf| match stream.write(buf) {
                Ok(n) => (n, Ok(n)),
                Err(err) => (0, Err(err)),
            }) {
                Ok(Ok(n)) => {
                    self.to_host += n as u64;
                    self.last_active = StdInstant::now();
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(_)) | Err(_) => {
                    socket.abort();
                    return true;
                }
            }
        }
        if !self.shut_wr && !socket.may_recv() && socket.recv_queue() == 0 {
            // The container sent FIN and everything before it is written.
            let _ = self.stream.shutdown(Shutdown::Write);
            self.shut_wr = true;
        }
        // Host → container.
        while self.readable && !self.host_eof && socket.can_send() {
            let stream = &mut self.stream;
            match socket.send(|buf| match stream.read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(err) => (0, Err(err)),
            }) {
                Ok(Ok(0)) => {
                    self.host_eof = true;
                    socket.close();
                }
                Ok(Ok(n)) => {
                    self.to_container += n as u64;
                    self.last_active = StdInstant::now();
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(_)) | Err(_) => {
                    socket.abort();
                    return true;
                }
            }
        }
        true
    }
}
