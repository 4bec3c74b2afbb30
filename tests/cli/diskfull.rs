//! A full disk, as an unprivileged user meets it: `pull` and `load` of an
//! image bigger than the free space, and a container that writes until the
//! disk is full. Each must fail with one clear line (for the image commands)
//! or with ENOSPC inside the container, and leave the store and the container
//! as usable as before, with nothing half written and nothing left running.
//!
//! The disk is a small tmpfs that `scripts/setup-host.sh` mounts as root at
//! [`SMALL_FS`] (a user cannot mount one); each test's `--root` is a folder
//! of its own on it, and the tests take turns, since they fill it. Without it
//! they print `skipped: <reason>`, unless `BURROW_TEST_MUST_RUN=1`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::registry::{Registry, have, layout_with_big_layer, run_ok};
use crate::util::{Account, Env, Output, eventually, must_run, process_alive};

/// Where `scripts/setup-host.sh` mounts the small filesystem (24 MiB).
const SMALL_FS: &str = "/var/tmp/burrow-test-small";
const MIB: u64 = 1 << 20;
/// The big layer of the test image: one file of random bytes.
const BIG: usize = 6 << 20;

/// Prints the reason and returns `None`, or panics under BURROW_TEST_MUST_RUN=1.
fn skip<T>(reason: &str) -> Option<T> {
    if must_run() {
        panic!("cannot run here: {reason} (BURROW_TEST_MUST_RUN=1 forbids skipping)");
    }
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let _ = writeln!(std::io::stderr(), "skipped: {name}: {reason}");
    None
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

/// Waits for the small filesystem to be free for this test, or skips.
fn small_fs() -> Option<MutexGuard<'static, ()>> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(SMALL_FS);
    let mounted = match (fs::metadata(path), fs::metadata(path.parent().unwrap())) {
        (Ok(me), Ok(parent)) => me.dev() != parent.dev(),
        _ => false,
    };
    if !mounted {
        return skip(&format!(
            "no small filesystem is mounted at {SMALL_FS} (run scripts/setup-host.sh as root)"
        ));
    }
    remove_stale(path);
    assert!(
        free() >= 20 * MIB,
        "{SMALL_FS} has only {} KiB free: something from an earlier run fills it",
        free() / 1024
    );
    Some(turn)
}

