//! `save` and `load`: burrow's archives read back by burrow, by `skopeo`
//! (which checks every digest while copying) and by `podman load`; archives
//! written by skopeo and podman loaded by burrow; corrupt archives refused
//! with nothing left behind.
//!
//! skopeo is installed by `scripts/setup-host.sh`; without it the tests print
//! `skipped: <reason>` unless `BURROW_TEST_MUST_RUN=1`. podman is optional:
//! its round trip runs where it is installed and is reported as skipped
//! elsewhere, since the skopeo checks already cover an independent reader.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use crate::util::{Env, must_run};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn have(program: &str) -> bool {
    PATH.split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

fn skip<T>(reason: &str) -> Option<T> {
    if must_run() {
        panic!("cannot run here: {reason} (BURROW_TEST_MUST_RUN=1 forbids skipping)");
    }
    let name = thread::current().name().unwrap_or("unnamed").to_string();
    let _ = writeln!(std::io::stderr(), "skipped: {name}: {reason}");
    None
}

fn need_skopeo() -> Option<()> {
    if have("skopeo") {
        Some(())
    } else {
        skip("skopeo is not installed (apt-get install skopeo)")
    }
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
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

/// Saves `busybox` from `env` in `format` to a file in its folder.
fn save(env: &Env, format: &str) -> PathBuf {
    let path = env.dir.join(format!("busybox-{format}.tar"));
    let out = env.burrow([
        "save",
        "--format",
        format,
        "-o",
        path.to_str().unwrap(),
        "busybox",
    ]);
    out.success();
    path
}

/// Files and folders directly inside `dir`.
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The store of `env` holds nothing: no image, layer, blob or scratch.
#[track_caller]
fn assert_empty_store(env: &Env) {
    let images = env.data_dir().join("images");
    for sub in ["layers", "meta", "blobs/sha256"] {
        assert_eq!(entries(&images.join(sub)), Vec::<String>::new(), "{sub}");
    }
    let scratch: Vec<String> = entries(&env.data_dir().join("tmp"))
        .into_iter()
        .filter(|n| n.starts_with("image-"))
        .collect();
    assert_eq!(scratch, Vec::<String>::new());
}

#[test]
fn save_then_load_into_a_fresh_store_and_run_both_formats() {
    let env = setup!(Env::new());
    let mut ids = Vec::new();
    for format in ["docker-archive", "oci-archive"] {
        let archive = save(&env, format);
        let fresh = setup!(Env::empty());
        let out = fresh
            .burrow(["load", "-i", archive.to_str().unwrap()])
            .success();
        assert_eq!(out.stdout, "Loaded image: busybox:latest\n", "{format}");
        // Both formats carry the same config bytes, so the same image id.
        ids.push(fresh.ok(["images", "-q", "--no-trunc"]));
        let out = fresh
            .burrow(["run", "--rm", "busybox", "echo", "loaded"])
            .success();
        assert_eq!(out.stdout.trim(), "loaded");
        // Loading again changes nothing, and stdin works, gzip'd too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&fs::read(&archive).unwrap()).unwrap();
        let out = fresh
            .burrow_with_stdin(["load"], &gz.finish().unwrap())
            .success();
        assert_eq!(out.stdout, "Loaded image: busybox:latest\n");
        assert_eq!(fresh.ok(["images", "-q"]).lines().count(), 1);
    }
    assert_eq!(ids[0], ids[1]);
    // An unknown image names itself; an unknown format is refused.
    let out = env
        .burrow(["save", "-o", "/dev/null", "nosuch:1"])
        .burrow_error();
    assert!(out.stderr.contains("nosuch:1"), "{}", out.describe());
    let out = env
        .burrow(["save", "--format", "zip", "busybox"])
        .burrow_error();
    assert!(
        out.stderr.contains("unknown archive format"),
        "{}",
        out.describe()
    );
}

#[test]
fn skopeo_reads_what_burrow_saves() {
    let Some(()) = need_skopeo() else {
        return;
    };
    let env = setup!(Env::new());
    let docker = save(&env, "docker-archive");
    let oci = save(&env, "oci-archive");
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker.display())),
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Architecture"], host_arch(), "{inspect}");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{inspect}");
    // `copy` reads every blob and checks it against its digest.
    for source in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}", oci.display()),
    ] {
        let dest = tempfile::tempdir().unwrap();
        run_ok(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", &source])
                .arg(format!("oci:{}:x", dest.path().display())),
        );
    }
}

