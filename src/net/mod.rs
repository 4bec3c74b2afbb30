//! The container network: a userspace TCP/IP stack (smoltcp) between the
//! container's TAP device and ordinary host sockets, the way slirp4netns and
//! pasta give a rootless container a network without bridges or iptables.
//!
//! # Theory of operation
//!
//! The sandbox creates `tap0` inside the container's network namespace
//! (10.0.2.100/24 and fd00::100/64, default routes via 10.0.2.2 and fd00::2,
//! MTU 65520) and hands its file
//! descriptor to the supervisor, which calls [`run`] on a thread of its own.
//! From then on every Ethernet frame the container sends arrives here, and
//! every frame it receives is written here:
//!
//! ```text
//!  container netns            supervisor (this module)                  host
//!  ───────────────   ┌──────────────────────────────────────────┐   ───────────
//!   tap0 ◄─frames──► │ Stack (stack.rs): smoltcp Interface,     │
//!                    │  ARP, TCP sockets, UDP/ICMP by hand;     │
//!                    │  no I/O, clock passed in                 │
//!                    │        ▲ Events / calls                  │
//!                    │ EventLoop (event_loop/): one mio Poll,   │ ◄─► host TCP/UDP
//!                    │  TAP fd, host sockets, -p listeners      │     sockets
//!                    └──────────────────────────────────────────┘
//! ```
//!
//! The addresses are slirp4netns's defaults, so users' habits carry over:
//! the gateway 10.0.2.2 answers ARP and ping and stands for the host's
//! loopback (unless `allow_host_loopback` is off); 10.0.2.3 is a DNS
//! forwarder to the host's resolvers; any other destination is reached
//! through a host socket to that same address (outbound NAT). IPv6 has the
//! same roles where the kernel has it: fd00::2 is the host's ::1, fd00::3
//! the resolver, any other outside address itself; smoltcp answers
//! neighbour solicitation for both.
//!
//! - **Outbound TCP.** A SYN from the container to a new (address, port) is
//!   held while a non-blocking host connect runs. On success a smoltcp socket
//!   listening on exactly that endpoint (the interface accepts any address)
//!   is created and the SYN fed to it; on failure the SYN is fed with no
//!   socket, and smoltcp answers with a RST, so clients fail fast. Data is
//!   then spliced between the smoltcp socket and the host stream; the
//!   bounded socket buffers and TCP windows are the only queues.
//! - **Ping.** Echo requests to the gateway (and 10.0.2.3) are answered
//!   here; to any other outside address they leave through the host's
//!   unprivileged ICMP echo sockets (`icmp.rs`), where
//!   `net.ipv4.ping_group_range` allows them, and are refused with an ICMP
//!   "administratively prohibited" where it does not.
//! - **Outbound UDP and DNS.** Datagrams never enter smoltcp: the stack
//!   hands them to the loop, which keeps one connected host socket per
//!   (container port, destination) and sends replies back with the original
//!   destination as the source.
//! - **Inbound (`-p`).** The host side is bound before the container starts
//!   ([`bind_ports`]). By default a TCP client is joined to a kernel socket
//!   inside the container's namespace and the two are spliced (`relay.rs`;
//!   the sockets come from `nsock.rs`, the routing that brings the answers
//!   back from `netlink.rs`). Otherwise (`port_handler=userspace`, no
//!   socket maker, or none in stock) an accepted client becomes a smoltcp client socket
//!   whose local address is the client's real address (a loopback client
//!   shows as the gateway, since the container's kernel would drop a
//!   127.0.0.0/8 source), connecting to 10.0.2.100:containerPort. A port
//!   published on every address is bound on `[::]` too; its IPv6 clients
//!   also enter over IPv4 (shown as the gateway), as Docker's proxy does,
//!   so servers that listen on 0.0.0.0 only still get them.
//! - **Limits.** Flows are capped in number and each TCP socket has fixed
//!   buffers, so memory is bounded; idle flows expire; malformed frames are
//!   dropped; host I/O errors end the one flow they belong to.

mod config;
mod device;
mod event_loop;
mod icmp;
mod netlink;
mod nsock;
mod publish;
mod relay;
mod stack;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

pub use icmp::{PingSupport, probe as probe_ping};
pub use nsock::{await_report as await_socket_maker, serve as serve_socket_maker};
pub use publish::{BoundPorts, bind_ports, parse_exposed, parse_publish, unpublished};
/// The container's address and its gateway's on burrow's network.
pub use stack::{CONTAINER_IP, GATEWAY_IP};

/// `-p [ip:]hostPort[-end]:containerPort[-end][/tcp|/udp]` and `-P` results.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How the network is set up; [`NetConfig::from_host`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The TAP's MTU (65520, as the sandbox configures it).
    pub mtu: usize,
    /// Whether 10.0.2.2 reaches the host's 127.0.0.1.
    pub allow_host_loopback: bool,
    /// Where queries to 10.0.2.3:53 go, from the host's /etc/resolv.conf.
    /// A 127.x resolver is fine: it is queried from the host.
    pub dns_servers: Vec<SocketAddr>,
    /// Show every `-p` client as 10.0.2.2 instead of its real address.
    pub keep_gateway_source: bool,
}

impl NetConfig {
    /// The defaults, with the DNS servers of the host's /etc/resolv.conf
    /// (or of `~/.config/burrow/resolv.conf` if the user wrote one).
    pub fn from_host() -> NetConfig {
        let text = std::fs::read_to_string(config::resolv_conf_path()).unwrap_or_default();
        NetConfig {
            mtu: stack::DEFAULT_MTU,
            allow_host_loopback: true,
            dns_servers: config::resolv_conf_servers(&text),
            keep_gateway_source: false,
        }
    }
}

/// Errors of the network engine; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid port mapping {spec:?}: {reason}")]
    InvalidPublish { spec: String, reason: String },
    #[error(
        "cannot publish {addr}/{protocol}: the address is already in use (another program or container has it)"
    )]
    PortInUse {
        addr: SocketAddr,
        protocol: Protocol,
    },
    #[error(
        "cannot publish {addr}/{protocol}: ports below {start} are privileged (net.ipv4.ip_unprivileged_port_start={start}); publish a port >= {start}, or lower the limit with `sysctl net.ipv4.ip_unprivileged_port_start={port}` as root"
    )]
    PrivilegedPort {
        addr: SocketAddr,
        protocol: Protocol,
        start: u16,
        port: u16,
    },
    #[error("cannot publish {addr}/{protocol}")]
    Bind {
        addr: SocketAddr,
        protocol: Protocol,
        #[source]
        source: std::io::Error,
    },
    #[error("network event loop: {step}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the stack until `stop` becomes readable (the supervisor writes a
/// byte or closes it when the container exits). Blocking; run it on its own
/// thread.
/// `maker` is the channel to the socket maker (`nsock.rs`) when published
/// TCP ports take the kernel path.
pub fn run(
    tap: OwnedFd,
    cfg: NetConfig,
    ports: BoundPorts,
    stop: OwnedFd,
    maker: Option<OwnedFd>,
) -> Result<(), NetError> {
    event_loop::EventLoop::new(tap, cfg, ports, stop, maker)?.run()
}
