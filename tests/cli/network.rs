//! The userspace network (issue 5): `-p`/`-P` into the container, the
//! gateway 10.0.2.2 to the host's loopback, DNS through 10.0.2.3, ping of
//! the gateway, many connections, bulk transfers, and the errors of `-p`.
//! All traffic stays on loopback and inside the test's namespaces.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::util::{Env, secs, serve_http};

/// A port nobody listens on right now.
/// A TCP port free on every address, below the ephemeral range: a port
/// the kernel handed out for `bind(0)` may be taken again, as the source
/// port of any outgoing connection, before burrow binds it (seen once in
/// CI: "the address is already in use").
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread by process so that concurrent test binaries start apart.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 40) as u16 * 200;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 4000;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// `GET /` on `ip:port`; the whole reply.
fn http_get(ip: IpAddr, port: u16) -> Option<String> {
    let mut s = TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// Waits until a GET answers 200 (the server inside may still be starting).
#[track_caller]
fn wait_http(ip: IpAddr, port: u16) -> String {
    let deadline = Instant::now() + secs(15);
    loop {
        if let Some(reply) = http_get(ip, port).filter(|r| r.contains(" 200 ")) {
            return reply;
        }
        assert!(Instant::now() < deadline, "nothing answered on {ip}:{port}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A non-loopback address of this host, if it has one: a client from it
/// reaches a port bound on 0.0.0.0 with that address as its source.
fn host_address() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// An HTTP server on the host's loopback answering every request with `body`.
fn host_http_server(body: &'static str) -> u16 {
    serve_http(TcpListener::bind("127.0.0.1:0").unwrap(), move |_| {
        body.to_string()
    })
}

/// The bytes `yes abcdefg | head -c len` prints, hashed.
fn yes_digest(len: usize) -> String {
    let line = b"abcdefg\n";
    let mut hasher = Sha256::new();
    let block: Vec<u8> = line.iter().copied().cycle().take(1 << 16).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        hasher.update(&block[..n]);
        left -= n;
    }
    hex::encode(hasher.finalize())
}

#[test]
fn publish_reaches_a_web_server_and_the_container_sees_the_client() {
    let env = setup!(Env::new());
    // The default (kernel) path, and burrow's own TCP/IP stack.
    check_publish(&env, "slirp4netns", false);
    check_publish(&env, "slirp4netns:port_handler=userspace", false);
    // Clients shown as the gateway, on request.
    check_publish(&env, "slirp4netns:client_source=gateway", true);
}

fn check_publish(env: &Env, network: &str, gateway_only: bool) {
    let port = free_port();
    env.run_detached([
        "--name",
        "web",
        "--network",
        network,
        "-p",
        &format!("{port}:80"),
        "busybox",
        "httpd",
        "-f",
        "-vv",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    let reply = wait_http("127.0.0.1".parse().unwrap(), port);
    assert!(
        reply.contains("Hello from a rootless burrow container."),
        "{reply}"
    );
    let ports = env.ok(["port", "web"]);
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{ports}"
    );
    // Docker's inspect fields for the same, as scripts read them.
    let seen = env.ok([
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Ports \"80/tcp\" 0).HostPort}} {{.NetworkSettings.IPAddress}} {{(index .HostConfig.PortBindings \"80/tcp\" 0).HostPort}}",
        "web",
    ]);
    assert_eq!(seen.trim(), format!("{port} 10.0.2.100 {port}"));
    // As Docker does, the port is published on the host's IPv6 addresses
    // too, where it has IPv6: a client of [::1] reaches the container.
    if TcpListener::bind("[::1]:0").is_ok() {
        assert!(ports.contains(&format!("80/tcp -> [::]:{port}")), "{ports}");
        let reply = wait_http("::1".parse().unwrap(), port);
        assert!(reply.contains("Hello from a rootless burrow container."));
    }
    // A loopback client is shown as the gateway (the container's kernel
    // would drop a 127.0.0.1 source); any other client as itself.
    let mut expect = vec!["10.0.2.2".to_string()];
    let mut hidden = None;
    if let Some(ip) = host_address() {
        wait_http(ip, port);
        if gateway_only {
            hidden = Some(ip.to_string());
        } else {
            expect.push(ip.to_string());
        }
    }
    crate::util::eventually(secs(5), "httpd logged its clients", || {
        let logs = env.burrow(["logs", "web"]);
        let all = format!("{}{}", logs.stdout, logs.stderr);
        expect
            .iter()
            .all(|ip| all.contains(&format!("{ip}]:")) || all.contains(&format!("{ip}:")))
    });
    if let Some(ip) = hidden {
        let logs = env.burrow(["logs", "web"]);
        let all = format!("{}{}", logs.stdout, logs.stderr);
        assert!(!all.contains(&format!("{ip}:")), "{network}: {all}");
    }
    env.ok(["rm", "-f", "web"]);
    assert!(
        http_get("127.0.0.1".parse().unwrap(), port).is_none(),
        "the port is closed with the container"
    );
}

#[test]
fn the_gateway_is_the_hosts_loopback_and_answers_ping() {
    let env = setup!(Env::new());
    let port = host_http_server("hello from the host");
    let url = format!("http://10.0.2.2:{port}/");
    let out = env
        .burrow([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            &format!("wget -qO- {url} && ping -c1 -W5 10.0.2.2"),
        ])
        .success();
    assert!(
        out.stdout.contains("hello from the host"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("1 packets received"),
        "{}",
        out.describe()
    );
    // A port nobody listens on fails at once (the host's refusal becomes a RST).
    let closed = free_port();
    let started = Instant::now();
    let out = env.burrow([
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://10.0.2.2:{closed}/"),
    ]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        started.elapsed() < secs(10),
        "a refused connection failed slowly"
    );
}

#[test]
fn allow_host_loopback_false_hides_the_host() {
    let env = setup!(Env::new());
    let port = host_http_server("secret");
    let out = env.burrow([
        "run",
        "--rm",
        "--network",
        "slirp4netns:allow_host_loopback=false",
        "busybox",
        "wget",
        "-T",
        "3",
        "-qO-",
        &format!("http://10.0.2.2:{port}/"),
    ]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(!out.stdout.contains("secret"));
}

/// A resolver on the host's loopback that answers every A query with
/// 192.0.2.42; burrow forwards 10.0.2.3:53 to it.
fn tiny_resolver() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // Header: same id, QR=1 RD RA, one question, one answer if the
            // question is type A, else none.
            let question_end = {
                let mut i = 12;
                while i < n && buf[i] != 0 {
                    i += usize::from(buf[i]) + 1;
                }
                i + 5
            };
            if question_end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([buf[question_end - 4], buf[question_end - 3]]);
            let mut reply = buf[..question_end].to_vec();
            reply[2] = 0x81;
            reply[3] = 0x80;
            reply[6..12].copy_from_slice(&[0, u8::from(qtype == 1), 0, 0, 0, 0]);
            if qtype == 1 {
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 42]);
            }
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

#[test]
fn dns_through_10_0_2_3_reaches_the_hosts_resolver() {
    let env = setup!(Env::new());
    let port = tiny_resolver();
    // burrow forwards to the resolvers of ~/.config/burrow/resolv.conf when
    // the user wrote one (else /etc/resolv.conf's).
    let config = env.home().join(".config/burrow");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("resolv.conf"),
        format!("nameserver 127.0.0.1:{port}\n"),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        for dir in [
            env.home().join(".config"),
            config.clone(),
            config.join("resolv.conf"),
        ] {
            std::os::unix::fs::chown(&dir, Some(env.user.uid), Some(env.user.gid)).unwrap();
        }
    }
    let out = env
        .burrow([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "cat /etc/resolv.conf; nslookup example.internal",
        ])
        .success();
    assert!(out.stdout.contains("10.0.2.3"), "{}", out.describe());
    assert!(out.stdout.contains("192.0.2.42"), "{}", out.describe());
    // fd00::3 is the same resolver over IPv6, where the host has IPv6.
    if TcpListener::bind("[::1]:0").is_ok() {
        let out = env
            .burrow([
                "run",
                "--rm",
                "busybox",
                "nslookup",
                "example.internal",
                "fd00::3",
            ])
            .success();
        assert!(out.stdout.contains("192.0.2.42"), "{}", out.describe());
    }
}

#[test]
fn udp_from_the_container_and_back() {
    let env = setup!(Env::new());
    // busybox's tftp client: a request out to the host, data back.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n >= 2 && buf[1] == 1 {
                // RRQ → DATA block 1, short, so the last.
                let mut data = vec![0, 3, 0, 1];
                data.extend_from_slice(b"udp says hi\n");
                let _ = socket.send_to(&data, from);
            }
        }
    });
    let cmd = format!("cd /tmp && tftp -g -r greeting -l out 10.0.2.2 {port} && cat out");
    let out = env
        .burrow(["run", "--rm", "busybox", "sh", "-c", &cmd])
        .success();
    assert!(out.stdout.contains("udp says hi"), "{}", out.describe());
}

