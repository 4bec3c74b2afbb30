//! The tutorial's web app, end to end: a Python app built `FROM` a Debian
//! image in a local registry, run with `-P`, its page fetched from the host
//! through the published port; then the built image handed to other tools
//! (`burrow push` → `skopeo copy` to an OCI layout and, when installed,
//! `podman pull` + `podman run`; `burrow save` → `skopeo inspect
//! docker-archive:`).
//!
//! The base image is real Debian: `mmdebstrap --variant=minbase
//! --include=python3 bookworm` (about 220 MB, half a minute to a minute and
//! a half from Debian's mirror). It is made once a day and kept in
//! /var/tmp/burrow-test-cache, so later runs of the suite reuse it; it is
//! made as root when the tests run as root (CI), else by mmdebstrap's
//! `unshare` mode. skopeo pushes the rootfs tarball to a test registry as a
//! one-layer image (its `tarball:` transport), which is what the tutorial's
//! `FROM` names.
//!
//! Without mmdebstrap, or when the mirror cannot be reached, the test prints
//! `skipped: <reason>`, unless `BURROW_TEST_MUST_RUN=1`, under which it
//! fails.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::{Registry, have, run_ok};
use crate::util::{Env, must_run, secs};

const CACHE_DIR: &str = "/var/tmp/burrow-test-cache";

const APP: &str = r#"from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the burrow tutorial\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 5000), Hello).serve_forever()
"#;

const DOCKERFILE: &str =
    "FROM {BASE}\nCOPY app.py /app/\nEXPOSE 5000\nCMD [\"python3\", \"/app/app.py\"]\n";

/// Prints the reason and returns `None`, or panics under BURROW_TEST_MUST_RUN=1.
fn skip<T>(reason: &str) -> Option<T> {
    if must_run() {
        panic!("cannot run here: {reason} (BURROW_TEST_MUST_RUN=1 forbids skipping)");
    }
    let name = thread::current().name().unwrap_or("unnamed").to_string();
    let _ = writeln!(std::io::stderr(), "skipped: {name}: {reason}");
    None
}

/// Today's date (UTC) as YYYY-MM-DD: the cache key, so the image follows
/// Debian's security updates without being rebuilt on every run.
fn today() -> String {
    let out = Command::new("date").args(["-u", "+%F"]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "undated".into(),
    }
}

/// A folder this process may write the cached tarball to: the shared cache,
/// or a private one when another user made the shared one.
fn cache_dir() -> PathBuf {
    let shared = Path::new(CACHE_DIR);
    if fs::create_dir_all(shared).is_ok() {
        let _ = fs::set_permissions(shared, fs::Permissions::from_mode(0o755));
        let probe = shared.join(format!(".probe-{}", std::process::id()));
        if fs::write(&probe, b"").is_ok() {
            let _ = fs::remove_file(probe);
            return shared.to_path_buf();
        }
    }
    let own = std::env::temp_dir().join(format!(
        "burrow-test-cache-{}",
        nix::unistd::getuid().as_raw()
    ));
    fs::create_dir_all(&own).expect("create a private test cache");
    own
}

/// The Debian bookworm minbase + python3 rootfs tarball, made at most once a
/// day (per machine) and once per test process.
pub(crate) fn debian_python() -> Option<PathBuf> {
    static TAR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match TAR.get_or_init(make_debian_python) {
        Ok(p) => Some(p.clone()),
        Err(reason) => skip(reason),
    }
}

