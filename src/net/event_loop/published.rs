//! Published ports (`-p`): accepting clients and opening them into the
//! container, over the kernel path (`relay.rs`) where it is in use and
//! over smoltcp where it is not; and datagrams from `-p` UDP clients.

use std::io;
use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{
    EventLoop, FLOW_BASE, Flow, INNER_BASE, InboundUdp, MAX_OPENING, MAX_UDP_FLOWS, MAX_WAITING,
    OPENING_GRACE, Published, TcpFlow,
};
use crate::net::relay::{self, Relay};
use crate::net::stack;

/// What became of a `-p` client offered to the kernel path.
enum Relayed {
    /// Relayed (or refused for good, and closed).
    Yes,
    /// The kernel path is in use but has no socket in stock yet.
    Later(TcpStream),
    /// The kernel path is not in use: take the userspace one.
    No(TcpStream),
}

impl EventLoop {
    pub(super) fn port_event(&mut self, index: usize) {
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
    pub(super) fn open_waiting(&mut self, index: usize) {
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
    pub(super) fn receive_sockets(&mut self) {
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

    pub(super) fn service_relay(&mut self, i: usize) {
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
