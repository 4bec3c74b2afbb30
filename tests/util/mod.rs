//! The integration-test harness: runs the real `burrow` binary the way a user
//! would, as an unprivileged user.
//!
//! Theory of operation. burrow is rootless, so a test that ran it as root
//! would test the wrong thing. When the test process is root (CI), the
//! harness copies the binary once to a world-readable folder and starts every
//! burrow command with the credentials of a test user: `burrow-test` (which
//! has /etc/subuid and /etc/subgid ranges) or `burrow-nosub` (which has none,
//! for burrow's single-id fallback). `scripts/setup-host.sh` creates both.
//! When the test process is not root, burrow runs as that same user.
//!
//! Every test gets an [`Env`]: its own folder, owned by its user, holding
//! `data/` and `run/` (passed as `--root` and `--runroot`, so tests run in
//! parallel without sharing state) and `home/`. [`Env::new`] also imports the
//! busybox image (built once per test run by `scripts/mkimage-busybox.sh`) as
//! `busybox`. Dropping the `Env` removes its containers and its folder.
//!
//! Tests that need something the machine lacks (user namespaces, subordinate
//! ids, busybox-static) print `skipped: <reason>` and pass, unless
//! `BURROW_TEST_MUST_RUN=1`, under which they fail: CI sets it, so a broken CI
//! machine cannot pass by skipping everything.
//!
//! Every command runs with a deadline; a command that exits while a process it
//! started still holds its stdout or stderr (a detached container that kept
//! the caller's pipe) fails the test, because `id=$(burrow run -d ...)` would
//! hang in a shell.

#![allow(dead_code)] // each test module uses its own subset

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Set to 1 to turn every skip into a failure.
pub const MUST_RUN_VAR: &str = "BURROW_TEST_MUST_RUN";
/// Set to 1 to keep each test's folder after it ends.
pub const KEEP_VAR: &str = "BURROW_TEST_KEEP";
/// Marks every process a test starts, so cleanup can find strays.
const MARK_VAR: &str = "BURROW_TEST_DIR";
/// The PATH burrow runs with (its environment is otherwise empty).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long one burrow command may take before the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a pipe may stay open after the command exited.
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Skips the test (returns from it) when its [`Env`] cannot be set up here.
///
/// `let env = setup!(Env::new());`
macro_rules! setup {
    ($env:expr) => {
        match $env {
            Some(env) => env,
            None => return,
        }
    };
}

/// Which kind of account a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// The usual test user: `burrow-test` as root, else the current user.
    Default,
    /// A user with subordinate id ranges (the normal rootless setup).
    Subuid,
    /// A user without any (burrow maps only its own id).
    SingleId,
}

/// A user burrow runs as.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// First id and count of the user's /etc/subuid range, if any.
    pub subuid: Option<(u32, u32)>,
    pub subgid: Option<(u32, u32)>,
    /// Whether commands must switch to this user (the harness is root).
    switch: bool,
}