fn make_debian_python() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let stem = format!("debian-python-bookworm-{}", today());
    let name = format!("{stem}.tar");
    let tar = dir.join(&name);
    if tar.is_file() {
        return Ok(tar);
    }
    if !have("mmdebstrap") {
        return Err("mmdebstrap is not installed (apt-get install mmdebstrap)".into());
    }
    // Earlier days' tarballs are 220 MB each: keep only today's (and
    // today's parts, which other test processes may be writing).
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("debian-python-bookworm-") && !n.starts_with(&stem) {
            let _ = fs::remove_file(e.path());
        }
    }
    // Another test process may make it at the same time: each writes its
    // own file and renames it into place, so readers see a whole tarball.
    // mmdebstrap picks its output format by the extension: keep `.tar`.
    let part = dir.join(format!("{stem}.part-{}.tar", std::process::id()));
    let out = Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--format=tar",
            "--variant=minbase",
            "--include=python3",
            "bookworm",
        ])
        .arg(&part)
        .output()
        .map_err(|e| format!("cannot run mmdebstrap: {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_file(&part);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "mmdebstrap failed (no route to Debian's mirror?): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    fs::set_permissions(&part, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
    fs::rename(&part, &tar).map_err(|e| format!("cannot move the tarball into place: {e}"))?;
    Ok(tar)
}

/// `GET /` from `addr`, the whole response, or `None` on any error.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

#[test]
fn tutorial_web_app_built_from_a_registry_image_serves_through_p() {
    let Some(rootfs) = debian_python() else {
        return;
    };
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let base = reg.name("debian-python:bookworm");
    run_ok({
        let mut c = skopeo();
        c.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("tarball:{}", rootfs.display()))
            .arg(format!("docker://{base}"));
        c
    });
    let env = setup!(Env::empty());
    let ctx = env.home().join("webapp");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("app.py"), APP).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE.replace("{BASE}", &base)).unwrap();

    // A 220 MB base layer: pulled and unpacked by a debug build, so give it time.
    let out = env
        .spawn(["build", "-t", "webapp", ctx.to_str().unwrap()])
        .finish(secs(300))
        .success();
    for want in [
        &format!("Step 1/4 : FROM {base}"),
        "Step 2/4 : COPY app.py /app/",
        "Successfully tagged webapp:latest",
    ] {
        assert!(out.stdout.contains(want), "{}", out.describe());
    }
    let cfg = &env.inspect("webapp")["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["python3", "/app/app.py"]));
    assert!(cfg["ExposedPorts"].get("5000/tcp").is_some(), "{cfg}");

    env.run_detached(["-P", "--name", "web", "webapp"]);
    let port = env.ok(["port", "web", "5000/tcp"]);
    let host_port = port
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("`port web 5000/tcp` printed {port:?}"));
    let addr = format!("127.0.0.1:{host_port}");
    // python3 takes a moment to start listening: poll, bounded.
    let deadline = Instant::now() + secs(30);
    let page = loop {
        if let Some(page) = http_get(&addr).filter(|p| p.starts_with("HTTP/1.0 200")) {
            break page;
        }
        if Instant::now() > deadline {
            panic!(
                "no page from {addr} within 30 s\n--- logs ---\n{}",
                env.burrow(["logs", "web"]).describe()
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(page.ends_with("hello from the burrow tutorial\n"), "{page}");
    // http.server logs requests on stderr, which `logs` keeps apart.
    let logs = env.burrow(["logs", "web"]).success();
    assert!(
        logs.stderr.contains("\"GET / HTTP/1.0\" 200"),
        "{}",
        logs.describe()
    );
    env.ok(["rm", "-f", "web"]);

    // burrow push → a registry → skopeo copies it (checking every digest)
    // into an OCI layout: the base layer plus the COPY layer.
    let pushed = reg.name("team/webapp:1");
    env.ok(["tag", "webapp", &pushed]);
    let out = env.spawn(["push", &pushed]).finish(secs(120)).success();
    assert!(
        out.stdout.contains("Mounted from debian-python"),
        "the base layer is mounted, not uploaded again\n{}",
        out.describe()
    );
    let layout = tempfile::tempdir().unwrap();
    run_ok({
        let mut c = skopeo();
        c.args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{pushed}"))
            .arg(format!("oci:{}:webapp", layout.path().display()));
        c
    });
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.path().join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );

    // Podman (optional: it is no test dependency) pulls it and runs it.
    if have("podman") {
        let podman = |args: &[&str]| {
            let mut all: Vec<String> = [
                "--root",
                &env.dir.join("podman-root").display().to_string(),
                "--runroot",
                &env.dir.join("podman-run").display().to_string(),
                // crun refuses hybrid-cgroup hosts; runc runs anywhere.
                "--runtime",
                "runc",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            all.extend(args.iter().map(|a| a.to_string()));
            env.host("/usr/bin/podman", &all)
        };
        let out = podman(&["pull", "-q", "--tls-verify=false", &pushed]);
        assert_eq!(out.code, 0, "{}", out.describe());
        let out = podman(&[
            "run",
            "--rm",
            &pushed,
            "python3",
            "-c",
            "print(open('/app/app.py').read().count('burrow tutorial'))",
        ]);
        assert_eq!(out.code, 0, "{}", out.describe());
        assert_eq!(out.stdout.trim(), "1", "{}", out.describe());
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "note: webapp: podman is not installed; skopeo alone checked the pushed image"
        );
    }

    // burrow save → an archive skopeo reads, with the build's config.
    let archive = env.home().join("webapp.tar");
    env.spawn(["save", "-o", archive.to_str().unwrap(), "webapp"])
        .finish(secs(120))
        .success();
    let config = run_ok({
        let mut c = skopeo();
        c.args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", archive.display()));
        c
    });
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["python3", "/app/app.py"]),
        "{config}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2),
        "{config}"
    );
}
