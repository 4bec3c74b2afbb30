//! File owners survive the trip out of the store: the layers `push` and
//! `save` write carry the owners the container sees (1000:1000, 0:0), not
//! the host's subordinate ids and not 0:0 for everything, in both id modes.
//! skopeo (a client no one here wrote) fetches what burrow pushed, and the
//! tar headers are read from its copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::registry::{Registry, run_ok};
use crate::util::{Account, Env};

/// Path → (uid, gid) over `layers` (plain, gzip or zstd tars), bottom
/// first, so an upper layer's entry wins.
fn owners(layers: &[Vec<u8>]) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for bytes in layers {
        let plain = match bytes.as_slice() {
            [0x1f, 0x8b, ..] => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            [0x28, 0xb5, 0x2f, 0xfd, ..] => zstd::decode_all(&bytes[..]).unwrap(),
            _ => bytes.clone(),
        };
        for entry in tar::Archive::new(&plain[..]).entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            out.insert(path, (h.uid().unwrap(), h.gid().unwrap()));
        }
    }
    out
}

/// The layers of the one image in an OCI layout folder, bottom first.
fn oci_layers(dir: &Path) -> Vec<Vec<u8>> {
    let blob = |digest: &str| fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()))
        .collect()
}

/// The layers of the one image in a docker-archive, bottom first.
fn docker_archive_layers(archive: &Path) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(fs::File::open(archive).unwrap())
        .unpack(dir.path())
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| fs::read(dir.path().join(l.as_str().unwrap())).unwrap())
        .collect()
}

/// skopeo's copy of `reference` as an OCI layout.
fn skopeo_fetch(reference: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    run_ok({
        let mut c = Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:x", copy.path().display()));
        c
    });
    copy
}

/// Saves `image` as a docker-archive in the test's folder.
fn save(env: &Env, image: &str) -> std::path::PathBuf {
    let path = env.home().join("saved.tar");
    env.ok(["save", "-o", path.to_str().unwrap(), image]);
    path
}

#[track_caller]
fn assert_owned(found: &BTreeMap<String, (u64, u64)>, want: &[(&str, (u64, u64))], what: &str) {
    for (path, ids) in want {
        assert_eq!(
            found.get(*path),
            Some(ids),
            "{what}: owner of {path}; all entries: {found:?}"
        );
    }
}

const WANT: [(&str, (u64, u64)); 4] = [
    ("f", (1000, 1000)),
    ("d/", (1000, 1001)),
    ("d/s", (1000, 1001)),
    ("r", (0, 0)),
];

const STAT: &str = "stat -c '%n %u:%g %a' /f /d /d/s /r";
const STAT_OUT: &str = "/f 1000:1000 644\n/d 1000:1001 700\n/d/s 1000:1001 600\n/r 0:0 644\n";

/// With a subordinate range: a build's `chown` (files on disk belong to
/// subuids, /d and /d/s unreadable to the user) comes out of push and save
/// as 1000:1000 and 0:0, and a fresh store that pulls it shows the same.
#[test]
fn owners_survive_build_push_save_and_pull_with_a_subuid_range() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let env = setup!(Env::subuid());
    let ctx = env.home().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN touch /f /r && chown 1000:1000 /f && mkdir /d && echo s > /d/s \
         && chown -R 1000:1001 /d && chmod 700 /d && chmod 600 /d/s\n",
    )
    .unwrap();
    env.ok(["build", "-t", "owned:1", ctx.to_str().unwrap()]);
    // The build's layer kept its owners in the store.
    let inside = env.ok(["run", "--rm", "owned:1", "sh", "-c", STAT]);
    assert_eq!(inside, STAT_OUT);

    let reference = reg.name("team/owned:1");
    env.ok(["tag", "owned:1", &reference]);
    env.burrow(["push", &reference]).success();
    let copy = skopeo_fetch(&reference);
    assert_owned(&owners(&oci_layers(copy.path())), &WANT, "pushed");

    let saved = save(&env, "owned:1");
    assert_owned(&owners(&docker_archive_layers(&saved)), &WANT, "saved");

    let fresh = setup!(Env::with(Account::Subuid, false));
    let inside = fresh.ok(["run", "--rm", &reference, "sh", "-c", STAT]);
    assert_eq!(inside, STAT_OUT);
}

/// A tar whose headers give owners: /f 1000:1000, /d and /d/s 1000:1001,
/// /r 0:0.
fn owned_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, ids: (u64, u64), body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, body).unwrap();
    };
    add("f", tar::EntryType::Regular, 0o644, (1000, 1000), b"f");
    add("d/", tar::EntryType::Directory, 0o700, (1000, 1001), b"");
    add("d/s", tar::EntryType::Regular, 0o600, (1000, 1001), b"s");
    add("r", tar::EntryType::Regular, 0o644, (0, 0), b"r");
    b.into_inner().unwrap()
}

