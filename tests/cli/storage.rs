//! The storage drivers: `overlay` (the kernel's, in the user namespace),
//! `fuse` (burrow's own overlay) and `vfs` (a copy) must agree on what a
//! container sees and keeps, and removal must leave nothing behind.

use crate::util::*;

const DRIVERS: [&str; 3] = ["overlay", "fuse", "vfs"];

/// A script whose output describes the copy-on-write rules: copy-up keeps
/// the lower file's data, whiteouts hide lower files, a re-created folder is
/// opaque, a folder of the image can be renamed, hard links survive.
const SCRIPT: &str = r#"
set -e
echo appended >> /etc/passwd; tail -n 1 /etc/passwd
rm /bin/ls; test ! -e /bin/ls && echo "ls gone"
rm -rf /var/www; mkdir /var/www; ls -A /var/www | wc -l
mv /home/user /home/moved; test -d /home/moved && test ! -e /home/user && echo renamed
echo one > /tmp/a; ln /tmp/a /tmp/b; echo two >> /tmp/b; cat /tmp/a
mkdir -p /data/x; chown 1000:1000 /data/x; stat -c '%u:%g %a' /data/x
"#;

#[test]
fn drivers_agree_and_keep_changes_until_rm() {
    let env = setup!(Env::subuid());
    let mut outputs = Vec::new();
    for driver in DRIVERS {
        let name = format!("cow-{driver}");
        let out = env.ok([
            "run",
            "--name",
            &name,
            "--network",
            "none",
            "--storage-driver",
            driver,
            "busybox",
            "sh",
            "-c",
            SCRIPT,
        ]);
        let info = env.inspect(&name);
        assert_eq!(info["Driver"], driver, "{info}");
        // Changes survive a stop and start of the same container: the
        // script's `rm /bin/ls` fails the second time.
        let again = env.burrow(["start", "-a", &name]).expect_code(1);
        assert!(
            again.stderr.contains("can't remove '/bin/ls'"),
            "{driver}: /bin/ls came back\n{}",
            again.describe()
        );
        // ...and a fresh container of the image sees none of them.
        let fresh = env.ok([
            "run",
            "--rm",
            "--network",
            "none",
            "--storage-driver",
            driver,
            "busybox",
            "sh",
            "-c",
            "test -e /bin/ls && test -d /home/user && tail -n 1 /etc/passwd",
        ]);
        assert!(!fresh.contains("appended"), "{driver}: {fresh}");
        env.ok(["rm", &name]);
        outputs.push((driver, out));
    }
    let (first, expected) = &outputs[0];
    assert!(
        expected.contains("ls gone") && expected.contains("renamed"),
        "{expected}"
    );
    assert!(
        expected.contains("one\ntwo"),
        "hard link copy-up lost: {expected}"
    );
    assert!(expected.contains("1000:1000 755"), "{expected}");
    for (driver, out) in &outputs[1..] {
        assert_eq!(out, expected, "{driver} disagrees with {first}");
    }
    // Nothing is left: no container folder (files owned by subordinate ids
    // included), no FUSE server.
    let left = std::fs::read_dir(env.data_dir().join("containers"))
        .map(|d| d.flatten().filter(|e| e.file_name().len() == 64).count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn unknown_or_unavailable_driver_is_a_clear_error() {
    let env = setup!(Env::new());
    let out = env
        .burrow(["run", "--rm", "--storage-driver", "zfs", "busybox", "true"])
        .burrow_error();
    assert!(
        out.stderr.contains("unknown storage driver \"zfs\""),
        "{}",
        out.describe()
    );
}

#[test]
fn a_layer_missing_from_the_store_is_named_whatever_the_driver() {
    let env = setup!(Env::new());
    let layers = env.data_dir().join("images/layers");
    let layer = std::fs::read_dir(&layers)
        .expect("the store's layers")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("busybox has a layer");
    let hex = layer.file_name().unwrap().to_string_lossy().into_owned();
    let aside = layers.join("aside");
    std::fs::rename(&layer, &aside).unwrap();
    // No driver given (automatic choice) and each driver by name: none may
    // fall back to another, as every driver needs the layer.
    for driver in ["auto", "overlay", "fuse", "vfs"] {
        let out = env
            .burrow([
                "run",
                "--rm",
                "--network",
                "none",
                "--storage-driver",
                driver,
                "busybox",
                "true",
            ])
            .burrow_error();
        assert!(
            out.stderr
                .contains(&format!("image layer {hex} is missing from the store"))
                && out.stderr.contains("pull or load it again"),
            "{driver}: {}",
            out.describe()
        );
    }
    std::fs::rename(&aside, &layer).unwrap();
    env.ok(["run", "--rm", "--network", "none", "busybox", "true"]);
}

/// Prints the owner record of `home/user` in each layer folder of the store
/// (argv[1]) that is not the image's base layer (which holds bin/busybox):
/// that is, in the layer `commit` made; "none" where there is no record.
const COMMITTED_OWNER: &str = r#"
import os, sys
for layer in sorted(os.listdir(sys.argv[1])):
    d = os.path.join(sys.argv[1], layer)
    if not os.path.isdir(d) or os.path.lexists(os.path.join(d, "bin/busybox")):
        continue
    try:
        print(os.getxattr(os.path.join(d, "home/user"), "user.burrow.owner").decode())
    except OSError:
        print("none")
"#;

/// Without subordinate ids the store records an image's owners in the
/// `user.burrow.owner` xattr (busybox's /home/user is 1000:1000). The FUSE
/// overlay keeps the record through copy-up and rewrites it on chown; a
/// committed layer carries the recorded owner in its tar, and the store
/// records it again when it unpacks that layer.
#[test]
fn single_id_owner_records_survive_copy_up_and_follow_chown() {
    let env = setup!(Env::single_id());
    for (name, script, expected) in [
        ("kept", "touch /home/user/new", "1000:1000:755"),
        // 0:0 is the one owner a single-id container can name; the store
        // never records it.
        ("chowned", "chown 0:0 /home/user", "none"),
    ] {
        env.ok([
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--storage-driver",
            "fuse",
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        let image = format!("snap-{name}:1");
        env.ok(["commit", name, &image]);
        let layers = env.data_dir().join("images/layers");
        let out = env.host(
            "/usr/bin/python3",
            ["-c", COMMITTED_OWNER, layers.to_str().unwrap()],
        );
        assert_eq!(
            out.stdout.trim(),
            expected,
            "{name}: the owner record of /home/user in the committed layer\n{}",
            out.describe()
        );
        env.ok(["rm", name]);
        env.ok(["rmi", &image]);
    }
}
