//! `pull`, `push`, `login`, `logout`, `search` and `run`'s implicit pull,
//! against a real registry: Debian's `docker-registry` (the CNCF
//! distribution server), started per test on a free 127.0.0.1 port with its
//! own config, storage folder and an empty environment (any `REGISTRY_*`
//! variable would override the config). Images reach it through `skopeo`, a
//! client no one here wrote, as well as through `burrow push`.
//!
//! Without `docker-registry` or `skopeo` the tests print `skipped: <reason>`,
//! unless `BURROW_TEST_MUST_RUN=1`, under which they fail.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::token_server::TokenServer;
use crate::util::{Env, busybox_tar, must_run};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Prints the reason and returns `None`, or panics under BURROW_TEST_MUST_RUN=1.
pub(crate) fn skip<T>(reason: &str) -> Option<T> {
    if must_run() {
        panic!("cannot run here: {reason} (BURROW_TEST_MUST_RUN=1 forbids skipping)");
    }
    let name = thread::current().name().unwrap_or("unnamed").to_string();
    let _ = writeln!(std::io::stderr(), "skipped: {name}: {reason}");
    None
}

pub(crate) fn have(program: &str) -> bool {
    PATH.split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

/// A running `docker-registry`, stopped and removed on drop.
pub(crate) struct Registry {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`.
    host: String,
}

impl Registry {
    /// Starts a registry; `users` turns on htpasswd (bcrypt) Basic auth.
    pub(crate) fn start(users: &[(&str, &str)]) -> Option<Registry> {
        if !have_tools() {
            return None;
        }
        if !users.is_empty() && !have("htpasswd") {
            return skip("htpasswd is not installed (apt-get install apache2-utils)");
        }
        let dir = fresh_dir();
        let mut auth = String::new();
        if !users.is_empty() {
            let mut lines = String::new();
            for (user, password) in users {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                lines.push('\n');
            }
            fs::write(dir.join("htpasswd"), lines).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: burrow-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        Some(Registry::launch(dir, &auth))
    }

    /// Starts a registry that takes Bearer tokens from `tokens`.
    pub(crate) fn with_tokens(tokens: &TokenServer) -> Option<Registry> {
        if !have_tools() {
            return None;
        }
        Some(Registry::launch(fresh_dir(), &tokens.registry_config()))
    }

    /// Starts a registry that speaks HTTPS with the certificate and key
    /// made by `make_certificates` in `certs`.
    pub(crate) fn with_tls(certs: &Path) -> Option<Registry> {
        if !have_tools() {
            return None;
        }
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        );
        Some(Registry::launch(fresh_dir(), &tls))
    }

    /// Runs `docker-registry` with `extra` YAML after `http.addr` (indented
    /// keys stay under `http:`, as `tls:` does; `auth:` starts its own).
    fn launch(dir: PathBuf, extra: &str) -> Registry {
        // Ask the kernel for a free port, then hand it to the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{extra}",
            dir.join("storage").display()
        );
        fs::write(dir.join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, dir, host };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&registry.host).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not listen on {} within 10 s; its log:\n{}",
                    registry.host,
                    fs::read_to_string(registry.dir.join("log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The registry's own log, for failure messages.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `HOST/NAME`.
    pub(crate) fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// `skopeo copy` from an OCI layout to `HOST/NAME`, copying every platform.
    pub(crate) fn skopeo_push(&self, layout: &Path, name: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}", self.name(name)));
        run_ok(cmd);
    }

    /// How many times the registry served the blob `digest` (GET requests
    /// of any repository), counted in its access log.
    fn blob_gets(&self, digest: &str) -> usize {
        let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let uri = format!("/blobs/{digest}\"");
        log.lines()
            .filter(|l| l.contains("msg=\"response completed\""))
            .filter(|l| l.contains("http.request.method=GET") && l.contains(&uri))
            .count()
    }

    /// The registry's copy of a blob.
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// Whether the registry and skopeo are installed; says why not when not.
fn have_tools() -> bool {
    for tool in ["docker-registry", "skopeo"] {
        if !have(tool) {
            return skip::<()>(&format!(
                "{tool} is not installed (apt-get install docker-registry skopeo)"
            ))
            .is_some();
        }
    }
    true
}

/// An empty folder for one registry's config, storage and log.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "burrow-registry-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("storage")).unwrap();
    dir
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[track_caller]
pub(crate) fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("start a helper program");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image layout holding the busybox rootfs as one gzip layer, with
/// one manifest per architecture (an index when there are several).
pub(crate) struct Layout {
    dir: tempfile::TempDir,
    layer_digest: String,
}

impl Layout {
    pub(crate) fn busybox(architectures: &[&str]) -> Option<Layout> {
        let tar = match busybox_tar() {
            Ok(t) => fs::read(t).unwrap(),
            Err(reason) => return skip(&reason),
        };
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let digest = sha256(bytes);
            fs::write(blobs.join(&digest[7..]), bytes).unwrap();
            serde_json::json!({"digest": digest, "size": bytes.len()})
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let layer = put(&gz.finish().unwrap());
        let diff_id = sha256(&tar);
        let mut manifests = Vec::new();
        for arch in architectures {
            let config = serde_json::json!({
                "architecture": arch, "os": "linux",
                "config": {"Cmd": ["/bin/sh"], "Env": [format!("ARCH={arch}")]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            });
            let config = put(config.to_string().as_bytes());
            let manifest = serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config["digest"], "size": config["size"]},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": layer["digest"], "size": layer["size"]}],
            });
            let m = put(manifest.to_string().as_bytes());
            manifests.push(serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": m["digest"], "size": m["size"],
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let top = if manifests.len() == 1 {
            manifests.remove(0)
        } else {
            let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
            let i = put(index.to_string().as_bytes());
            serde_json::json!({"mediaType": OCI_INDEX, "digest": i["digest"], "size": i["size"]})
        };
        let mut top = top;
        top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "latest"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Some(Layout {
            layer_digest: layer["digest"].as_str().unwrap().to_string(),
            dir,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The `Digest: sha256:...` line of a pull.
fn printed_digest(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no Digest: line in\n{stdout}"))
        .trim()
        .to_string()
}

/// Files and folders directly inside `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pull_what_skopeo_pushed_then_run_it() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = Layout::busybox(&["amd64"]) else {
        return;
    };
    reg.skopeo_push(layout.path(), "library/busybox:1", None);
    let env = setup!(Env::empty());
    let reference = reg.name("library/busybox:1");

    let out = env.burrow(["pull", &reference]).success();
    let short = &layout.layer_digest[7..19];
    assert!(
        out.stdout.contains(&format!("{short}: Pull complete")),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {reference}")),
        "{}",
        out.describe()
    );
    let digest = printed_digest(&out.stdout);
    assert_eq!(out.lines().last().copied(), Some(reference.as_str()));

    let again = env.burrow(["pull", &reference]).success();
    assert!(
        again.stdout.contains(&format!("{short}: Already exists"))
            && again.stdout.contains("Status: Image is up to date"),
        "{}",
        again.describe()
    );
    let quiet = env.burrow(["pull", "-q", &reference]).success();
    assert_eq!(quiet.lines(), vec![reference.as_str()]);

    let images = env.ok(["images", "--digests"]);
    assert!(images.contains(&digest), "{images}");
    // The layout's config gives no creation time.
    let created = env.ok(["images", "--format", "{{.CreatedSince}}"]);
    assert_eq!(created.trim(), "N/A");
    let by_digest = format!("{}@{digest}", reg.name("library/busybox"));
    let out = env
        .burrow(["run", "--rm", &by_digest, "echo", "pulled-and-ran"])
        .success();
    assert_eq!(out.stdout.trim(), "pulled-and-ran");
    // The same layer, already unpacked, serves a second repository.
    reg.skopeo_push(layout.path(), "other/box:2", None);
    let out = env
        .burrow([
            "run",
            "--rm",
            &reg.name("other/box:2"),
            "sh",
            "-c",
            "echo $ARCH",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "amd64");
    assert!(
        out.stderr.contains(&format!(
            "Unable to find image '{}' locally",
            reg.name("other/box:2")
        )) && out.stderr.contains("Already exists"),
        "{}",
        out.describe()
    );
}

#[test]
fn push_round_trips_through_skopeo_and_back() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let env = setup!(Env::new());
    let target = reg.name("team/app:1");
    env.ok(["tag", "busybox", &target]);
    let out = env.burrow(["push", &target]).success();
    assert!(out.stdout.contains(": Pushed"), "{}", out.describe());
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("1: digest: "))
        .unwrap_or_else(|| panic!("no digest line\n{}", out.describe()))
        .to_string();
    let digest = line.split_whitespace().nth(2).unwrap().to_string();

    // A second push finds the blobs; a push to another repository mounts them.
    let again = env.burrow(["push", &target]).success();
    assert!(
        again.stdout.contains("Layer already exists") && again.stdout.contains(&digest),
        "{}",
        again.describe()
    );
    let other = reg.name("team/copy:1");
    env.ok(["tag", "busybox", &other]);
    let mounted = env.burrow(["push", &other]).success();
    assert!(
        mounted.stdout.contains("Mounted from team/app"),
        "{}",
        mounted.describe()
    );

    // skopeo reads what burrow pushed and checks every digest while copying.
    let inspect = run_ok({
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{target}"));
        c
    });
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], digest.as_str(), "{inspect}");
    let copy = tempfile::tempdir().unwrap();
    run_ok({
        let mut c = Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:x", copy.path().display()));
        c
    });

    // A fresh store pulls it back and runs it.
    let fresh = setup!(Env::empty());
    let out = fresh
        .burrow(["run", "--rm", &target, "cat", "/etc/group"])
        .success();
    assert!(out.stdout.contains("root:x:0:"), "{}", out.describe());
}

