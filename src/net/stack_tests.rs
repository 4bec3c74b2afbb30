//! The stack against a second smoltcp interface playing the container
//! (10.0.2.100/24 and fd00::100/64, default routes via 10.0.2.2 and
//! fd00::2), frames moved by hand between
//! the two in-memory devices, on a virtual clock.

use super::*;
use smoltcp::socket::tcp::State;
use smoltcp::socket::{icmp, udp};
use smoltcp::wire::{
    EthernetFrame, Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Packet, TcpPacket,
};

const CONTAINER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x64]);

struct Pair {
    stack: Stack,
    iface: Interface,
    dev: Frames,
    sockets: SocketSet<'static>,
    now: Instant,
    /// Datagrams the stack handed out, as (kind, payload).
    out: Vec<(DatagramKind, Vec<u8>)>,
    /// Every frame the stack sent, for inspection.
    sent: Vec<Vec<u8>>,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::from_millis(1000);
        let mut dev = Frames::new(DEFAULT_MTU);
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(CONTAINER_MAC)),
            &mut dev,
            now,
        );
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(CONTAINER_IP.into(), 24));
            let _ = a.push(IpCidr::new(CONTAINER_IP6.into(), 64));
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(GATEWAY_IP)
            .unwrap();
        iface
            .routes_mut()
            .add_default_ipv6_route(GATEWAY_IP6)
            .unwrap();
        Pair {
            stack: Stack::new(DEFAULT_MTU, true, now),
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            now,
            out: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Runs both sides until no frame moves.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.now += SmolDuration::from_millis(1);
            self.iface.poll(self.now, &mut self.dev, &mut self.sockets);
            let mut moved = false;
            while let Some(frame) = self.dev.pop_tx() {
                moved = true;
                let mut copy = self.stack.frame();
                copy.buffer_mut()[..frame.data().len()].copy_from_slice(frame.data());
                copy.set_len(frame.data().len());
                self.dev.recycle(frame);
                if let Some(d) = self.stack.ingress(copy) {
                    let payload = match &d.kind {
                        DatagramKind::Udp { payload, .. } => {
                            d.frame.data()[payload.clone()].to_vec()
                        }
                        DatagramKind::Echo { data, .. } => d.frame.data()[data.clone()].to_vec(),
                    };
                    self.out.push((d.kind.clone(), payload));
                    self.stack.recycle(d.frame);
                }
            }
            self.stack.poll(self.now);
            while let Some(frame) = self.stack.pop_tx() {
                moved = true;
                self.sent.push(frame.data().to_vec());
                let mut copy = self.dev.frame();
                copy.buffer_mut()[..frame.data().len()].copy_from_slice(frame.data());
                copy.set_len(frame.data().len());
                self.stack.recycle(frame);
                self.dev.push_rx(copy);
            }
            if !moved {
                return;
            }
        }
    }

    fn container_tcp(&mut self) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0; 65536]);
        let tx = tcp::SocketBuffer::new(vec![0; 65536]);
        self.sockets.add(tcp::Socket::new(rx, tx))
    }
}

fn v4(text: &str) -> SocketAddr {
    // Any address; most tests use IPv4 ones.
    text.parse().unwrap()
}

#[test]
fn gateway_answers_arp_and_the_container_mac_is_learnt() {
    let mut pair = Pair::new();
    // Any first packet towards the gateway makes the container ARP for it.
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (Ipv4Address::new(192, 0, 2, 1), 80),
            40000,
        )
        .unwrap();
    pair.settle();
    let arp_reply = pair.sent.iter().any(|f| {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        eth.ethertype() == EthernetProtocol::Arp
            && eth.src_addr() == GATEWAY_MAC
            && eth.dst_addr() == CONTAINER_MAC
    });
    assert!(arp_reply, "no ARP reply from the gateway");
    assert_eq!(pair.stack.container_mac, Some(CONTAINER_MAC));
}

