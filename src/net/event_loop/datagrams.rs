//! Datagrams: outbound UDP (one connected host socket per container port
//! and destination; DNS to 10.0.2.3 goes to the host's resolver), replies
//! to `-p` UDP clients, and ICMP echo through the host's echo sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant as StdInstant};

use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::{DNS_IDLE, EventLoop, FLOW_BASE, Flow, MAX_UDP_FLOWS, Published, UDP_IDLE};
use crate::net::icmp::Outcome;
use crate::net::stack::{self, Datagram, DatagramKind};

pub(super) struct UdpFlow {
    pub(super) socket: UdpSocket,
    pub(super) key: (u16, SocketAddr),
    /// Replies reach the container from here (the destination it used).
    pub(super) nat_src: SocketAddr,
    pub(super) last_active: StdInstant,
    pub(super) idle: Duration,
}

/// A `-p` UDP client: replies go back through the published socket.
pub(super) struct InboundUdp {
    pub(super) port_index: usize,
    pub(super) client: SocketAddr,
    pub(super) last_active: StdInstant,
}

impl EventLoop {
    /// Replies on an outbound UDP flow, back to the container.
    pub(super) fn udp_replies(&mut self, i: usize) {
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
    pub(super) fn datagram_out(&mut self, dgram: Datagram) {
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
    pub(super) fn ping_replies(&mut self, token: Token) {
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
}
