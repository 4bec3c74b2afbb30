//! The userspace network beyond the host's loopback (issue 5): ping of a
//! host that is not the gateway, through the host's ICMP echo sockets, over
//! IPv4 and IPv6.
//!
//! The "far host" is the network namespace `burrow-far` that
//! `scripts/setup-host.sh` creates: 10.251.0.2 and fd51::2 inside,
//! 10.251.0.1 and fd51::1 on the host's end of a veth pair. Traffic to it never leaves this machine.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::thread;

use crate::util::{Env, serve_http, skip};

const FAR_HOST: &str = "10.251.0.2";
const FAR_HOST6: &str = "fd51::2";

/// Whether the far host exists; else skips (or fails under must-run).
fn far_host() -> Option<()> {
    if Path::new("/sys/class/net/burrow-far0").exists() {
        return Some(());
    }
    skip("no far host (the burrow-far0 veth of scripts/setup-host.sh, run as root)")
}

/// What `burrow info` says about ping for the test user: (available, detail).
fn ping_support(env: &Env) -> (bool, String) {
    let info: serde_json::Value =
        serde_json::from_str(&env.ok(["info", "--format", "json"])).expect("info prints JSON");
    let ping = &info["Network"]["Ping"];
    (
        ping["Available"].as_bool().expect("Network.Ping.Available"),
        ping["Detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn ping_reaches_a_host_beyond_the_gateway() {
    let env = setup!(Env::new());
    setup!(far_host());
    let (available, detail) = ping_support(&env);
    let text = env.ok(["info"]);
    assert!(text.contains(&detail), "info's text and JSON agree: {text}");
    if !available {
        assert!(detail.contains("ping_group_range"), "{detail}");
        setup!(skip::<()>(&format!("the test user may not ping: {detail}")));
    }
    // busybox ping checks that each reply carries its own identifier and
    // the sequence number it sent, so two replies prove both come back.
    let out = env
        .burrow(["run", "--rm", "busybox", "ping", "-c2", "-W3", FAR_HOST])
        .success();
    assert!(
        out.stdout.contains("2 packets received"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("bytes from {FAR_HOST}: seq=1")),
        "{}",
        out.describe()
    );
    // Over IPv6 too, where the far host has its IPv6 address (fd51::2).
    if UdpSocket::bind("[fd51::1]:0").is_ok() {
        let out = env
            .burrow(["run", "--rm", "busybox", "ping", "-c2", "-W3", FAR_HOST6])
            .success();
        assert!(
            out.stdout
                .contains(&format!("bytes from {FAR_HOST6}: seq=1")),
            "{}",
            out.describe()
        );
    }
    // The container's own network is not forwarded to the host.
    let out = env.burrow(["run", "--rm", "busybox", "ping", "-c1", "-W1", "10.0.2.77"]);
    assert_ne!(out.code, 0, "{}", out.describe());
}

/// An HTTP server inside the far host's network namespace, on `addr`
/// (port 0: any), answering `body`; its port. A thread joins the namespace
/// (network namespaces are per thread) just to make the listener, which
/// stays in it. That takes root: elsewhere the test skips.
fn far_http_server(addr: &str, body: &'static str) -> Option<u16> {
    if !nix::unistd::geteuid().is_root() {
        return skip("serving inside the far host's namespace takes root (setns)");
    }
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = thread::spawn(move || {
        let ns = std::fs::File::open("/run/netns/burrow-far").expect("open the far host's netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("join it");
        TcpListener::bind(addr).expect("listen in the far host")
    })
    .join()
    .unwrap();
    let port = serve_http(listener, move |stream| {
        let peer = stream
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        format!("{body} to {peer}\n")
    });
    Some(port)
}

#[test]
fn tcp_reaches_a_host_beyond_the_gateway_over_both_families() {
    let env = setup!(Env::new());
    setup!(far_host());
    // The host's end of the veth is what the far host sees: outbound NAT.
    let families = [
        ("10.251.0.2:0", FAR_HOST.to_string(), "far v4 to 10.251.0.1"),
        ("[fd51::2]:0", format!("[{FAR_HOST6}]"), "far v6 to fd51::1"),
    ];
    for (bind, host, want) in families {
        if bind.starts_with('[') && UdpSocket::bind("[fd51::1]:0").is_err() {
            return; // no IPv6 on the far host's link here
        }
        let port = setup!(far_http_server(bind, &want[..6]));
        let url = format!("http://{host}:{port}/");
        let out = env
            .burrow(["run", "--rm", "busybox", "wget", "-qO-", &url])
            .success();
        assert!(out.stdout.contains(want), "{}", out.describe());
    }
}
