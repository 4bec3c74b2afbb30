//! `-p` values: parsing them into [`PortMapping`]s, and binding the host side
//! before the container starts, so a busy or privileged port fails `run`
//! while nothing is started yet.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use super::{NetError, PortMapping, Protocol};

/// An image's exposed port as its config keys it: `80/tcp`, `53/udp`, or
/// `80` (tcp); `None` for anything else.
pub fn parse_exposed(key: &str) -> Option<(u16, Protocol)> {
    let (port, protocol) = match key.split_once('/') {
        None => (key, Protocol::Tcp),
        Some((port, "tcp")) => (port, Protocol::Tcp),
        Some((port, "udp")) => (port, Protocol::Udp),
        Some(_) => return None,
    };
    Some((port.parse().ok()?, protocol))
}

/// The exposed ports (image config keys) that no mapping in `bound`
/// publishes, each once, in order.
pub fn unpublished(exposed: &[String], bound: &[PortMapping]) -> Vec<(u16, Protocol)> {
    let mut ports: Vec<_> = exposed
        .iter()
        .filter_map(|key| parse_exposed(key))
        .filter(|&(port, protocol)| {
            !bound
                .iter()
                .any(|b| b.container_port == port && b.protocol == protocol)
        })
        .collect();
    ports.sort_by_key(|&(port, protocol)| (port, protocol.to_string()));
    ports.dedup();
    ports
}

/// Parses one -p value into one mapping per port of the range. hostPort may
/// be empty or omitted ("80", ":80", "127.0.0.1::80"): pick a free port at
/// bind time (host_port 0).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, NetError> {
    let bad = |reason: &str| NetError::InvalidPublish {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (spec, Protocol::Tcp),
    };
    let (ip, host, container) =
        split_fields(rest).ok_or_else(|| bad("expected [ip:]hostPort:containerPort"))?;
    let host_ip = match ip {
        None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(text) => text
            .parse()
            .map_err(|_| bad("the host address is not an IP address"))?,
    };
    let container = parse_range(container)
        .ok_or_else(|| bad("the container port must be a port or range of ports 1-65535"))?;
    let count = container.1 - container.0 + 1;
    let host = match host {
        None | Some("") => None,
        Some(text) => {
            let range = parse_range(text)
                .ok_or_else(|| bad("the host port must be a port or range of ports 1-65535"))?;
            if range.1 - range.0 + 1 != count {
                return Err(bad("the host and container port ranges differ in length"));
            }
            Some(range.0)
        }
    };
    Ok((0..count)
        .map(|i| PortMapping {
            host_ip,
            host_port: host.map_or(0, |start| start + i),
            container_port: container.0 + i,
            protocol,
        })
        .collect())
}

/// Splits "[ip:][host:]container" into its fields; a bracketed IPv6 address
/// ("[::1]:8080:80") keeps its colons.
fn split_fields(text: &str) -> Option<(Option<&str>, Option<&str>, &str)> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let (ip, rest) = bracketed.split_once("]:")?;
        let (host, container) = rest.split_once(':')?;
        return Some((Some(ip), Some(host), container));
    }
    let fields: Vec<&str> = text.split(':').collect();
    match fields[..] {
        [container] => Some((None, None, container)),
        [host, container] => Some((None, Some(host), container)),
        [ip, host, container] => Some((Some(ip), Some(host), container)),
        _ => None,
    }
}

/// "80" or "9000-9002" (inclusive, ascending, no port 0).
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (start.parse::<u16>().ok()?, end.parse::<u16>().ok()?),
        None => {
            let port = text.parse::<u16>().ok()?;
            (port, port)
        }
    };
    (start != 0 && start <= end).then_some((start, end))
}

/// The host side of published ports, bound and ready to accept.
#[derive(Debug, Default)]
pub struct BoundPorts {
    pub(super) ports: Vec<(PortMapping, HostSocket)>,
}

