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
//!
//! This file holds the loop itself, the TAP and the table of flows; the
//! kinds of flow live beside it: `tcp.rs` (a host stream spliced to a
//! smoltcp socket), `datagrams.rs` (UDP, DNS and ping, which never enter
//! smoltcp's sockets) and `published.rs` (`-p` clients, on the kernel path
//! of `relay.rs` or on smoltcp).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant as StdInstant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{setsockopt, sockopt};
use smoltcp::time::Instant;

use super::icmp::Pinger;
use super::nsock::Supply;
use super::publish::HostSocket;
use super::relay::{Pipes, Relay, Side};
use super::stack::Stack;
use super::{BoundPorts, NetConfig, NetError, PortMapping};

mod datagrams;
mod published;
mod tcp;

use datagrams::{InboundUdp, UdpFlow};
use tcp::TcpFlow;

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