/// A UDP echo server in Python: each datagram comes back prefixed with
/// the address the container saw it from.
const UDP_ECHO: &str = r#"import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(("%s:%d " % peer).encode() + data, peer)
"#;

/// Sends `payload` from `client` to `to` until an answer comes (the server
/// may still be starting); the answer.
fn udp_ask(client: &UdpSocket, to: (IpAddr, u16), payload: &[u8]) -> String {
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + secs(30);
    let mut buf = [0u8; 2048];
    loop {
        client.send_to(payload, to).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(Instant::now() < deadline, "no UDP answer from {to:?}");
    }
}

#[test]
fn inbound_udp_through_publish_is_answered_and_sees_the_client() {
    let Some(rootfs) = crate::webapp::debian_python() else {
        return;
    };
    let env = setup!(Env::new());
    env.spawn([
        "import".as_ref(),
        rootfs.as_os_str(),
        "debian-python".as_ref(),
    ])
    .finish(secs(180))
    .success();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A second mapping on every address, so on [::] too where the host has
    // IPv6 (a dual-stack probe finds a port free in both families).
    let v6 = UdpSocket::bind("[::1]:0").is_ok();
    let any_port = match UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" }) {
        Ok(probe) => probe.local_addr().unwrap().port(),
        Err(e) => panic!("no free UDP port: {e}"),
    };
    env.run_detached([
        "--name",
        "echo",
        "-p",
        &format!("127.0.0.1:{port}:53/udp"),
        "-p",
        &format!("{any_port}:53/udp"),
        "debian-python",
        "python3",
        "-c",
        UDP_ECHO,
    ]);
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client_port = client.local_addr().unwrap().port();
    let answer = udp_ask(&client, (loopback, port), b"hello");
    // A loopback client is shown as the gateway, with its own port.
    assert_eq!(answer, format!("10.0.2.2:{client_port} hello"));
    // A client from another address of this host is shown as itself.
    if let Some(ip) = host_address() {
        let client = UdpSocket::bind((ip, 0)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let answer = udp_ask(&client, (loopback, port), b"again");
        assert_eq!(answer, format!("{ip}:{client_port} again"));
    }
    // An IPv6 client of the [::] socket enters over IPv4, as the gateway.
    if v6 {
        let client = UdpSocket::bind("[::1]:0").unwrap();
        let client_port = client.local_addr().unwrap().port();
        let ip6: IpAddr = "::1".parse().unwrap();
        let answer = udp_ask(&client, (ip6, any_port), b"six");
        assert_eq!(answer, format!("10.0.2.2:{client_port} six"));
    }
    env.ok(["rm", "-f", "echo"]);
}