#[test]
fn corrupt_blob_fails_the_pull_and_leaves_no_trace() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = Layout::busybox(&["amd64"]) else {
        return;
    };
    reg.skopeo_push(layout.path(), "bad:1", None);
    let blob = reg.blob_path(&layout.layer_digest);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    fs::write(&blob, bytes).unwrap();

    let env = setup!(Env::empty());
    let out = env.burrow(["pull", &reg.name("bad:1")]).burrow_error();
    assert!(
        out.stderr.contains("digest mismatch") && out.stderr.contains(&reg.name("bad:1")),
        "{}",
        out.describe()
    );
    let images = env.data_dir().join("images");
    assert_eq!(entries(&images.join("layers")), Vec::<String>::new());
    assert_eq!(entries(&images.join("meta")), Vec::<String>::new());
    assert_eq!(entries(&images.join("blobs/sha256")), Vec::<String>::new());
    let scratch: Vec<String> = entries(&env.data_dir().join("tmp"))
        .into_iter()
        .filter(|n| n.starts_with("image-"))
        .collect();
    assert_eq!(scratch, Vec::<String>::new());
    assert!(env.ok(["images", "-q"]).trim().is_empty());
}

#[test]
fn unknown_tags_and_unreachable_registries_are_clear_errors() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let env = setup!(Env::empty());
    let out = env
        .burrow(["pull", &reg.name("nothing:here")])
        .burrow_error();
    assert!(
        out.stderr.contains(&format!(
            "{} not found: manifest unknown",
            reg.name("nothing:here")
        )),
        "{}",
        out.describe()
    );
    // A port nothing listens on: bind one, note it, close it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = env
        .burrow(["pull", &format!("127.0.0.1:{port}/x:1")])
        .burrow_error();
    assert!(
        out.stderr
            .contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{}",
        out.describe()
    );
    let out = env
        .burrow(["pull", "--platform", "linux", &reg.name("x:1")])
        .burrow_error();
    assert!(
        out.stderr.contains("invalid platform"),
        "{}",
        out.describe()
    );
}

