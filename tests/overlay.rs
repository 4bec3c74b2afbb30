//! Integration tests of burrow's FUSE overlay, as an unprivileged user.
//!
//! Theory of operation. Each test prepares two lower layers with
//! `tests/overlay/checks.py setup` (OCI whiteouts included), mounts them with
//! `burrow overlay-mount` in the background, runs one check of checks.py on
//! the mount, unmounts (SIGTERM: the server unmounts and exits) and checks
//! what the upper dir holds afterwards. The POSIX checks run on a plain
//! folder first, as the reference, then on the overlay.
//!
//! As root (CI), everything runs as the test user `burrow-test` (or
//! `$BURROW_TEST_USER`) from a copy of the binary in a world-readable folder,
//! as in `tests/util`. Tests skip with a reason when FUSE, fusermount3 or
//! python3 is missing, and fail instead under `BURROW_TEST_MUST_RUN=1`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CHECKS: &str = include_str!("overlay/checks.py");
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PYTHON: &str = "/usr/bin/python3";

struct Harness {
    base: PathBuf,
    bin: PathBuf,
    script: PathBuf,
    /// The ids to switch to, when the tests run as root.
    user: Option<(u32, u32)>,
}

fn must_run() -> bool {
    std::env::var("BURROW_TEST_MUST_RUN").is_ok_and(|v| v == "1" || v == "true")
}

/// Returns the harness, or prints why the test is skipped (panics under
/// BURROW_TEST_MUST_RUN=1).
fn harness() -> Option<&'static Harness> {
    static H: OnceLock<Result<Harness, String>> = OnceLock::new();
    match H.get_or_init(prepare) {
        Ok(h) => Some(h),
        Err(reason) => {
            if must_run() {
                panic!("cannot run here: {reason} (BURROW_TEST_MUST_RUN=1 forbids skipping)");
            }
            let name = thread::current().name().unwrap_or("?").to_string();
            let _ = writeln!(std::io::stderr(), "skipped: {name}: {reason}");
            None
        }
    }
}

fn prepare() -> Result<Harness, String> {
    let user = if nix::unistd::geteuid().is_root() {
        let name = std::env::var("BURROW_TEST_USER").unwrap_or_else(|_| "burrow-test".into());
        let u = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .ok_or_else(|| format!("user {name} does not exist; run scripts/setup-host.sh"))?;
        Some((u.uid.as_raw(), u.gid.as_raw()))
    } else {
        None
    };
    if !Path::new(PYTHON).exists() {
        return Err(format!("{PYTHON} is missing (apt-get install python3)"));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing (modprobe fuse)".into());
    }
    if !Path::new("/usr/bin/fusermount3").exists() && !Path::new("/bin/fusermount3").exists() {
        return Err("fusermount3 is missing (apt-get install fuse3)".into());
    }
    remove_stale_bases();
    let base = PathBuf::from(format!("/tmp/bo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let bin = base.join("burrow");
    fs::copy(env!("CARGO_BIN_EXE_burrow"), &bin).map_err(|e| e.to_string())?;
    let script = base.join("checks.py");
    fs::write(&script, CHECKS).map_err(|e| e.to_string())?;
    for p in [&bin, &script] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let h = Harness {
        base,
        bin,
        script,
        user,
    };
    let probe = h
        .command("sh")
        .args(["-c", "test -r /dev/fuse && test -w /dev/fuse"])
        .status()
        .map_err(|e| e.to_string())?;
    if !probe.success() {
        return Err(
            "/dev/fuse is not open to the test user (as root: chmod 0666 /dev/fuse)".into(),
        );
    }
    Ok(h)
}

/// Removes the /tmp/bo-PID folders (a binary copy each) of earlier runs
/// whose process is gone.
fn remove_stale_bases() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("bo-"));
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

impl Harness {
    /// A command run as the test user, with a clean environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear().env("PATH", PATH).current_dir(&self.base);
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    /// A fresh folder owned by the test user.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.base.join(name);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        if let Some((uid, gid)) = self.user {
            chown(&d, Some(uid), Some(gid)).unwrap();
        }
        d
    }

    /// Runs checks.py with `args` (under a deadline) and returns its output.
    fn checks(&self, args: &[&str]) -> Output {
        self.command("timeout")
            .args(["-k", "5", "120", PYTHON])
            .arg(&self.script)
            .args(args)
            .output()
            .expect("run checks.py")
    }
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `burrow overlay-mount`; stopped (and the mount removed) on drop.
struct Mounted {
    child: Option<Child>,
    mnt: PathBuf,
    stderr: PathBuf,
}