#[test]
fn two_hundred_concurrent_connections() {
    let env = setup!(Env::new());
    let port = free_port();
    env.run_detached([
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    wait_http("127.0.0.1".parse().unwrap(), port);
    // All 200 open at once, then all answered.
    let streams: Vec<TcpStream> = (0..200)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                reply.contains(" 200 ")
            })
        })
        .collect();
    let ok = workers
        .into_iter()
        .map(|w| w.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 200);
    // Outbound too: 200 connections from the container to the host at once.
    let host = host_http_server("x");
    let cmd = format!(
        "i=0; while [ $i -lt 200 ]; do wget -qO /dev/null http://10.0.2.2:{host}/ & i=$((i+1)); done; fails=0; for j in $(jobs -p); do wait $j || fails=$((fails+1)); done; echo fails=$fails"
    );
    let out = env
        .burrow(["run", "--rm", "busybox", "sh", "-c", &cmd])
        .success();
    assert!(out.stdout.contains("fails=0"), "{}", out.describe());
}

/// 1 GiB each way, checked end to end.
#[test]
fn bulk_transfer_each_way_with_a_checksum() {
    const LEN: usize = 1 << 30;
    let env = setup!(Env::new());
    let want = yes_digest(LEN);

    // Host → container through -p: the kernel path carries it over the
    // container's loopback, not its TAP.
    let (up, counters) = upload(&env, "slirp4netns", LEN, &want);
    let (lo, tap) = (received(&counters, "lo"), received(&counters, "tap0"));
    assert!(
        lo >= LEN as u64 && tap < 16 << 20,
        "lo {lo}, tap0 {tap}: {counters}"
    );
    // burrow's own stack carries it over the TAP (a quarter as much).
    let (_, counters) = upload(
        &env,
        "slirp4netns:port_handler=userspace",
        LEN / 4,
        &yes_digest(LEN / 4),
    );
    let tap = received(&counters, "tap0");
    assert!(tap >= (LEN / 4) as u64, "tap0 {tap}: {counters}");

    let down = download(&env, LEN, &want);
    eprintln!("1 GiB host→container in {up:?}, container→host in {down:?}");
}