/// One bound host socket.
#[derive(Debug)]
pub(super) enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl BoundPorts {
    /// The mappings, with the port the kernel picked for host port 0.
    pub fn mappings(&self) -> Vec<PortMapping> {
        self.ports.iter().map(|(map, _)| map.clone()).collect()
    }

    /// Whether any published port is TCP.
    pub fn has_tcp(&self) -> bool {
        self.ports
            .iter()
            .any(|(map, _)| map.protocol == Protocol::Tcp)
    }
}

/// Binds the host side of every mapping now, so `run` fails before anything
/// starts: a clear error for a port in use, and for a port below
/// net.ipv4.ip_unprivileged_port_start. Returns the bound sockets with
/// host_port filled in for port-0 mappings.
///
/// A mapping on every address (0.0.0.0, the default) is bound on the
/// host's IPv6 addresses too (`[::]`, the same port), as Docker does, so a
/// client that connects over IPv6 (`localhost` often resolves to `::1`
/// first) reaches the container; a host without IPv6 keeps only the IPv4
/// socket.
pub fn bind_ports(maps: &[PortMapping]) -> Result<BoundPorts, NetError> {
    let mut bound = BoundPorts::default();
    for map in maps {
        let (map, socket) = bind_one(map)?;
        let also_v6 = map.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        bound.ports.push((map.clone(), socket));
        if also_v6 {
            let v6 = PortMapping {
                host_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                ..map
            };
            match bind_one(&v6) {
                Ok(pair) => bound.ports.push(pair),
                Err(NetError::Bind { source, .. }) if no_ipv6(&source) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(bound)
}

/// Binds one mapping; the mapping with the port the kernel chose.
fn bind_one(map: &PortMapping) -> Result<(PortMapping, HostSocket), NetError> {
    let addr = SocketAddr::new(map.host_ip, map.host_port);
    let socket = match map.protocol {
        Protocol::Tcp => bind_tcp(addr).map(HostSocket::Tcp),
        Protocol::Udp => bind_udp(addr).map(HostSocket::Udp),
    }
    .map_err(|err| bind_error(addr, map.protocol, err))?;
    let local = match &socket {
        HostSocket::Tcp(listener) => listener.local_addr(),
        HostSocket::Udp(udp) => udp.local_addr(),
    }
    .map_err(|source| NetError::Bind {
        addr,
        protocol: map.protocol,
        source,
    })?;
    let mut map = map.clone();
    map.host_port = local.port();
    Ok((map, socket))
}

/// The host has no IPv6 (disabled, or no address to bind).
fn no_ipv6(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// An IPv6 socket serves IPv6 only, so `[::]` and `0.0.0.0` can be bound
/// side by side whatever net.ipv6.bindv6only says.
fn v6only<S: std::os::fd::AsFd>(socket: &S, addr: SocketAddr) -> io::Result<()> {
    if addr.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6V6Only, &true).map_err(io::Error::from)?;
    }
    Ok(())
}

/// `TcpListener::bind`, with IPV6_V6ONLY set before the bind.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.is_ipv4() {
        return TcpListener::bind(addr);
    }
    let socket = new_socket(addr, SockType::Stream)?;
    v6only(&socket, addr)?;
    setsockopt(&socket, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
    bind(socket.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)?;
    listen(&socket, Backlog::MAXCONN).map_err(io::Error::from)?;
    Ok(TcpListener::from(socket))
}

/// `UdpSocket::bind`, with IPV6_V6ONLY set before the bind.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    if addr.is_ipv4() {
        return UdpSocket::bind(addr);
    }
    let socket = new_socket(addr, SockType::Datagram)?;
    v6only(&socket, addr)?;
    bind(socket.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)?;
    Ok(UdpSocket::from(socket))
}

fn new_socket(addr: SocketAddr, kind: SockType) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    socket(family, kind, SockFlag::SOCK_CLOEXEC, None).map_err(io::Error::from)
}

