//! IPv6 in the userspace network (issue 5): the container has fd00::100/64
//! with a default route via fd00::2, which stands for the host's ::1, as
//! 10.0.2.2 stands for 127.0.0.1. Traffic stays on the host's loopback.

use std::net::{TcpListener, UdpSocket};
use std::thread;

use crate::util::{Env, serve_http, skip};

/// Whether this host has IPv6 on loopback; else skips (or fails under
/// must-run).
fn host_ipv6() -> Option<()> {
    if TcpListener::bind("[::1]:0").is_ok() {
        return Some(());
    }
    skip("this host has no IPv6 loopback (::1)")
}

/// An HTTP server on the host's ::1 answering every request with `body`.
fn http_server_v6(body: &'static str) -> u16 {
    serve_http(TcpListener::bind("[::1]:0").unwrap(), move |_| {
        body.to_string()
    })
}

/// A one-block TFTP server on the host's ::1 (busybox's tftp is the UDP
/// client at hand).
fn tftp_server_v6(content: &'static [u8]) -> u16 {
    let socket = UdpSocket::bind("[::1]:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n >= 2 && buf[1] == 1 {
                // RRQ → DATA block 1, short, so the last.
                let mut data = vec![0, 3, 0, 1];
                data.extend_from_slice(content);
                let _ = socket.send_to(&data, from);
            }
        }
    });
    port
}

#[test]
fn the_ipv6_gateway_is_the_hosts_loopback() {
    let env = setup!(Env::new());
    setup!(host_ipv6());
    let http = http_server_v6("hello over IPv6");
    let tftp = tftp_server_v6(b"udp over IPv6\n");
    let script = format!(
        "ip -6 addr show tap0; ip -6 route; \
         wget -qO- http://[fd00::2]:{http}/ && echo && \
         cd /tmp && tftp -g -r x -l out fd00::2 {tftp} && cat out && \
         ping -c1 -W5 fd00::2"
    );
    let out = env
        .burrow(["run", "--rm", "busybox", "sh", "-c", &script])
        .success();
    for want in [
        "inet6 fd00::100/64",
        "default via fd00::2",
        "hello over IPv6",
        "udp over IPv6",
        "1 packets received",
    ] {
        assert!(out.stdout.contains(want), "{want}\n{}", out.describe());
    }
}
