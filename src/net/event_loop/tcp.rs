//! TCP flows on the userspace path: a host stream spliced to a smoltcp
//! socket, for connections the container opens (outbound NAT) and for `-p`
//! clients that do not take the kernel path.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant as StdInstant;

use mio::net::TcpStream;
use mio::{Interest, Token};
use nix::sys::socket::{setsockopt, sockopt};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;

use super::{EventLoop, FLOW_BASE, Flow, OPENING_GRACE};
use crate::net::stack::Event;

pub(super) struct TcpFlow {
    pub(super) stream: TcpStream,
    /// `None` while the host connect of this pending SYN runs.
    pub(super) handle: Option<SocketHandle>,
    pub(super) pending_id: u64,
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// The host sent FIN (we closed the smoltcp socket).
    pub(super) host_eof: bool,
    /// The container sent FIN (we shut the host stream's write side).
    pub(super) shut_wr: bool,
    /// Seen closed once; removed at the next turn, after smoltcp sent its RST.
    pub(super) closed_seen: bool,
    pub(super) last_active: StdInstant,
    /// For a `-p` connection still opening: the published port's index.
    pub(super) opening: Option<usize>,
    pub(super) opened_at: StdInstant,
    /// Bytes moved each way, to tell when the container has answered.
    pub(super) to_container: u64,
    pub(super) to_host: u64,
}

impl EventLoop {
    /// Adds a TCP flow and watches its host socket; a flow that cannot be
    /// watched is dropped at once (`None`).
    pub(super) fn add_tcp_flow(&mut self, flow: TcpFlow) -> Option<usize> {
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

    /// Host connects for the SYNs the stack is holding.
    pub(super) fn start_connects(&mut self) {
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

    /// A pending host connect became ready: done, failed, or spurious.
    pub(super) fn finish_connect(&mut self, i: usize) {
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
}

impl TcpFlow {
    pub(super) fn new(stream: TcpStream, handle: Option<SocketHandle>, pending_id: u64) -> TcpFlow {
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
    pub(super) fn opened(&self, socket: &smoltcp::socket::tcp::Socket<'static>) -> bool {
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
    pub(super) fn splice(&mut self, socket: &mut smoltcp::socket::tcp::Socket<'static>) -> bool {
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