fn bind_error(addr: SocketAddr, protocol: Protocol, err: io::Error) -> NetError {
    match err.kind() {
        io::ErrorKind::AddrInUse => NetError::PortInUse { addr, protocol },
        io::ErrorKind::PermissionDenied => {
            let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(1024);
            NetError::PrivilegedPort {
                addr,
                protocol,
                start,
                port: addr.port(),
            }
        }
        _ => NetError::Bind {
            addr,
            protocol,
            source: err,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let maps = parse_publish(spec).unwrap();
        assert_eq!(maps.len(), 1, "{spec}");
        maps.into_iter().next().unwrap()
    }

    #[test]
    fn forms_of_a_single_port() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let map = one("8080:80");
        assert_eq!(
            (map.host_ip, map.host_port, map.container_port, map.protocol),
            (any, 8080, 80, Protocol::Tcp)
        );
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one(":80").host_port, 0);
        let map = one("127.0.0.1::53/udp");
        assert_eq!(
            (map.host_ip, map.host_port, map.container_port, map.protocol),
            ("127.0.0.1".parse().unwrap(), 0, 53, Protocol::Udp)
        );
        let map = one("127.0.0.1:5353:53/udp");
        assert_eq!((map.host_port, map.container_port), (5353, 53));
        let map = one("[::1]:8080:80/tcp");
        assert_eq!(map.host_ip, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ranges_give_one_mapping_per_port() {
        let maps = parse_publish("9000-9002:8000-8002").unwrap();
        let pairs: Vec<_> = maps
            .iter()
            .map(|m| (m.host_port, m.container_port))
            .collect();
        assert_eq!(pairs, vec![(9000, 8000), (9001, 8001), (9002, 8002)]);
        let maps = parse_publish("7000-7001").unwrap();
        assert!(maps.iter().all(|m| m.host_port == 0));
        assert_eq!(maps.len(), 2);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for spec in [
            "",
            "abc",
            "80:0",
            "0:80",
            "70000:80",
            "90-80:90-80",
            "1-3:1-2",
            "80/sctp",
            "1.2.3:80:80",
            "a:b:c:d",
            "[::1:80:80",
        ] {
            let err = parse_publish(spec).expect_err(spec).to_string();
            assert!(err.contains("invalid port mapping"), "{spec}: {err}");
        }
    }

    #[test]
    fn binding_fills_port_zero_and_reports_conflicts() {
        let maps = parse_publish("127.0.0.1::80").unwrap();
        let bound = bind_ports(&maps).unwrap();
        let port = bound.mappings()[0].host_port;
        assert_ne!(port, 0);
        let again = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
        let err = bind_ports(&again).unwrap_err();
        assert!(matches!(err, NetError::PortInUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"));
    }

    #[test]
    fn every_address_means_ipv6_too_on_the_same_port() {
        let bound = bind_ports(&parse_publish("80").unwrap()).unwrap();
        let maps = bound.mappings();
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            assert_eq!(maps.len(), 1, "no IPv6 here: {maps:?}");
            return;
        }
        let ips: Vec<IpAddr> = maps.iter().map(|m| m.host_ip).collect();
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), any6]);
        assert_eq!(maps[0].host_port, maps[1].host_port);
        // The IPv6 socket takes IPv6 clients, and only those.
        let HostSocket::Tcp(v6) = &bound.ports[1].1 else {
            panic!("not TCP")
        };
        std::net::TcpStream::connect(("::1", maps[1].host_port)).unwrap();
        assert_eq!(
            v6.accept().unwrap().1.ip(),
            "::1".parse::<IpAddr>().unwrap()
        );
        // A named address is bound alone.
        let one = bind_ports(&parse_publish("127.0.0.1::80").unwrap()).unwrap();
        assert_eq!(one.mappings().len(), 1);
    }

    #[test]
    fn privileged_port_names_the_sysctl() {
        let err = bind_error(
            "0.0.0.0:80".parse().unwrap(),
            Protocol::Tcp,
            io::ErrorKind::PermissionDenied.into(),
        );
        let text = err.to_string();
        assert!(
            text.contains("net.ipv4.ip_unprivileged_port_start"),
            "{text}"
        );
    }
}