#[test]
fn outbound_tcp_waits_for_the_host_connect_then_splices() {
    let mut pair = Pair::new();
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (Ipv4Address::new(192, 0, 2, 1), 80),
            40000,
        )
        .unwrap();
    pair.settle();
    let Some(Event::Connect { id, to }) = pair.stack.take_event() else {
        panic!("no connect event")
    };
    assert_eq!(to, "192.0.2.1:80".parse::<SocketAddr>().unwrap());
    // Retransmitted SYNs while the connect runs ask for nothing more.
    pair.now += SmolDuration::from_secs(2);
    pair.settle();
    assert_eq!(pair.stack.take_event(), None);
    assert_eq!(pair.sockets.get::<tcp::Socket>(h).state(), State::SynSent);

    let ours = pair
        .stack
        .connected(id, true)
        .expect("a socket for the flow");
    pair.settle();
    assert_eq!(
        pair.sockets.get::<tcp::Socket>(h).state(),
        State::Established
    );
    assert_eq!(pair.stack.socket(ours).state(), State::Established);
    assert_eq!(
        pair.stack.socket(ours).remote_endpoint(),
        Some(IpEndpoint::new(CONTAINER_IP.into(), 40000))
    );

    // Both ways.
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .send_slice(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    pair.settle();
    let mut buf = [0u8; 64];
    let n = pair.stack.socket(ours).recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"GET / HTTP/1.0\r\n\r\n");
    pair.stack.socket(ours).send_slice(b"hello").unwrap();
    pair.stack.socket(ours).close();
    pair.settle();
    let n = pair
        .sockets
        .get_mut::<tcp::Socket>(h)
        .recv_slice(&mut buf)
        .unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(
        !pair.sockets.get::<tcp::Socket>(h).may_recv(),
        "FIN reached the container"
    );
}

#[test]
fn failed_host_connect_resets_the_container() {
    let mut pair = Pair::new();
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (Ipv4Address::new(192, 0, 2, 1), 81),
            40001,
        )
        .unwrap();
    pair.settle();
    let Some(Event::Connect { id, .. }) = pair.stack.take_event() else {
        panic!("no connect event")
    };
    assert!(pair.stack.connected(id, false).is_none());
    pair.settle();
    assert_eq!(pair.sockets.get::<tcp::Socket>(h).state(), State::Closed);
    let rst = pair.sent.iter().any(|f| {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        eth.ethertype() == EthernetProtocol::Ipv4
            && TcpPacket::new_checked(Ipv4Packet::new_checked(eth.payload()).unwrap().payload())
                .is_ok_and(|t| t.rst())
    });
    assert!(rst);
    assert_eq!(pair.stack.tcp_flow_count(), 0);
}

#[test]
fn internal_addresses_are_refused_without_asking_the_host() {
    let mut pair = Pair::new();
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (Ipv4Address::new(10, 0, 2, 7), 80),
            40002,
        )
        .unwrap();
    pair.settle();
    assert_eq!(pair.stack.take_event(), None);
    assert_eq!(pair.sockets.get::<tcp::Socket>(h).state(), State::Closed);
}

#[test]
fn udp_goes_out_as_a_datagram_and_replies_come_from_the_original_destination() {
    let mut pair = Pair::new();
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let h = pair.sockets.add(udp::Socket::new(rx, tx));
    pair.sockets.get_mut::<udp::Socket>(h).bind(5000).unwrap();
    pair.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"query", (IpAddress::from(DNS_IP), 53))
        .unwrap();
    pair.settle();
    let (kind, payload) = pair.out.pop().expect("a datagram");
    let DatagramKind::Udp { src, dst, .. } = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (src, dst, payload.as_slice()),
        (v4("10.0.2.100:5000"), v4("10.0.2.3:53"), &b"query"[..])
    );
    let dns: SocketAddr = "127.0.0.53:53".parse().unwrap();
    assert_eq!(nat_destination(dst, true, Some(dns), true), Some(dns));
    assert_eq!(
        nat_destination(v4("10.0.2.2:8000"), true, None, false),
        Some("127.0.0.1:8000".parse().unwrap())
    );
    assert_eq!(
        nat_destination(v4("10.0.2.2:8000"), false, None, false),
        None
    );

    assert!(pair.stack.udp_to_container(dst, src.port(), b"answer"));
    pair.settle();
    let (n, meta) = pair
        .sockets
        .get_mut::<udp::Socket>(h)
        .recv_slice(&mut [0; 64])
        .map(|(n, m)| (n, m.endpoint))
        .unwrap();
    assert_eq!((n, meta), (6, IpEndpoint::new(DNS_IP.into(), 53)));
}