/// What every test of this process shares: the binary, the image tarball.
struct Shared {
    base: PathBuf,
    bin: PathBuf,
    root: bool,
    next: AtomicUsize,
    image: OnceLock<Result<PathBuf, String>>,
    users: Mutex<HashMap<Account, Result<User, String>>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let root = nix::unistd::geteuid().is_root();
        remove_stale_bases();
        let base = PathBuf::from(format!("/tmp/bt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("create the test base folder");
        // Test users must be able to reach their folders below it.
        fs::set_permissions(
            &base,
            fs::Permissions::from_mode(if root { 0o755 } else { 0o700 }),
        )
        .unwrap();
        let built = PathBuf::from(env!("CARGO_BIN_EXE_burrow"));
        let bin = if root {
            // The build lives below /root (0700) in CI: give the test users a copy.
            let bin = base.join("bin/burrow");
            fs::create_dir_all(bin.parent().unwrap()).unwrap();
            fs::set_permissions(bin.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::copy(&built, &bin).expect("copy the burrow binary");
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
            bin
        } else {
            built
        };
        register_base_cleanup();
        Shared {
            base,
            bin,
            root,
            next: AtomicUsize::new(0),
            image: OnceLock::new(),
            users: Mutex::new(HashMap::new()),
        }
    })
}

/// Removes this process's base folder (the binary copy, the tarball) when the
/// test binary exits, unless tests' folders are to be kept.
fn register_base_cleanup() {
    extern "C" fn remove_base() {
        if std::env::var(KEEP_VAR).is_ok_and(|v| v == "1") {
            return;
        }
        let _ = fs::remove_dir_all(format!("/tmp/bt-{}", std::process::id()));
    }
    // SAFETY: `remove_base` is a plain function that touches no state which
    // could already be torn down at exit (it formats a path and removes it).
    unsafe {
        libc::atexit(remove_base);
    }
}

/// Removes /tmp/bt-PID folders of earlier test runs whose process is gone.
fn remove_stale_bases() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("bt-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let euid = nix::unistd::geteuid();
        let mine = euid.is_root() || e.metadata().is_ok_and(|m| m.uid() == euid.as_raw());
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&e.path(), None);
        }
    }
}

pub fn must_run() -> bool {
    std::env::var(MUST_RUN_VAR).is_ok_and(|v| v == "1" || v == "true")
}

fn test_name() -> String {
    thread::current().name().unwrap_or("unnamed").to_string()
}