/// Sends `len` bytes of `yes abcdefg` through -p to a container on
/// `network` that hashes them; returns the time taken and the container's
/// output (the digest, then its /proc/net/dev).
fn upload(env: &Env, network: &str, len: usize, want: &str) -> (Duration, String) {
    let port = free_port();
    env.run_detached([
        "--name",
        "sink",
        "--network",
        network,
        "-p",
        &format!("127.0.0.1:{port}:5001"),
        "busybox",
        "sh",
        "-c",
        "nc -l -p 5001 | sha256sum; cat /proc/net/dev",
    ]);
    let deadline = Instant::now() + secs(15);
    let mut stream = loop {
        // The host accepts at once; while the container's nc does not
        // listen yet, its RST reaches us as a reset. nc itself half-closes
        // at once (its stdin is empty), so a clean EOF means it is there.
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut probe = [0u8; 1];
            match s.read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                _ => break s,
            }
        }
        assert!(
            Instant::now() < deadline,
            "the container's nc never listened"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let block: Vec<u8> = b"abcdefg\n".iter().copied().cycle().take(1 << 16).collect();
    let started = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        stream
            .write_all(&block[..n])
            .expect("send to the container");
        left -= n;
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let up = started.elapsed();
    env.wait_status("sink", "exited", secs(180));
    let logs = env.ok(["logs", "sink"]);
    assert!(
        logs.contains(want),
        "{network}: host → container digest differs: {logs} vs {want}"
    );
    env.ok(["rm", "sink"]);
    (up, logs)
}

/// Bytes received on `iface`, from a copy of /proc/net/dev.
fn received(counters: &str, iface: &str) -> u64 {
    counters
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{iface}:")))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {iface} in {counters}"))
}

/// Container → host through the gateway.
fn download(env: &Env, len: usize, want: &str) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            hasher.update(&buf[..n]);
        }
        (total, hex::encode(hasher.finalize()))
    });
    let started = Instant::now();
    let cmd = format!("yes abcdefg | head -c {len} | nc 10.0.2.2 {port}");
    env.spawn(["run", "--rm", "busybox", "sh", "-c", &cmd])
        .finish(secs(180))
        .success();
    let (total, got) = receiver.join().unwrap();
    assert_eq!(total, len);
    assert_eq!(got, want, "container → host digest differs");
    started.elapsed()
}

#[test]
fn publish_errors_name_the_cause() {
    let env = setup!(Env::new());
    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = env
        .burrow([
            "run",
            "--rm",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "busybox",
            "true",
        ])
        .burrow_error();
    assert!(out.stderr.contains("already in use"), "{}", out.describe());
    assert!(out.stderr.contains(&port.to_string()), "{}", out.describe());
    assert!(
        env.all_ids().is_empty(),
        "a failed start leaves no container: {:?}",
        env.all_ids()
    );
    // A privileged port (if this machine has any for unprivileged users).
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start > 1 && env.user.uid != 0 {
        let low = start - 1;
        let out = env
            .burrow([
                "run",
                "--rm",
                "-p",
                &format!("127.0.0.1:{low}:80"),
                "busybox",
                "true",
            ])
            .burrow_error();
        assert!(
            out.stderr.contains("net.ipv4.ip_unprivileged_port_start"),
            "{}",
            out.describe()
        );
    }
    // Nonsense.
    env.burrow(["run", "--rm", "-p", "80:http", "busybox", "true"])
        .burrow_error();
}

#[test]
fn publish_all_maps_exposed_ports() {
    let env = setup!(Env::new());
    let tar = env.busybox_tar();
    env.ok([
        "import".as_ref(),
        "-c".as_ref(),
        "EXPOSE 80".as_ref(),
        tar.as_os_str(),
        "web".as_ref(),
    ]);
    env.run_detached([
        "--name", "api", "-P", "web", "httpd", "-f", "-p", "80", "-h", "/var/www",
    ]);
    let line = env.ok(["port", "api", "80/tcp"]);
    let port: u16 = line
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("port api 80/tcp printed {line:?}"));
    assert_ne!(port, 0);
    let reply = wait_http("127.0.0.1".parse().unwrap(), port);
    assert!(
        reply.contains("Hello from a rootless burrow container."),
        "{reply}"
    );
    let ps = env.ok(["ps"]);
    assert!(ps.contains(&format!(":{port}->80/tcp")), "{ps}");
    // Exposed and not published: PORTS and inspect say so, as Docker's do.
    env.run_detached(["--name", "quiet", "web", "sleep", "100"]);
    let ports = env.ok(["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert!(ports.lines().any(|l| l == "quiet 80/tcp"), "{ports}");
    let inspected = env.ok(["inspect", "-f", "{{json .NetworkSettings.Ports}}", "quiet"]);
    assert_eq!(inspected.trim(), r#"{"80/tcp":null}"#);
}

#[test]
fn network_none_has_only_loopback() {
    let env = setup!(Env::new());
    let out = env
        .burrow([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ip",
            "-o",
            "link",
        ])
        .success();
    let links: Vec<_> = out.lines();
    assert_eq!(links.len(), 1, "{}", out.describe());
    assert!(links[0].contains("lo:"), "{}", out.describe());
}
