//! `info`, `--help`, `--version`, and a web server as in the README's demo.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{Env, secs};

#[test]
fn info_reports_in_text_and_json() {
    let env = setup!(Env::empty());
    let text = env.ok(["info"]);
    assert!(!text.trim().is_empty());
    let json = env.ok(["info", "--format", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("info --format json: {e}\n{json}"));
    assert!(v.is_object(), "{json}");
}

#[test]
fn help_and_version() {
    let env = setup!(Env::empty());
    let help = env.ok(["--help"]);
    for cmd in ["run", "ps", "logs", "import", "images"] {
        assert!(help.contains(cmd), "--help lists {cmd}: {help}");
    }
    assert!(env.ok(["--version"]).starts_with("burrow "));
    // An unknown command is a usage error, reported with a non-zero exit.
    assert_ne!(env.burrow(["frobnicate"]).code, 0);
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

#[test]
fn a_detached_web_server_on_the_host_network() {
    let env = setup!(Env::new());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    env.run_detached([
        "--name",
        "web",
        "--network",
        "host",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "busybox",
        "httpd",
        "-f",
        "-p",
        &listen,
        "-h",
        "/var/www",
    ]);
    let deadline = Instant::now() + secs(10);
    let reply = loop {
        if let Some(r) = http_get(port) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "httpd never answered on {listen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
    assert!(
        reply.contains("Hello from a rootless burrow container."),
        "{reply}"
    );
    let config = &env.inspect("web")["Config"];
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e == "GREETING=hi")),
        "{config}"
    );
    assert_eq!(config["WorkingDir"], "/tmp");
    env.ok(["stop", "web"]);
    assert!(http_get(port).is_none(), "the server is gone after stop");
}