/// Reports a skip on the real stderr (libtest captures `eprintln!`), or fails
/// under `BURROW_TEST_MUST_RUN=1`.
pub fn skip<T>(reason: &str) -> Option<T> {
    if must_run() {
        panic!("cannot run here: {reason} ({MUST_RUN_VAR}=1 forbids skipping)");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {}: {reason}", test_name());
    None
}

fn subid_range(file: &str, name: &str, uid: u32) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who != uid.to_string() {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

fn lookup_user(name: &str, switch: bool) -> Result<User, String> {
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| format!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| format!("user {name} does not exist; run scripts/setup-host.sh as root"))?;
    let uid = u.uid.as_raw();
    Ok(User {
        name: name.to_string(),
        uid,
        gid: u.gid.as_raw(),
        subuid: subid_range("/etc/subuid", name, uid),
        subgid: subid_range("/etc/subgid", name, uid),
        switch,
    })
}

fn current_user() -> Result<User, String> {
    let uid = nix::unistd::getuid();
    let u = nix::unistd::User::from_uid(uid)
        .map_err(|e| format!("cannot look up uid {uid}: {e}"))?
        .ok_or_else(|| format!("uid {uid} has no passwd entry"))?;
    lookup_user(&u.name, false)
}

fn resolve_account(account: Account) -> Result<User, String> {
    let sh = shared();
    let user = if sh.root {
        let name = match account {
            Account::Default | Account::Subuid => {
                std::env::var("BURROW_TEST_USER").unwrap_or_else(|_| "burrow-test".into())
            }
            Account::SingleId => {
                std::env::var("BURROW_TEST_NOSUB_USER").unwrap_or_else(|_| "burrow-nosub".into())
            }
        };
        lookup_user(&name, true)?
    } else {
        current_user()?
    };
    match account {
        Account::Default => {}
        Account::Subuid => {
            if user.subuid.is_none() || user.subgid.is_none() {
                return Err(format!(
                    "user {} has no range in /etc/subuid or /etc/subgid",
                    user.name
                ));
            }
            if !Path::new("/usr/bin/newuidmap").exists()
                || !Path::new("/usr/bin/newgidmap").exists()
            {
                return Err("newuidmap/newgidmap missing (apt-get install uidmap)".into());
            }
        }
        Account::SingleId => {
            if user.subuid.is_some() || user.subgid.is_some() {
                return Err(format!(
                    "user {} has subordinate ids; the single-id tests need a user without (run as root to use burrow-nosub)",
                    user.name
                ));
            }
        }
    }
    // Can this user make a user namespace and map itself as root in it?
    let probe = spawn_as(
        &user,
        Command::new("unshare"),
        &["-Ur", "true"],
        &shared().base,
        None,
    )
    .map_err(|e| format!("cannot run unshare: {e}"))?
    .finish(Duration::from_secs(10));
    if probe.code != 0 {
        return Err(format!(
            "user namespaces are not available to {}: `unshare -Ur true` said: {}",
            user.name,
            probe.stderr.trim()
        ));
    }
    Ok(user)
}

fn account(account: Account) -> Result<User, String> {
    let mut users = shared().users.lock().unwrap();
    users
        .entry(account)
        .or_insert_with(|| resolve_account(account))
        .clone()
}

/// The busybox rootfs tarball, built once per test process.
pub fn busybox_tar() -> Result<PathBuf, String> {
    shared()
        .image
        .get_or_init(|| {
            let out = shared().base.join("busybox.tar");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mkimage-busybox.sh");
            let o = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !o.status.success() {
                return Err(format!(
                    "scripts/mkimage-busybox.sh failed (apt-get install busybox-static): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            fs::set_permissions(&out, fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
            Ok(out)
        })
        .clone()
}

/// The result of one finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code, or 128+N when killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// What ran, for messages.
    pub what: String,
}

impl Output {
    /// Panics with everything known unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Output {
        if self.code != code {
            panic!(
                "expected exit code {code}, got {}\n{}",
                self.code,
                self.describe()
            );
        }
        self
    }

    #[track_caller]
    pub fn success(self) -> Output {
        self.expect_code(0)
    }

    /// Panics unless the command failed with burrow's own exit code 125 and
    /// said something on stderr.
    #[track_caller]
    pub fn burrow_error(self) -> Output {
        let o = self.expect_code(125);
        assert!(
            !o.stderr.trim().is_empty(),
            "exit 125 without a message\n{}",
            o.describe()
        );
        o
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        )
    }

    /// Stdout's lines, trimmed of trailing whitespace, without empty ones.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// A command in flight whose output is collected as it comes.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<(String, bool)>>,
    stderr: Arc<Mutex<(String, bool)>>,
    pub what: String,
}

fn drain(mut r: impl Read + Send + 'static) -> Arc<Mutex<(String, bool)>> {
    let buf = Arc::new(Mutex::new((String::new(), false)));
    let b = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b
                    .lock()
                    .unwrap()
                    .0
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
        b.lock().unwrap().1 = true;
    });
    buf
}

impl Running {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn stdout_so_far(&self) -> String {
        self.stdout.lock().unwrap().0.clone()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().0.clone()
    }

    /// Waits until stdout contains `needle`; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stdout_so_far().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers catch up before judging.
                thread::sleep(Duration::from_millis(100));
                if self.stdout_so_far().contains(needle) {
                    return;
                }
                panic!(
                    "{} exited ({status}) before printing {needle:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.what,
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.what,
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }

    /// Whether the command is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the command to exit and for its pipes to close.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for a child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "timed out after {timeout:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.what,
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let pipes_deadline = Instant::now() + PIPE_GRACE;
        while !(self.stdout.lock().unwrap().1 && self.stderr.lock().unwrap().1) {
            if Instant::now() > pipes_deadline {
                panic!(
                    "{} exited ({status}) but a process it started still holds its stdout or stderr open \
                     (a shell's `$(...)` around it would hang)\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.what,
                    self.stdout_so_far(),
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Output {
            code,
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
            what: self.what,
        }
    }
}

/// Starts `cmd` with `args` as `user`, with a clean environment.
fn spawn_as(
    user: &User,
    mut cmd: Command,
    args: &[impl AsRef<OsStr>],
    cwd: &Path,
    stdin: Option<Vec<u8>>,
) -> std::io::Result<Running> {
    cmd.args(args);
    let what = format!(
        "[as {}] {} {}",
        user.name,
        cmd.get_program().to_string_lossy(),
        args.iter()
            .map(|a| shell_quote(a.as_ref()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if user.switch {
        // std drops the supplementary groups before setuid.
        cmd.uid(user.uid).gid(user.gid);
    }
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    Ok(Running {
        child,
        stdout,
        stderr,
        what,
    })
}

fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One test's world: a user, a folder, a burrow store.
pub struct Env {
    pub user: User,
    /// The test's folder, owned by `user`.
    pub dir: PathBuf,
    /// `--root`: `dir/data`, or a folder elsewhere (see [`Env::with_data_in`]).
    data: PathBuf,
    name: String,
}

impl Env {
    /// A store with the busybox image imported as `busybox`, used by the
    /// default test user.
    pub fn new() -> Option<Env> {
        Env::with(Account::Default, true)
    }

    /// Like [`Env::new`], for a user that has subordinate ids.
    pub fn subuid() -> Option<Env> {
        Env::with(Account::Subuid, true)
    }

    /// Like [`Env::new`], for a user without subordinate ids.
    pub fn single_id() -> Option<Env> {
        Env::with(Account::SingleId, true)
    }

    /// An empty store (no image), for image tests.
    pub fn empty() -> Option<Env> {
        Env::with(Account::Default, false)
    }

    pub fn with(account_kind: Account, import: bool) -> Option<Env> {
        Env::with_data_in(account_kind, import, None)
    }

    /// Like [`Env::with`], with `--root` in a folder of its own below `base`
    /// (another filesystem, such as the small one of the disk-full tests),
    /// removed with the rest.
    pub fn with_data_in(account_kind: Account, import: bool, base: Option<&Path>) -> Option<Env> {
        let user = match account(account_kind) {
            Ok(u) => u,
            Err(reason) => return skip(&reason),
        };
        let tar = match busybox_tar() {
            Ok(t) => t,
            Err(reason) => return skip(&reason),
        };
        let sh = shared();
        // Short paths: burrow puts unix sockets below --runroot (108-byte limit).
        let dir = sh
            .base
            .join(sh.next.fetch_add(1, Ordering::SeqCst).to_string());
        fs::create_dir(&dir).expect("create the test folder");
        fs::create_dir(dir.join("home")).unwrap();
        fs::write(dir.join("TEST"), format!("{}\n", test_name())).unwrap();
        if user.switch {
            for p in [&dir, &dir.join("home"), &dir.join("TEST")] {
                chown(p, Some(user.uid), Some(user.gid)).expect("chown the test folder");
            }
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let data = match base {
            None => dir.join("data"),
            Some(base) => {
                let own = base.join(format!(
                    "bt-{}-{}",
                    std::process::id(),
                    dir.display().to_string().rsplit('/').next().unwrap()
                ));
                fs::create_dir(&own).expect("create the test's data folder");
                if user.switch {
                    chown(&own, Some(user.uid), Some(user.gid)).expect("chown the data folder");
                }
                fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
                own.join("data")
            }
        };
        let env = Env {
            user,
            dir,
            data,
            name: test_name(),
        };
        if import {
            let out = env.burrow(["import".as_ref(), tar.as_os_str(), "busybox".as_ref()]);
            if out.code != 0 {
                panic!("cannot import the busybox image\n{}", out.describe());
            }
        }
        Some(env)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The tarball `Env::new` imported.
    pub fn busybox_tar(&self) -> PathBuf {
        busybox_tar().unwrap()
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", self.home())
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .env(MARK_VAR, &self.dir);
        for var in ["RUST_BACKTRACE", "RUST_LOG", "BURROW_LOG"] {
            if let Some(v) = std::env::var_os(var) {
                c.env(var, v);
            }
        }
        c
    }

    fn burrow_args<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--root".into(),
            self.data_dir().into(),
            "--runroot".into(),
            self.run_dir().into(),
        ];
        v.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        v
    }

    /// Runs a burrow command to its end with extra environment variables.
    pub fn burrow_with_env<S: AsRef<OsStr>>(
        &self,
        vars: &[(&str, &str)],
        args: impl IntoIterator<Item = S>,
    ) -> Output {
        let args = self.burrow_args(args);
        let mut cmd = self.command(&shared().bin);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        spawn_as(&self.user, cmd, &args, &self.dir, None)
            .expect("start burrow")
            .finish(DEFAULT_TIMEOUT)
    }

    /// Starts a burrow command and returns at once.
    pub fn spawn<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Running {
        self.spawn_with_stdin(args, None)
    }

    pub fn spawn_with_stdin<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
        stdin: Option<Vec<u8>>,
    ) -> Running {
        let args = self.burrow_args(args);
        spawn_as(
            &self.user,
            self.command(&shared().bin),
            &args,
            &self.dir,
            stdin,
        )
        .expect("start burrow")
    }

    /// Runs a burrow command to its end.
    /// Runs burrow with a pseudo-terminal of `rows` by `cols` as its
    /// standard streams, as a user at a terminal does: `input` is typed
    /// once `ready` appears in the output (or at once if empty), and the
    /// output is read until burrow exits. Returns the output, the exit code,
    /// and whether the terminal's settings were the same afterwards.
    pub fn burrow_on_terminal<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
        (rows, cols): (u16, u16),
        ready: &str,
        input: &[u8],
    ) -> (String, i32, bool) {
        use nix::pty::{Winsize, openpty};
        use nix::sys::termios::tcgetattr;
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let before = tcgetattr(&pty.slave).expect("tcgetattr");
        let args = self.burrow_args(args);
        let mut cmd = self.command(&shared().bin);
        cmd.args(&args).current_dir(&self.dir);
        let tty = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        cmd.stdin(tty(&pty.slave))
            .stdout(tty(&pty.slave))
            .stderr(tty(&pty.slave));
        if self.user.switch {
            cmd.uid(self.user.uid).gid(self.user.gid);
        }
        let mut child = cmd.spawn().expect("spawn burrow");
        let mut master = fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup");
        let seen = Arc::new(Mutex::new(String::new()));
        let out = seen.clone();
        // Reads until the last holder of the slave (our copy included) closes it.
        let drain = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        eventually(secs(60), "burrow to be ready for input", || {
            ready.is_empty() || seen.lock().unwrap().contains(ready)
        });
        master.write_all(input).expect("type");
        let deadline = Instant::now() + secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "burrow on a terminal hung: {}",
                seen.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(50));
        };
        let after = tcgetattr(&pty.slave).expect("tcgetattr");
        let same =
            before.local_flags == after.local_flags && before.input_flags == after.input_flags;
        // The last copies of the slave: then the reader sees its end.
        drop((cmd, pty.slave));
        let _ = drain.join();
        let output = seen.lock().unwrap().clone();
        (
            output,
            status.code().unwrap_or(128 + status.signal().unwrap_or(0)),
            same,
        )
    }

    pub fn burrow<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Output {
        self.spawn(args).finish(DEFAULT_TIMEOUT)
    }

    pub fn burrow_with_stdin<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
        stdin: &[u8],
    ) -> Output {
        self.spawn_with_stdin(args, Some(stdin.to_vec()))
            .finish(DEFAULT_TIMEOUT)
    }