#[test]
fn platform_is_chosen_from_an_index() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = Layout::busybox(&["amd64", "arm64"]) else {
        return;
    };
    reg.skopeo_push(layout.path(), "multi:1", None);
    let env = setup!(Env::empty());
    let reference = reg.name("multi:1");
    env.burrow(["pull", "--platform", "linux/arm64", &reference])
        .success();
    let arm = env.ok(["images", "-q"]);
    env.burrow(["pull", "--platform", "linux/amd64", &reference])
        .success();
    let both = env.ok(["images", "-q"]);
    assert_eq!(both.lines().count(), 2, "{both}");
    assert!(both.contains(arm.trim()));
    let out = env
        .burrow(["pull", "--platform", "linux/s390x", &reference])
        .burrow_error();
    assert!(
        out.stderr.contains("no image for platform linux/s390x")
            && out.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        out.describe()
    );
    let search = env.ok(["search", &reg.name("mul")]);
    assert!(search.starts_with("NAME"), "{search}");
    assert!(search.contains(&reg.name("multi")), "{search}");
}

#[test]
fn basic_auth_needs_login() {
    let Some(reg) = Registry::start(&[("burrow", "s3cret")]) else {
        return;
    };
    let Some(layout) = Layout::busybox(&["amd64"]) else {
        return;
    };
    reg.skopeo_push(layout.path(), "private:1", Some("burrow:s3cret"));
    let env = setup!(Env::empty());
    let reference = reg.name("private:1");

    let out = env.burrow(["pull", &reference]).burrow_error();
    assert!(
        out.stderr.contains("unauthorized") && out.stderr.contains("burrow login"),
        "{}",
        out.describe()
    );
    let out = env
        .burrow_with_stdin(
            ["login", &reg.host, "-u", "burrow", "--password-stdin"],
            b"wrong\n",
        )
        .burrow_error();
    assert!(
        out.stderr.contains("incorrect username or password"),
        "{}",
        out.describe()
    );
    let out = env
        .burrow_with_stdin(
            ["login", &reg.host, "-u", "burrow", "--password-stdin"],
            b"s3cret\n",
        )
        .success();
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.describe());
    let auth = fs::read_to_string(env.home().join(".config/burrow/auth.json")).unwrap();
    assert!(auth.contains(&reg.host), "{auth}");

    env.burrow(["pull", &reference]).success();
    env.ok(["tag", &reference, &reg.name("private:2")]);
    env.burrow(["push", &reg.name("private:2")]).success();

    let out = env.burrow(["logout", &reg.host]).success();
    assert!(
        out.stdout.contains("Removing login credentials"),
        "{}",
        out.describe()
    );
    env.burrow(["pull", &reg.name("private:2")]).burrow_error();
}