/// Removes what killed test runs left on the small filesystem: data folders
/// (`bt-PID-N`) and fillers (`filler-PID`) of processes that are gone.
fn remove_stale(small: &Path) {
    for e in fs::read_dir(small).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("bt-")
            .and_then(|rest| rest.split('-').next())
            .or_else(|| name.strip_prefix("filler-"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let path = e.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// Bytes free on the small filesystem for an unprivileged user.
fn free() -> u64 {
    let s = nix::sys::statvfs::statvfs(SMALL_FS).expect("statvfs the small filesystem");
    s.blocks_available() * s.fragment_size()
}

/// A file that takes all but `left` bytes of the small filesystem, removed
/// on drop: the space a user frees before trying again.
struct Filler(PathBuf);

impl Filler {
    fn leaving(left: u64) -> Filler {
        let path = Path::new(SMALL_FS).join(format!("filler-{}", std::process::id()));
        let file = fs::File::create(&path).expect("create the filler");
        let size = free().saturating_sub(left);
        nix::fcntl::fallocate(
            &file,
            nix::fcntl::FallocateFlags::empty(),
            0,
            size as libc::off_t,
        )
        .expect("allocate the filler");
        Filler(path)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Every path below `dir` with its size for files: what a failed command
/// must leave exactly as it found it.
fn tree(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), 0);
                walk(root, &path, out);
            } else {
                out.insert(rel, if meta.is_file() { meta.len() } else { 0 });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// An env whose `--root` is on the small filesystem, with busybox imported.
/// Each test runs for a user with subordinate ids (layers unpacked by a
/// helper in a user namespace) and for one without (owners in xattrs).
fn small_env(account: Account) -> Option<Env> {
    Env::with_data_in(account, true, Some(Path::new(SMALL_FS)))
}

/// The failure is one `burrow:` line that names `what`, the cause and the fix.
#[track_caller]
fn assert_disk_full_line(out: &Output, what: &str, env: &Env) {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("burrow:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.describe());
    let line = errors[0];
    for needle in [
        what,
        "no space left on device",
        &env.data_dir().display().to_string(),
        "free some space",
        "--root",
    ] {
        assert!(
            line.contains(needle),
            "no {needle:?} in\n{}",
            out.describe()
        );
    }
}

/// What a store that survived a full disk must still do.
#[track_caller]
fn assert_store_intact(env: &Env, before: &BTreeMap<String, u64>, when: &str) {
    let after = tree(&env.data_dir());
    if &after != before {
        let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let gone: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        panic!("{when}: the store changed\nadded: {added:?}\ngone: {gone:?}");
    }
    let images = env.ok(["images"]);
    assert!(images.contains("busybox"), "{images}");
}

#[test]
fn a_pull_bigger_than_the_disk_fails_clearly_and_leaves_the_store_as_it_was() {
    let Some(_turn) = small_fs() else {
        return;
    };
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = layout_with_big_layer(BIG) else {
        return;
    };
    reg.skopeo_push(layout.path(), "big:1", None);
    let reference = reg.name("big:1");
    for account in [Account::Default, Account::SingleId] {
        let env = setup!(small_env(account));
        env.ok(["images"]);
        let before = tree(&env.data_dir());
        // Too little room for the download; then room for the download but not
        // for the unpacked layer beside it.
        for (left, when) in [
            (3 * MIB, "during the download"),
            (9 * MIB, "during the unpack"),
        ] {
            let filler = Filler::leaving(left);
            let out = env.burrow(["pull", &reference]).burrow_error();
            assert_disk_full_line(&out, &format!("cannot pull {reference}"), &env);
            assert_store_intact(&env, &before, when);
            drop(filler);
        }
        let out = env.burrow(["pull", &reference]).success();
        assert!(
            out.stdout.contains("Status: Downloaded newer image"),
            "{}",
            out.describe()
        );
        let out = env
            .burrow(["run", "--rm", &reference, "wc", "-c", "/big"])
            .success();
        assert_eq!(
            out.stdout.split_whitespace().next(),
            Some(BIG.to_string().as_str())
        );
    }
}

#[test]
fn a_load_bigger_than_the_disk_fails_clearly_and_leaves_the_store_as_it_was() {
    let Some(_turn) = small_fs() else {
        return;
    };
    if !have("skopeo") {
        skip::<()>("skopeo is not installed (apt-get install skopeo)");
        return;
    }
    let Some(layout) = layout_with_big_layer(BIG) else {
        return;
    };
    for account in [Account::Default, Account::SingleId] {
        let env = setup!(small_env(account));
        // A docker-archive written by skopeo, on the big disk.
        let archive = env.dir.join("big.tar");
        run_ok({
            let mut c = Command::new("skopeo");
            c.args(["--insecure-policy", "copy"])
                .arg(format!("oci:{}:latest", layout.path().display()))
                .arg(format!("docker-archive:{}:big:1", archive.display()));
            c
        });
        fs::set_permissions(
            &archive,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let archive = archive.display().to_string();
        env.ok(["images"]);
        let before = tree(&env.data_dir());
        for (left, when) in [
            (3 * MIB, "while reading the archive"),
            (9 * MIB, "during the unpack"),
        ] {
            let filler = Filler::leaving(left);
            let out = env.burrow(["load", "-i", &archive]).burrow_error();
            assert_disk_full_line(&out, &format!("cannot load {archive}"), &env);
            assert_store_intact(&env, &before, when);
            drop(filler);
        }
        let out = env.burrow(["load", "-i", &archive]).success();
        assert_eq!(out.stdout, "Loaded image: big:1\n", "{}", out.describe());
        let out = env
            .burrow(["run", "--rm", "big:1", "wc", "-c", "/big"])
            .success();
        assert_eq!(
            out.stdout.split_whitespace().next(),
            Some(BIG.to_string().as_str())
        );
    }
}

#[test]
fn an_import_bigger_than_the_disk_fails_clearly_and_leaves_the_store_as_it_was() {
    let Some(_turn) = small_fs() else {
        return;
    };
    for account in [Account::Default, Account::SingleId] {
        let env = setup!(small_env(account));
        // A rootfs of one file of random bytes, on the big disk.
        let mut random = vec![0u8; BIG];
        getrandom::fill(&mut random).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(BIG as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, "big", &random[..]).unwrap();
        let tarball = builder.into_inner().unwrap();
        let rootfs = env.dir.join("big-rootfs.tar");
        fs::write(&rootfs, &tarball).unwrap();
        fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let rootfs = rootfs.display().to_string();
        env.ok(["images"]);
        let before = tree(&env.data_dir());

        let filler = Filler::leaving(3 * MIB);
        let out = env.burrow(["import", &rootfs, "big:1"]).burrow_error();
        assert_disk_full_line(&out, &format!("cannot import {rootfs}"), &env);
        assert_store_intact(&env, &before, "from a file");
        let out = env
            .burrow_with_stdin(["import", "-", "big:1"], &tarball)
            .burrow_error();
        assert_disk_full_line(&out, "cannot import from standard input", &env);
        assert_store_intact(&env, &before, "from standard input");
        drop(filler);

        env.ok(["import", &rootfs, "big:1"]);
        let images = env.ok(["images"]);
        assert!(images.contains("big"), "{images}");
    }
}

#[test]
fn a_container_that_fills_the_disk_can_still_be_stopped_started_diffed_and_removed() {
    let Some(_turn) = small_fs() else {
        return;
    };
    for account in [Account::Default, Account::SingleId] {
        let env = setup!(small_env(account));
        let empty = free();
        let fill = "dd if=/dev/zero of=/big bs=1M; echo dd exited $?";

        // In the foreground: ENOSPC inside, the command's own exit code outside,
        // and --rm gives all the space back.
        let out = env
            .burrow(["run", "--rm", "busybox", "sh", "-c", fill])
            .success();
        assert!(
            out.stderr.contains("No space left on device") && out.stdout.contains("dd exited 1"),
            "{}",
            out.describe()
        );
        assert_eq!(env.all_ids(), Vec::<String>::new());
        assert!(free() + MIB > empty, "--rm did not free the space");

        // Detached, kept running after the disk is full.
        let script = format!("{fill}; exec sleep 1000");
        let id = env.run_detached(["--name", "full", "busybox", "sh", "-c", &script]);
        eventually(Duration::from_secs(30), "the disk to fill", || free() < MIB);
        let pid = env.inspect("full")["State"]["Pid"].as_i64().unwrap() as i32;
        assert!(pid > 0 && process_alive(pid));
        // No room for another container: one line, and no half-made one.
        let out = env
            .burrow(["run", "--rm", "busybox", "true"])
            .burrow_error();
        assert_disk_full_line(&out, "cannot create a container from busybox", &env);
        assert_eq!(env.all_ids().len(), 1);
        assert_eq!(entries(&env.data_dir().join("tmp")), Vec::<String>::new());
        env.burrow(["stop", "-t", "1", "full"]).success();
        assert_eq!(env.status("full"), "exited");
        assert!(!process_alive(pid), "the container's process survived stop");
        let diff = env.ok(["diff", "full"]);
        assert!(diff.lines().any(|l| l == "A /big"), "{diff}");
        // Record writes that met the full disk left no temporary files.
        let debris: Vec<String> = entries(&env.data_dir().join("containers").join(&id))
            .into_iter()
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert_eq!(debris, Vec::<String>::new());

        env.burrow(["start", "full"]).success();
        env.wait_status("full", "running", Duration::from_secs(10));
        let pid = env.inspect("full")["State"]["Pid"].as_i64().unwrap() as i32;
        env.burrow(["stop", "-t", "1", "full"]).success();
        assert!(!process_alive(pid), "the container's process survived stop");
        // The sleep ends by SIGTERM: burrow's init is pid 1, not the shell.
        let ps = env.ok(["ps", "-a"]);
        assert!(ps.contains("Exited (143)"), "{ps}");

        env.ok(["rm", "full"]);
        assert_eq!(env.all_ids(), Vec::<String>::new());
        let data = env.data_dir();
        let containers: Vec<String> = entries(&data.join("containers"))
            .into_iter()
            .filter(|n| n != ".lock")
            .collect();
        assert_eq!(containers, Vec::<String>::new());
        let scratch = entries(&data.join("tmp"));
        assert_eq!(scratch, Vec::<String>::new());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&data.display().to_string()),
            "a mount below {} is left:\n{mounts}",
            data.display()
        );
        assert!(free() + MIB > empty, "rm did not free the space");
    }
}