    /// Runs a burrow command, asserts it succeeded, returns its stdout.
    #[track_caller]
    pub fn ok<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> String {
        self.burrow(args).success().stdout
    }

    /// Runs another program as the test's user (host side, no container).
    pub fn host<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Output {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = self.command(Path::new(program));
        cmd.env("PATH", PATH);
        spawn_as(&self.user, cmd, &args, &self.dir, None)
            .expect("start a host program")
            .finish(DEFAULT_TIMEOUT)
    }

    /// `burrow run -d ARGS`: asserts success, returns the printed id.
    #[track_caller]
    pub fn run_detached<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> String {
        let mut v: Vec<OsString> = vec!["run".into(), "-d".into()];
        v.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let out = self.burrow(&v).success();
        let id = out.stdout.trim().to_string();
        assert!(
            is_full_id(&id),
            "run -d must print the full 64-hex id, printed {id:?}\n{}",
            out.describe()
        );
        id
    }

    /// `burrow inspect NAME`, the first element of the array.
    #[track_caller]
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.burrow(["inspect", name]).success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("inspect printed invalid JSON: {e}\n{}", out.describe()));
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("inspect must print a JSON array\n{}", out.describe()));
        assert_eq!(
            arr.len(),
            1,
            "inspect of one name must print one object\n{}",
            out.describe()
        );
        arr[0].clone()
    }

    /// `State.Status` of a container: created, running, exited...
    #[track_caller]
    pub fn status(&self, name: &str) -> String {
        self.inspect(name)["State"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Polls until the container's status is `status`.
    #[track_caller]
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        eventually(timeout, &format!("container {name} to be {status}"), || {
            self.status(name) == status
        });
    }

    /// Ids of every container, running or not.
    pub fn all_ids(&self) -> Vec<String> {
        let out = self.burrow(["ps", "-a", "-q", "--no-trunc"]);
        if out.code != 0 {
            return Vec::new();
        }
        out.lines().iter().map(|s| s.to_string()).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Containers first: their supervisors would keep files busy.
        let ids = self.all_ids();
        if !ids.is_empty() {
            let mut args = vec!["rm".to_string(), "-f".to_string()];
            args.extend(ids);
            let _ = self.spawn(&args).finish(DEFAULT_TIMEOUT);
        }
        kill_marked(&self.dir);
        if std::env::var(KEEP_VAR).is_ok_and(|v| v == "1") {
            let _ = writeln!(
                std::io::stderr(),
                "kept: {}: {}",
                self.name,
                self.dir.display()
            );
            return;
        }
        if !self.data.starts_with(&self.dir) {
            remove_tree(self.data.parent().unwrap(), Some(&self.user));
        }
        remove_tree(&self.dir, Some(&self.user));
    }
}