/// An OCI layout being written: blobs by digest, then one image named
/// `latest` in `index.json`.
pub(crate) struct LayoutDir(tempfile::TempDir);

impl LayoutDir {
    pub(crate) fn new() -> LayoutDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        LayoutDir(dir)
    }

    /// Stores a blob; returns `{"digest", "size"}`.
    pub(crate) fn put(&self, bytes: &[u8]) -> serde_json::Value {
        let digest = sha256(bytes);
        fs::write(self.0.path().join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        serde_json::json!({"digest": digest, "size": bytes.len()})
    }

    /// Writes `config` and a manifest of `layers` (descriptors), names the
    /// manifest `latest` and returns the finished layout.
    pub(crate) fn image(
        self,
        config: serde_json::Value,
        layers: Vec<serde_json::Value>,
    ) -> tempfile::TempDir {
        let config = self.put(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config["digest"], "size": config["size"]},
            "layers": layers,
        });
        let m = self.put(manifest.to_string().as_bytes());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": m["digest"], "size": m["size"],
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }]});
        fs::write(self.0.path().join("index.json"), index.to_string()).unwrap();
        fs::write(
            self.0.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        self.0
    }
}

/// An OCI layout with the busybox rootfs (gzip) and a layer of `size` random
/// bytes in one file, `/big`, left uncompressed so it cannot shrink.
pub(crate) fn layout_with_big_layer(size: usize) -> Option<tempfile::TempDir> {
    let rootfs = match busybox_tar() {
        Ok(t) => fs::read(t).unwrap(),
        Err(reason) => return skip(&reason),
    };
    let layout = LayoutDir::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&rootfs).unwrap();
    let base = layout.put(&gz.finish().unwrap());
    let mut random = vec![0u8; size];
    getrandom::fill(&mut random).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut h, "big", &random[..]).unwrap();
    let big_tar = builder.into_inner().unwrap();
    let big = layout.put(&big_tar);
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&rootfs), sha256(&big_tar)]},
    });
    let layers = vec![
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": base["digest"], "size": base["size"]}),
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": big["digest"], "size": big["size"]}),
    ];
    Some(layout.image(config, layers))
}

pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn a_pull_killed_midway_leaves_nothing_the_next_pull_trips_on() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = layout_with_big_layer(48 << 20) else {
        return;
    };
    reg.skopeo_push(layout.path(), "big:1", None);
    let env = setup!(Env::empty());
    let reference = reg.name("big:1");
    let mut pull = env.spawn(["pull", &reference]);
    // Kill it once a layer is partly on disk.
    wait_for_download(&env, &mut pull, 1 << 20);
    pull.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = pull.finish(Duration::from_secs(10));
    assert_eq!(killed.code, 128 + 9, "{}", killed.describe());
    let images = env.data_dir().join("images");
    assert!(entries(&images.join("meta")).is_empty());
    // The killed pull's scratch is still there, for the next pull to clear.
    assert!(downloaded(&env) > 0);
    let tmp = env.data_dir().join("tmp");

    let out = env.burrow(["pull", &reference]).success();
    assert!(
        out.stdout.contains("Status: Downloaded newer image"),
        "{}",
        out.describe()
    );
    let scratch: Vec<String> = entries(&tmp)
        .into_iter()
        .filter(|n| n.starts_with("image-"))
        .collect();
    assert_eq!(
        scratch,
        Vec::<String>::new(),
        "the killed pull's scratch remains"
    );
    assert_eq!(entries(&images.join("layers")).len(), 2);
    let out = env
        .burrow(["run", "--rm", &reference, "wc", "-c", "/big"])
        .success();
    assert_eq!(out.stdout.split_whitespace().next(), Some("50331648"));
}