/// The host architecture as image configs spell it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn load_what_skopeo_writes_zstd_oci_archive() {
    let Some(()) = need_skopeo() else {
        return;
    };
    let env = setup!(Env::new());
    let docker = save(&env, "docker-archive");
    let layout = tempfile::tempdir().unwrap();
    // skopeo recompresses the layer as zstd on its way into an OCI layout,
    // then packs the layout as an oci-archive named only by a tag.
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--dest-compress-format",
                "zstd",
            ])
            .arg(format!("docker-archive:{}", docker.display()))
            .arg(format!("oci:{}:latest", layout.path().display())),
    );
    let archive = env.dir.join("skopeo-oci.tar");
    run_ok(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy"])
            .arg(format!("oci:{}:latest", layout.path().display()))
            .arg(format!("oci-archive:{}", archive.display())),
    );
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();

    let fresh = setup!(Env::empty());
    let out = fresh
        .burrow(["load", "-i", archive.to_str().unwrap()])
        .success();
    // A bare tag names no repository: Docker loads such an image untagged.
    let id = out
        .stdout
        .trim()
        .strip_prefix("Loaded image ID: sha256:")
        .unwrap_or_else(|| panic!("{}", out.describe()))
        .to_string();
    let out = fresh
        .burrow(["run", "--rm", &id[..12], "echo", "from-skopeo"])
        .success();
    assert_eq!(out.stdout.trim(), "from-skopeo");
    // The zstd blob is kept, and saved again as it came.
    fresh.ok(["tag", &id[..12], "zbox:1"]);
    let again = fresh.dir.join("again.tar");
    fresh.ok([
        "save",
        "--format",
        "oci-archive",
        "-o",
        again.to_str().unwrap(),
        "zbox:1",
    ]);
    let listing = run_ok(Command::new("tar").arg("xOf").arg(&again).arg("index.json"));
    let index: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = run_ok(
        Command::new("tar")
            .arg("xOf")
            .arg(&again)
            .arg(format!("blobs/sha256/{}", &manifest[7..])),
    );
    assert!(manifest.contains("tar+zstd"), "{manifest}");
}

#[test]
fn podman_round_trip() {
    if !have("podman") {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: podman_round_trip: podman is not installed (the skopeo tests cover an independent reader)"
        );
        return;
    }
    let env = setup!(Env::new());
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            env.dir.join("podman-root").display().to_string(),
            "--runroot".to_string(),
            env.dir.join("podman-run").display().to_string(),
            "--storage-driver".to_string(),
            "vfs".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        env.host("/usr/bin/podman", &all)
    };
    for format in ["docker-archive", "oci-archive"] {
        let archive = save(&env, format);
        let out = podman(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}", out.describe());
        assert!(out.stdout.contains("busybox:latest"), "{}", out.describe());
    }
    // And back: what podman saves, burrow loads and runs.
    let back = env.dir.join("from-podman.tar");
    let out = podman(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        back.to_str().unwrap(),
        "docker.io/library/busybox:latest",
    ]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let fresh = setup!(Env::empty());
    let out = fresh
        .burrow(["load", "-i", back.to_str().unwrap()])
        .success();
    assert!(
        out.stdout.contains("Loaded image: busybox:latest"),
        "{}",
        out.describe()
    );
    let out = fresh
        .burrow(["run", "--rm", "busybox", "echo", "from-podman"])
        .success();
    assert_eq!(out.stdout.trim(), "from-podman");
    // podman's storage holds files of the user's subordinate ids.
    let _ = podman(&["system", "reset", "--force"]);
}

#[test]
fn corrupt_and_foreign_archives_are_refused_without_a_trace() {
    let env = setup!(Env::new());
    let good = fs::read(save(&env, "docker-archive")).unwrap();
    // Flip bytes in the middle of the layer file's content.
    let mut archive = tar::Archive::new(&good[..]);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let name = entry.path().unwrap().into_owned();
        if name.extension().is_some_and(|e| e == "tar") {
            let at = data.len() / 2;
            data[at..at + 16].copy_from_slice(b"corrupted-bytes!");
        }
        let mut header = entry.header().clone();
        builder.append_data(&mut header, &name, &data[..]).unwrap();
    }
    let bad = builder.into_inner().unwrap();

    let fresh = setup!(Env::empty());
    let out = fresh.burrow_with_stdin(["load"], &bad).burrow_error();
    assert!(
        out.stderr.contains("corrupt") && out.stderr.contains("diff_id"),
        "{}",
        out.describe()
    );
    assert_empty_store(&fresh);
    let out = fresh
        .burrow_with_stdin(["load"], b"this is not a tarball at all")
        .burrow_error();
    assert!(out.stderr.contains("archive"), "{}", out.describe());
    let rootfs = fs::read(env.busybox_tar()).unwrap();
    let out = fresh.burrow_with_stdin(["load"], &rootfs).burrow_error();
    assert!(
        out.stderr.contains("neither manifest.json"),
        "{}",
        out.describe()
    );
    assert_empty_store(&fresh);
}

#[test]
fn rmi_removes_the_blobs_and_records_only_the_image_used() {
    let env = setup!(Env::new());
    let archive = save(&env, "oci-archive");
    let fresh = setup!(Env::empty());
    fresh.ok(["load", "-i", archive.to_str().unwrap()]);
    let images = fresh.data_dir().join("images");
    let blobs = entries(&images.join("blobs/sha256"));
    // The config and the gzip layer blob, kept for push and save.
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    let registry = fs::read_to_string(images.join("registry.json")).unwrap();
    assert!(registry.contains("tar+gzip"), "{registry}");
    fresh.ok(["tag", "busybox", "copy:1"]);
    fresh.ok(["rmi", "busybox"]);
    assert_eq!(entries(&images.join("blobs/sha256")).len(), 2);
    fresh.ok(["rmi", "copy:1"]);
    assert_empty_store(&fresh);
    let registry: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(images.join("registry.json")).unwrap()).unwrap();
    assert_eq!(registry["layers"], serde_json::json!({}), "{registry}");
}