#[test]
fn gateway_answers_ping() {
    let mut pair = Pair::new();
    let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
    let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
    let h = pair.sockets.add(icmp::Socket::new(rx, tx));
    pair.sockets
        .get_mut::<icmp::Socket>(h)
        .bind(icmp::Endpoint::Ident(7))
        .unwrap();
    let request = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"ping",
    };
    let mut bytes = vec![0; request.buffer_len()];
    request.emit(
        &mut Icmpv4Packet::new_unchecked(&mut bytes),
        &Default::default(),
    );
    pair.sockets
        .get_mut::<icmp::Socket>(h)
        .send_slice(&bytes, IpAddress::from(GATEWAY_IP))
        .unwrap();
    pair.settle();
    let mut buf = [0; 64];
    let (n, from) = pair
        .sockets
        .get_mut::<icmp::Socket>(h)
        .recv_slice(&mut buf)
        .expect("an echo reply");
    assert_eq!(from, IpAddress::from(GATEWAY_IP));
    let reply = Icmpv4Repr::parse(
        &Icmpv4Packet::new_checked(&buf[..n]).unwrap(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        reply,
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 1,
            data: b"ping"
        }
    );
}

#[test]
fn inbound_connection_shows_the_real_client_address() {
    let mut pair = Pair::new();
    let listener = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(listener)
        .listen(80)
        .unwrap();
    // The container has talked before (its MAC is known via ARP).
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (Ipv4Address::new(10, 0, 2, 9), 1),
            40003,
        )
        .unwrap();
    pair.settle();
    let client: SocketAddr = "192.0.2.50:51000".parse().unwrap();
    let ours = pair.stack.open_inbound(client, 80, true, pair.now).unwrap();
    pair.settle();
    // The container side (smoltcp here) first resolves the gateway for its
    // SYN-ACK and retries after its one-second discovery silence.
    pair.now += SmolDuration::from_secs(3);
    pair.settle();
    assert_eq!(pair.stack.socket(ours).state(), State::Established);
    let seen = pair
        .sockets
        .get::<tcp::Socket>(listener)
        .remote_endpoint()
        .unwrap();
    assert_eq!(
        seen,
        IpEndpoint::new(Ipv4Address::new(192, 0, 2, 50).into(), 51000)
    );
    // A loopback client shows as the gateway; so does everyone when asked.
    assert_eq!(
        visible_source("127.0.0.1".parse().unwrap(), true),
        GATEWAY_IP
    );
    assert_eq!(
        visible_source("192.0.2.50".parse().unwrap(), false),
        GATEWAY_IP
    );
    assert_eq!(
        visible_source("::ffff:192.0.2.50".parse().unwrap(), true),
        Ipv4Addr::new(192, 0, 2, 50)
    );
}

#[test]
fn malformed_frames_are_dropped() {
    let mut pair = Pair::new();
    for junk in [&[][..], &[0u8; 10][..], &[0xff; 60][..]] {
        let mut frame = pair.stack.frame();
        frame.buffer_mut()[..junk.len()].copy_from_slice(junk);
        frame.set_len(junk.len());
        assert!(pair.stack.ingress(frame).is_none());
    }
    // A truncated IPv4 header claiming more than it has.
    let mut frame = pair.stack.frame();
    let bytes = [[0xffu8; 6], CONTAINER_MAC.0, [0; 6]].concat();
    let mut data = bytes[..12].to_vec();
    data.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0xff, 0xff]);
    frame.buffer_mut()[..data.len()].copy_from_slice(&data);
    frame.set_len(data.len());
    assert!(pair.stack.ingress(frame).is_none());
    pair.stack.poll(pair.now);
    assert!(pair.stack.pop_tx().is_none());
}