impl Mounted {
    fn start(h: &Harness, dir: &Path) -> Mounted {
        let mnt = dir.join("mnt");
        let stderr = dir.join("server.log");
        let log = fs::File::create(&stderr).unwrap();
        let mut child = h
            .command(&h.bin)
            .arg("overlay-mount")
            .args(["--lower".as_ref(), dir.join("l1").as_os_str()])
            .args(["--lower".as_ref(), dir.join("l2").as_os_str()])
            .args(["--upper".as_ref(), dir.join("upper").as_os_str()])
            .args(["--work".as_ref(), dir.join("work").as_os_str()])
            .arg(&mnt)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start burrow overlay-mount");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut m = Mounted {
            child: Some(child),
            mnt,
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("mounted") => m,
            other => {
                let log = m.stop();
                panic!("overlay-mount did not come up ({other:?})\n{log}");
            }
        }
    }

    /// Unmounts (SIGTERM), waits, and returns the server's stderr.
    fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "overlay-mount exited with {status}");
                        break;
                    }
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        let _ = Command::new("fusermount3")
                            .arg("-uz")
                            .arg(&self.mnt)
                            .status();
                        panic!("overlay-mount did not exit after SIGTERM");
                    }
                    _ => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        } else {
            self.stop();
        }
    }
}

/// Sets up the lowers, mounts, runs `case`, unmounts, checks the upper dir.
fn overlay_case(case: &str) {
    let Some(h) = harness() else { return };
    let dir = h.dir(case);
    let d = dir.to_str().unwrap();
    assert_ok(&h.checks(&["setup", d]), "setup");
    let mut m = Mounted::start(h, &dir);
    let out = h.checks(&["overlay", case, m.mnt.to_str().unwrap(), d]);
    let log = m.stop();
    if !out.status.success() {
        panic!(
            "check {case} failed on the overlay\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server ---\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_ok(
        &h.checks(&["after", case, d]),
        "the upper-dir check after unmount",
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn copy_up_keeps_the_lower_intact() {
    overlay_case("copy_up");
}

#[test]
fn whiteout_then_recreate() {
    overlay_case("whiteouts");
}

#[test]
fn opaque_dir_after_rm_rf_and_mkdir() {
    overlay_case("opaque");
}

#[test]
fn directory_rename() {
    overlay_case("dir_rename");
}

#[test]
fn hardlinks_stay_one_inode_after_copy_up() {
    overlay_case("hardlinks");
}

#[test]
fn xattrs() {
    overlay_case("xattrs");
}

#[test]
fn owner_records_survive_copy_up_and_follow_chown() {
    overlay_case("owners");
}

#[test]
fn mmap_writes() {
    overlay_case("mmap");
}

#[test]
fn reads_at_odd_offsets_and_sizes_across_the_end() {
    overlay_case("reads");
}

#[test]
fn writes_and_truncates_clear_set_id_bits() {
    overlay_case("setid");
}

#[test]
fn files_read_one_after_another_are_stored_ahead() {
    overlay_case("read_ahead");
}

#[test]
fn concurrent_writers_and_readers() {
    overlay_case("concurrent");
}

#[test]
fn statfs_inodes_symlinks_fifos_sockets() {
    overlay_case("misc");
}

#[test]
fn negative_entries_give_way_to_every_kind_of_create() {
    overlay_case("negative");
}

#[test]
fn files_made_like_tar_does_keep_their_data_mode_and_times() {
    overlay_case("created");
}

#[test]
fn posix_checks_pass_on_a_plain_dir_and_on_the_overlay() {
    let Some(h) = harness() else { return };
    let dir = h.dir("posix");
    let d = dir.to_str().unwrap();
    assert_ok(&h.checks(&["setup", d]), "setup");
    let plain = dir.join("plain");
    assert_ok(
        &h.checks(&["posix", plain.to_str().unwrap()]),
        "the POSIX checks on a plain folder (the reference)",
    );
    let mut m = Mounted::start(h, &dir);
    let out = h.checks(&["posix", m.mnt.to_str().unwrap()]);
    let log = m.stop();
    if !out.status.success() {
        panic!(
            "the POSIX checks failed on the overlay\n--- stderr ---\n{}\n--- server ---\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_layers_are_reported_clearly() {
    let Some(h) = harness() else { return };
    let dir = h.dir("bad");
    fs::create_dir(dir.join("mnt")).unwrap();
    let out = h
        .command(&h.bin)
        .args(["overlay-mount", "--lower"])
        .arg(dir.join("missing"))
        .arg("--upper")
        .arg(&dir)
        .arg("--work")
        .arg(&dir)
        .arg(dir.join("mnt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("missing") && stderr.contains("layer"),
        "{stderr}"
    );
}
