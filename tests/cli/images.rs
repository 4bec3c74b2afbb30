//! `import`, `images`, `tag`, `rmi`, and images by id.

use crate::util::{Env, is_full_id};

#[test]
fn import_prints_the_image_id() {
    let env = setup!(Env::empty());
    let out = env
        .burrow([
            "import".as_ref(),
            env.busybox_tar().as_os_str(),
            "busybox".as_ref(),
        ])
        .success();
    let id = out.stdout.trim();
    let hex = id
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("import must print sha256:<id>\n{}", out.describe()));
    assert!(is_full_id(hex), "{}", out.describe());
}

#[test]
fn import_reads_standard_input() {
    let env = setup!(Env::empty());
    let tar = std::fs::read(env.busybox_tar()).unwrap();
    env.burrow_with_stdin(["import", "-", "piped:v1"], &tar)
        .success();
    let images = env.ok(["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("piped ") && l.contains(" v1 ")),
        "{images}"
    );
    env.ok(["run", "--rm", "piped:v1", "true"]);
}

#[test]
fn import_of_a_missing_file_fails() {
    let env = setup!(Env::empty());
    let out = env
        .burrow(["import", "/nonexistent/rootfs.tar", "x"])
        .burrow_error();
    assert!(
        out.stderr.contains("/nonexistent/rootfs.tar"),
        "{}",
        out.describe()
    );
}

#[test]
fn images_lists_tags_ids_and_json() {
    let env = setup!(Env::new());
    let table = env.ok(["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let row = lines.next().unwrap_or_default();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"busybox"), "{table}");
    assert_eq!(fields.get(1), Some(&"latest"), "{table}");

    let quiet = env.ok(["images", "-q"]);
    let ids: Vec<&str> = quiet.lines().collect();
    assert_eq!(ids.len(), 1, "{quiet}");
    assert_eq!(ids[0].len(), 12, "images -q prints short ids: {quiet}");
    assert!(fields.get(2).is_some_and(|f| f == &ids[0]), "{table}");

    let json = env.ok(["images", "--format", "json"]);
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs.len(), 1, "{json}");
    assert_eq!(objs[0]["Repository"], "busybox", "{json}");
    assert_eq!(objs[0]["Tag"], "latest", "{json}");
    assert!(
        objs[0]["ID"].as_str().is_some_and(|id| id.contains(ids[0])),
        "{json}"
    );
}

#[test]
fn tag_adds_a_name_and_rmi_removes_it() {
    let env = setup!(Env::new());
    env.ok(["tag", "busybox", "mybox:1"]);
    let json = env.ok(["images", "--format", "json"]);
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2, "{json}");
    assert_eq!(
        objs[0]["ID"], objs[1]["ID"],
        "a tag names the same image: {json}"
    );
    env.ok(["run", "--rm", "mybox:1", "true"]);

    let out = env.ok(["rmi", "mybox:1"]);
    assert!(out.contains("Untagged: mybox:1"), "{out}");
    let images = env.ok(["images"]);
    assert!(!images.contains("mybox"), "{images}");
    assert!(
        images.contains("busybox"),
        "removing one tag keeps the other: {images}"
    );

    let out = env.ok(["rmi", "busybox"]);
    assert!(
        out.contains("Deleted: sha256:"),
        "removing the last tag deletes the image: {out}"
    );
    assert_eq!(env.ok(["images", "-q"]).trim(), "");
}

#[test]
fn rmi_of_an_unknown_image_fails() {
    let env = setup!(Env::new());
    env.burrow(["rmi", "nosuchimage"]).burrow_error();
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let env = setup!(Env::new());
    env.ok(["create", "--name", "user-of-image", "busybox", "true"]);
    let out = env.burrow(["rmi", "busybox"]).burrow_error();
    assert!(
        out.stderr.contains("container"),
        "the refusal names the reason\n{}",
        out.describe()
    );
    assert!(env.ok(["images"]).contains("busybox"));
    // -f removes the name; the container keeps working.
    env.ok(["rmi", "-f", "busybox"]);
    assert!(env.ok(["ps", "-a"]).contains("user-of-image"));
    env.ok(["start", "-a", "user-of-image"]);
}

#[test]
fn images_resolve_by_id_prefix() {
    let env = setup!(Env::new());
    let short = env.ok(["images", "-q"]).trim().to_string();
    env.ok(["run", "--rm", short.as_str(), "true"]);
    env.ok(["run", "--rm", &short[..6], "true"]);
    let image = env.ok(["inspect", "--type", "image", "busybox"]);
    let v: serde_json::Value = serde_json::from_str(&image).unwrap();
    assert!(
        v[0]["Id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("sha256:{short}"))),
        "{image}"
    );
    assert!(
        v[0]["RepoTags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "busybox:latest")),
        "{image}"
    );
}

#[test]
fn run_of_an_unknown_image_fails_with_125() {
    let env = setup!(Env::new());
    let out = env
        .burrow(["run", "--rm", "nosuchimage", "true"])
        .burrow_error();
    assert!(out.stderr.contains("nosuchimage"), "{}", out.describe());
}

#[test]
fn import_takes_gzip_compressed_tarballs() {
    let env = setup!(Env::empty());
    let gz = env.home().join("busybox.tar.gz");
    let script = format!(
        "gzip -c < {} > {}",
        env.busybox_tar().display(),
        gz.display()
    );
    env.host("sh", ["-c", &script]).success();
    let plain = env.ok([
        "import".as_ref(),
        env.busybox_tar().as_os_str(),
        "plain".as_ref(),
    ]);
    let zipped = env.ok(["import".as_ref(), gz.as_os_str(), "zipped".as_ref()]);
    let layers = |name: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(["inspect", "--type", "image", name])).unwrap();
        // Docker's key is Layers; the OCI config's is diff_ids.
        let rootfs = &v[0]["RootFS"];
        if rootfs["Layers"].is_null() {
            rootfs["diff_ids"].clone()
        } else {
            rootfs["Layers"].clone()
        }
    };
    assert!(plain.starts_with("sha256:") && zipped.starts_with("sha256:"));
    assert!(
        layers("plain").as_array().is_some_and(|l| l.len() == 1),
        "{}",
        layers("plain")
    );
    assert_eq!(
        layers("plain"),
        layers("zipped"),
        "a layer's diff_id is its uncompressed digest"
    );
    env.ok(["run", "--rm", "zipped", "true"]);
}

#[test]
fn image_prune_removes_dangling_then_unused_images() {
    let env = setup!(Env::new());
    let tar = env.busybox_tar();
    // The same layer again, under another config and no tag: dangling.
    let dangling = env.ok([
        "import".as_ref(),
        tar.as_os_str(),
        "-m".as_ref(),
        "second".as_ref(),
    ]);
    let out = env.burrow(["image", "prune", "-f"]).success();
    assert_eq!(
        out.stdout,
        format!(
            "Deleted Images:\ndeleted: {}\n\nTotal reclaimed space: 0B\n",
            dangling.trim()
        ),
        "the layer is shared, so nothing was reclaimed\n{}",
        out.describe()
    );
    env.ok(["tag", "busybox", "other:1"]);
    env.ok(["create", "--name", "user", "busybox", "true"]);
    let out = env.burrow(["image", "prune", "-a", "-f"]).success();
    assert_eq!(
        out.stdout,
        "Total reclaimed space: 0B\n",
        "{}",
        out.describe()
    );
    // Without -f it asks, and anything but yes keeps everything.
    let out = env
        .burrow_with_stdin(["image", "prune", "-a"], b"n\n")
        .success();
    assert!(out.stderr.contains("Are you sure"), "{}", out.describe());
    env.ok(["rm", "user"]);
    let out = env.burrow(["image", "prune", "-a", "-f"]).success();
    let lines = out.lines();
    assert_eq!(
        &lines[..3],
        [
            "Deleted Images:",
            "untagged: busybox:latest",
            "untagged: other:1"
        ],
        "{}",
        out.describe()
    );
    assert!(
        lines[3].starts_with("deleted: sha256:"),
        "{}",
        out.describe()
    );
    assert!(
        lines[4].starts_with("Total reclaimed space: ") && !lines[4].ends_with(" 0B"),
        "{}",
        out.describe()
    );
    assert!(env.ok(["image", "ls", "-q"]).trim().is_empty());
    let layers = env.data_dir().join("images/layers");
    assert_eq!(std::fs::read_dir(layers).unwrap().count(), 0);
}

#[test]
fn image_group_aliases_the_top_level_commands() {
    let env = setup!(Env::new());
    let ls = env.ok(["image", "ls"]);
    assert_eq!(ls, env.ok(["images"]));
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "inspect", "busybox"])).unwrap();
    assert_eq!(v[0]["RepoTags"][0], "busybox:latest");
    env.ok(["image", "tag", "busybox", "copy:1"]);
    let out = env.burrow(["image", "rm", "copy:1"]).success();
    assert_eq!(out.stdout, "Untagged: copy:1\n");
    env.burrow(["image", "inspect", "nosuch"]).burrow_error();
}