/// With a subuid range a layer's mode-0700 folder belongs to a subordinate
/// id, which the user cannot read; `image prune` still counts the rest of
/// the layer (it reported 0B when one folder could not be read).
#[test]
fn prune_counts_a_layer_whose_folder_only_its_owner_can_read() {
    let env = setup!(Env::subuid());
    let mut tar = tar::Builder::new(Vec::new());
    let mut big = tar::Header::new_gnu();
    big.set_mode(0o644);
    big.set_size(50_000);
    tar.append_data(&mut big, "big", &[7u8; 50_000][..])
        .unwrap();
    let owned = owned_tar();
    let mut rest = tar::Archive::new(&owned[..]);
    for entry in rest.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        tar.append_data(&mut header, path, &mut entry).unwrap();
    }
    let path = env.home().join("owned.tar");
    fs::write(&path, tar.into_inner().unwrap()).unwrap();
    env.ok(["import", path.to_str().unwrap(), "owned:1"]);
    // Its layer alone in the store.
    env.ok(["rmi", "busybox"]);
    let unreadable = fs::read_dir(env.data_dir().join("images/layers"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().is_dir())
        .unwrap()
        .path()
        .join("d");
    let (user, folder) = (
        fs::metadata(env.data_dir()).unwrap(),
        fs::metadata(&unreadable).unwrap(),
    );
    assert!(
        folder.uid() != user.uid() && folder.mode() & 0o077 == 0,
        "{} should be a subordinate id's, closed to others",
        unreadable.display()
    );
    let out = env.burrow(["image", "prune", "-a", "-f"]).success();
    assert_eq!(
        out.lines().last().copied(),
        // big, f and r; not d/s, which only its owner can read.
        Some("Total reclaimed space: 50.002kB"),
        "{}",
        out.describe()
    );
}

/// With one id: owners live in `user.burrow.owner` xattrs, and push and
/// save read them back into the headers; a pull records them again.
#[test]
fn owners_survive_import_push_save_and_pull_with_one_id() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let env = setup!(Env::with(Account::SingleId, false));
    let tar = env.home().join("owned.tar");
    fs::write(&tar, owned_tar()).unwrap();
    env.ok(["import", tar.to_str().unwrap(), "owned:1"]);

    let reference = reg.name("team/owned:1");
    env.ok(["tag", "owned:1", &reference]);
    env.burrow(["push", &reference]).success();
    let copy = skopeo_fetch(&reference);
    assert_owned(&owners(&oci_layers(copy.path())), &WANT, "pushed");

    let saved = save(&env, "owned:1");
    assert_owned(&owners(&docker_archive_layers(&saved)), &WANT, "saved");

    // A fresh store records the pulled owners for its overlay to present.
    let fresh = setup!(Env::with(Account::SingleId, false));
    fresh.burrow(["pull", &reference]).success();
    let layers = fresh.data_dir().join("images/layers");
    let layer = fs::read_dir(&layers)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let recorded = |p: &str| {
        xattr::get(layer.join(p), "user.burrow.owner")
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(recorded("f").as_deref(), Some("1000:1000:644"));
    assert_eq!(recorded("d/s").as_deref(), Some("1000:1001:600"));
    assert_eq!(recorded("r"), None);
}

/// With one id, `COPY --chown` records the owner; a container that changes
/// the file and is committed keeps it (copy-up keeps the xattr), and save
/// writes it in both layers.
#[test]
fn a_commit_with_one_id_keeps_the_owner_of_a_changed_file() {
    let env = setup!(Env::single_id());
    let ctx = env.home().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("f"), "f\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY --chown=1000:1000 f /f\n",
    )
    .unwrap();
    env.ok(["build", "-t", "copied:1", ctx.to_str().unwrap()]);
    let saved = save(&env, "copied:1");
    let layers = docker_archive_layers(&saved);
    assert_owned(&owners(&layers), &[("f", (1000, 1000))], "copied");

    env.ok([
        "run",
        "--name",
        "changer",
        "--network",
        "none",
        "copied:1",
        "sh",
        "-c",
        "echo more >> /f",
    ]);
    env.ok(["commit", "changer", "changed:1"]);
    let saved = save(&env, "changed:1");
    let layers = docker_archive_layers(&saved);
    let top = owners(&layers[layers.len() - 1..]);
    assert_owned(&top, &[("f", (1000, 1000))], "committed");
}