/// A blob of the OCI layout in `dir`.
fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap()
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The manifest that the layout's first index entry (`latest`) names.
fn layout_manifest(dir: &Path) -> serde_json::Value {
    let index = json_file(&dir.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    serde_json::from_slice(&layout_blob(dir, digest)).unwrap()
}

/// The layer digests of the image `name` as the registry holds it (skopeo
/// compresses the layout's uncompressed layers as it pushes them).
fn registry_layers(reg: &Registry, name: &str) -> Vec<String> {
    let mut inspect = Command::new("skopeo");
    inspect
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", reg.name(name)));
    let manifest: serde_json::Value = serde_json::from_str(&run_ok(inspect)).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Adds a second image to the layout, named `variant`: the same layers
/// under a config of its own (one more Env entry), so another image id.
fn add_variant(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut manifest = layout_manifest(dir);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&layout_blob(dir, &config_digest)).unwrap();
    config["config"]["Env"] = serde_json::json!(["VARIANT=1"]);
    let (digest, size) = put(config.to_string().as_bytes());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put(manifest.to_string().as_bytes());
    let mut index = json_file(&dir.join("index.json"));
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "variant"},
        }));
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

#[test]
fn concurrent_pulls_of_images_sharing_layers_fetch_each_layer_once() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = layout_with_big_layer(48 << 20) else {
        return;
    };
    add_variant(layout.path());
    reg.skopeo_push(layout.path(), "one:1", None);
    let mut push = Command::new("skopeo");
    push.args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:variant", layout.path().display()))
        .arg(format!("docker://{}", reg.name("two:1")));
    run_ok(push);
    let layers = registry_layers(&reg, "one:1");
    assert_eq!(layers, registry_layers(&reg, "two:1"));
    for layer in &layers {
        assert_eq!(reg.blob_gets(layer), 0, "skopeo's push fetched {layer}");
    }
    let env = setup!(Env::empty());
    let (one, two) = (reg.name("one:1"), reg.name("two:1"));

    // Both start at once: the second finds the first's claim on each layer,
    // waits, and uses what the first fetched.
    let first = env.spawn(["pull", &one]);
    let second = env.spawn(["pull", &two]);
    let first = first.finish(Duration::from_secs(120)).success();
    let second = second.finish(Duration::from_secs(120)).success();
    for layer in &layers {
        assert_eq!(
            reg.blob_gets(layer),
            1,
            "layer {layer} was not fetched exactly once:\n{}\n{}",
            first.describe(),
            second.describe()
        );
    }
    let both = format!("{}{}", first.stdout, second.stdout);
    assert!(
        both.contains("Waiting for another pull of this layer"),
        "the pulls did not overlap, so the test proved nothing:\n{both}"
    );
    let images = env.data_dir().join("images");
    assert_eq!(entries(&images.join("layers")).len(), 2);
    assert_eq!(entries(&images.join("locks")), Vec::<String>::new());
    for (image, env_var) in [(&one, ""), (&two, "VARIANT=1")] {
        let out = env
            .burrow(["run", "--rm", image, "sh", "-c", "wc -c /big; env"])
            .success();
        assert!(out.stdout.contains("50331648 /big"), "{}", out.describe());
        assert!(out.stdout.contains(env_var), "{}", out.describe());
    }
}