/// A rootfs tarball with `/home/u/f` and `/home/u` owned by 1000:1000.
fn tarball_with_owned_file(env: &Env) -> std::path::PathBuf {
    let base = std::fs::read(env.busybox_tar()).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&base[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
            let target = entry.link_name().unwrap().unwrap().into_owned();
            out.append_link(&mut header, &path, target).unwrap();
        } else {
            out.append_data(&mut header, &path, &data[..]).unwrap();
        }
    }
    for (path, kind, data) in [
        ("home/u/", tar::EntryType::Directory, &b""[..]),
        ("home/u/f", tar::EntryType::Regular, &b"hi\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(1000);
        h.set_mtime(1_000_000);
        h.set_gid(1000);
        out.append_data(&mut h, path, data).unwrap();
    }
    let path = env.dir.join("owned.tar");
    std::fs::write(&path, out.into_inner().unwrap()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path
}

#[test]
fn layers_keep_file_owners_with_a_subordinate_range() {
    let env = setup!(Env::with(crate::util::Account::Subuid, false));
    let tar = tarball_with_owned_file(&env);
    env.ok(["import".as_ref(), tar.as_os_str(), "owned".as_ref()]);
    let out = env
        .burrow(["run", "--rm", "owned", "ls", "-ln", "/home/u/f"])
        .success();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(&fields[2..4], ["1000", "1000"], "{}", out.describe());
    // On the host the file belongs to the user's subordinate id for 1000.
    let (start, _) = env.user.subuid.unwrap();
    let layers = env.data_dir().join("images/layers");
    let layer = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("home/u/f"))
        .find(|p| p.exists())
        .expect("the layer with /home/u/f");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&layer).unwrap().uid(), start + 999);
    // Removing the image removes those files too.
    env.ok(["rmi", "owned"]);
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
}

#[test]
fn layers_record_file_owners_in_xattrs_with_one_id() {
    let env = setup!(Env::with(crate::util::Account::SingleId, false));
    let tar = tarball_with_owned_file(&env);
    env.ok(["import".as_ref(), tar.as_os_str(), "owned".as_ref()]);
    let layers = env.data_dir().join("images/layers");
    let file = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("home/u/f"))
        .find(|p| p.exists())
        .expect("the layer with /home/u/f");
    // Read as the test user (python3 ships with Debian; scripts/bench uses it too).
    let out = env.host(
        "/usr/bin/python3",
        [
            "-c",
            &format!(
                "import os; print(os.getxattr('{}', 'user.burrow.owner').decode())",
                file.display()
            ),
        ],
    );
    assert_eq!(out.stdout.trim(), "1000:1000:644", "{}", out.describe());
}
