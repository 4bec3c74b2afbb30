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
        let fresh = run_once(
            &env,
            driver,
            "0:0",
            "test -e /bin/ls && test -d /home/user && tail -n 1 /etc/passwd",
        );
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

/// New files and folders get the creating user's ids and the mode it asked
/// for (less its umask), a set-id bit included, whatever the driver; and
/// root's new files keep their mode too.
#[test]
fn drivers_agree_on_new_files_owners_and_modes() {
    let env = setup!(Env::subuid());
    let script = "cd /tmp && umask 022 && touch f && mkdir g && touch s && chmod 4750 s && stat -c '%n %u:%g %a' f g s";
    let mut outputs = Vec::new();
    for driver in DRIVERS {
        let mut out = String::new();
        for user in ["1000:1000", "0:0"] {
            out += &run_once(&env, driver, user, script);
        }
        outputs.push((driver, out));
    }
    let expected =
        "f 1000:1000 644\ng 1000:1000 755\ns 1000:1000 4750\nf 0:0 644\ng 0:0 755\ns 0:0 4750\n";
    for (driver, out) in outputs {
        assert_eq!(out, expected, "{driver}");
    }
}

/// The output of `script`, run by `user` in a fresh `--rm` busybox
/// container on `driver`.
fn run_once(env: &Env, driver: &str, user: &str, script: &str) -> String {
    env.ok([
        "run",
        "--rm",
        "--network",
        "none",
        "--storage-driver",
        driver,
        "--user",
        user,
        "busybox",
        "sh",
        "-c",
        script,
    ])
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