#[test]
fn a_killed_pull_does_not_block_a_pull_waiting_for_its_layer() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = layout_with_big_layer(48 << 20) else {
        return;
    };
    reg.skopeo_push(layout.path(), "big:1", None);
    let big = registry_layers(&reg, "big:1").pop().unwrap();
    let env = setup!(Env::empty());
    let reference = reg.name("big:1");

    let mut first = env.spawn(["pull", &reference]);
    // More than the busybox layer holds: the first pull is fetching the big
    // layer, so it holds that layer's claim.
    wait_for_download(&env, &mut first, 4 << 20);
    let short = &big[7..19];
    let mut second = env.spawn(["pull", &reference]);
    second.wait_for_stdout(
        &format!("{short}: Waiting for another pull of this layer"),
        Duration::from_secs(60),
    );
    assert!(
        first.is_running(),
        "the first pull ended before it could be killed:\n{}",
        first.stdout_so_far()
    );
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = first.finish(Duration::from_secs(10));
    assert_eq!(killed.code, 128 + 9, "{}", killed.describe());

    // The kernel dropped the dead pull's flock; the waiter takes the layer over.
    let second = second.finish(Duration::from_secs(120)).success();
    assert!(
        second.stdout.contains(&format!("{short}: Pull complete")),
        "{}",
        second.describe()
    );
    let out = env
        .burrow(["run", "--rm", &reference, "wc", "-c", "/big"])
        .success();
    assert_eq!(out.stdout.split_whitespace().next(), Some("50331648"));
}

/// Docker Hub's search API, served here as Hub answers it, behind
/// `hub_search_url`: the query burrow sends, Docker's columns, its JSON
/// keys, `--filter`, and a failing endpoint.
#[test]
fn hub_search_through_its_api() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, requests) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            reader.read_line(&mut line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let (status, body) = if line.contains("q=broken") {
                ("503 Service Unavailable", "{}".to_string())
            } else {
                let body = r#"{"num_pages":1,"num_results":3,"page":1,"query":"nginx","results":[
                    {"name":"nginx","description":"Official build of Nginx.","star_count":20913,"is_official":true,"is_automated":false},
                    {"name":"bitnami/nginx","description":"Bitnami container image for NGINX, a web server with a description far longer than forty-five characters","star_count":201,"is_official":false,"is_automated":false},
                    {"name":"someone/nginx-test","description":null,"star_count":0,"is_official":false}]}"#;
                ("200 OK", body.to_string())
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tx.send(line);
        }
    });
    let env = setup!(Env::empty());
    let config = env.home().join(".config/burrow");
    env.host(
        "sh",
        [
            "-c",
            &format!(
                "mkdir -p '{0}' && echo 'hub_search_url = \"http://127.0.0.1:{port}/v1/search\"' > '{0}/config.toml'",
                config.display()
            ),
        ],
    )
    .success();

    let table = env.ok(["search", "nginx"]);
    let request = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        request.starts_with("GET /v1/search?")
            && request.contains("q=nginx")
            && request.contains("n=25"),
        "{request}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for column in ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].starts_with("nginx ") && lines[1].contains("20913") && lines[1].contains("[OK]")
    );
    assert!(lines[2].starts_with("bitnami/nginx ") && !lines[2].contains("[OK]"));

    let json = env.ok(["search", "--format", "json", "--limit", "2", "nginx"]);
    let request = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(request.contains("n=2"), "{request}");
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[0]["Name"], "nginx");
    assert_eq!(rows[0]["StarCount"], "20913");
    assert_eq!(rows[0]["IsOfficial"], "true");
    assert_eq!(
        rows[1]["Description"].as_str().unwrap().len(),
        104,
        "--format json does not truncate"
    );

    let filtered = env.ok([
        "search",
        "--filter",
        "stars=100",
        "--filter",
        "is-official=false",
        "nginx",
    ]);
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    assert!(filtered.contains("bitnami/nginx"), "{filtered}");

    let out = env.burrow(["search", "broken"]).burrow_error();
    assert!(
        out.stderr.contains("search API") && out.stderr.contains("503"),
        "{}",
        out.describe()
    );
    let out = env
        .burrow(["search", "--filter", "stars=lots", "nginx"])
        .burrow_error();
    assert!(
        out.stderr.contains("stars must be a number"),
        "{}",
        out.describe()
    );
}

/// The most bytes of a blob that a pull in progress has on disk (in its
/// `tmp/image-pull-*` scratch).
fn downloaded(env: &Env) -> u64 {
    let tmp = env.data_dir().join("tmp");
    entries(&tmp)
        .iter()
        .filter(|n| n.starts_with("image-pull-"))
        .filter_map(|n| fs::metadata(tmp.join(n).join("blob")).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Waits until the running `pull` has at least `bytes` of a blob on disk.
fn wait_for_download(env: &Env, pull: &mut crate::util::Running, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while downloaded(env) < bytes {
        assert!(
            pull.is_running(),
            "the pull ended before {bytes} bytes were on disk:\n{}",
            pull.stdout_so_far()
        );
        assert!(Instant::now() < deadline, "the download never started");
        thread::sleep(Duration::from_millis(2));
    }
}