#[test]
fn inbound_udp_reaches_a_container_that_has_sent_nothing_yet() {
    let mut pair = Pair::new();
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let h = pair.sockets.add(udp::Socket::new(rx, tx));
    pair.sockets.get_mut::<udp::Socket>(h).bind(53).unwrap();
    // The stack does not know the container's MAC: it asks by ARP and
    // delivers the datagram once the container answered.
    assert!(
        pair.stack
            .udp_to_container(v4("192.0.2.7:4000"), 53, b"hello")
    );
    pair.settle();
    let mut buf = [0; 64];
    let (n, meta) = pair
        .sockets
        .get_mut::<udp::Socket>(h)
        .recv_slice(&mut buf)
        .expect("the datagram arrived");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(
        meta.endpoint,
        IpEndpoint::new(Ipv4Address::new(192, 0, 2, 7).into(), 4000)
    );
}

#[test]
fn ipv6_gateway_and_resolver_are_the_hosts() {
    let mut pair = Pair::new();
    // TCP to fd00::2 (found by neighbour solicitation) is the host's ::1.
    let h = pair.container_tcp();
    pair.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            pair.iface.context(),
            (IpAddress::from(GATEWAY_IP6), 8080),
            40000,
        )
        .unwrap();
    pair.settle();
    let Some(Event::Connect { to, .. }) = pair.stack.take_event() else {
        panic!("no connect event")
    };
    assert_eq!(to, "[::1]:8080".parse::<SocketAddr>().unwrap());
    // UDP to fd00::3 (on the link, so asked for too) is the resolver.
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
    let u = pair.sockets.add(udp::Socket::new(rx, tx));
    pair.sockets.get_mut::<udp::Socket>(u).bind(5000).unwrap();
    pair.sockets
        .get_mut::<udp::Socket>(u)
        .send_slice(b"query", (IpAddress::from(DNS_IP6), 53))
        .unwrap();
    // smoltcp sends one solicitation a second: the one for fd00::2 was just sent.
    pair.settle();
    pair.now += SmolDuration::from_secs(2);
    pair.settle();
    let (kind, payload) = pair.out.pop().expect("a datagram");
    let DatagramKind::Udp { src, dst, .. } = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (src, dst, payload.as_slice()),
        (v4("[fd00::100]:5000"), v4("[fd00::3]:53"), &b"query"[..])
    );
    let dns: SocketAddr = "127.0.0.53:53".parse().unwrap();
    assert_eq!(nat_destination(dst, true, Some(dns), true), Some(dns));
    // A reply comes back from fd00::3 over IPv6.
    assert!(pair.stack.udp_to_container(dst, 5000, b"answer"));
    pair.settle();
    let mut buf = [0; 64];
    let (n, meta) = pair
        .sockets
        .get_mut::<udp::Socket>(u)
        .recv_slice(&mut buf)
        .expect("the answer arrived");
    assert_eq!(
        (&buf[..n], meta.endpoint),
        (&b"answer"[..], IpEndpoint::new(DNS_IP6.into(), 53))
    );
    // The container's own network and link-local addresses stay inside.
    for inside in ["[fd00::9]:80", "[fe80::1]:80", "[::1]:80", "[ff02::1]:80"] {
        assert_eq!(
            nat_destination(v4(inside), true, None, false),
            None,
            "{inside}"
        );
    }
    for outside in [
        "[fd51::2]:80",
        "[2001:db8::1]:0",
        "10.251.0.2:0",
        "10.0.3.1:0",
    ] {
        assert_eq!(
            nat_destination(v4(outside), false, None, false),
            Some(v4(outside)),
            "{outside}"
        );
    }
    for inside in [
        "10.0.2.77:0",
        "255.255.255.255:0",
        "224.0.0.1:0",
        "0.0.0.0:0",
        "[::]:0",
    ] {
        assert_eq!(
            nat_destination(v4(inside), true, None, false),
            None,
            "{inside}"
        );
    }
}