/// Kills whatever still runs with this test's mark in its environment: a
/// supervisor that `rm -f` did not stop, because rm itself is broken.
fn kill_marked(dir: &Path) {
    let mark = format!("{MARK_VAR}={}", dir.display()).into_bytes();
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = fs::read(p.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == mark.as_slice()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Removes a tree that may hold files owned by the user's subordinate ids
/// (written by containers). Root removes anything; a user needs a user
/// namespace that maps its subordinate ids to do it.
fn remove_tree(dir: &Path, user: Option<&User>) {
    if fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    // Read-only folders (a container's chmod 0555) block removal of their contents.
    let _ = Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(dir)
        .output();
    if fs::remove_dir_all(dir).is_ok() {
        return;
    }
    if user.is_some_and(|u| !u.switch) {
        let _ = Command::new("unshare")
            .args(["--map-root-user", "--map-auto", "rm", "-rf"])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
    }
    if dir.exists() {
        let _ = writeln!(
            std::io::stderr(),
            "warning: could not remove {}",
            dir.display()
        );
    }
}

/// Polls `check` every 50 ms until it holds; panics after `timeout`.
#[track_caller]
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Whether a process exists (zombies count as gone).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Serves `listener` on threads of its own: each connection's request head
/// is read, then answered with HTTP/1.0 200 and the body `answer` gives for
/// that connection (it may look at the peer), and closed. Returns the port.
pub fn serve_http(
    listener: std::net::TcpListener,
    answer: impl Fn(&std::net::TcpStream) -> String + Send + Sync + 'static,
) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let port = listener.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = answer(&stream);
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = (&stream).write_all(reply.as_bytes());
            });
        }
    });
    port
}
