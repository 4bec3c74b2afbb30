//! Capabilities, no_new_privs, and the init that reaps zombies.

use crate::util::Env;

/// Docker's default bounding set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;
const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_ADMIN: u64 = 1 << 12;

/// Every capability this kernel knows.
fn all_caps() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (1u64 << (last + 1)) - 1
}

/// Runs `grep Cap /proc/self/status` in a container: (CapInh, CapPrm, CapEff, CapBnd, CapAmb).
fn caps(env: &Env, flags: &[&str]) -> [u64; 5] {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend(["busybox", "grep", "^Cap", "/proc/self/status"]);
    let out = env.ok(&args);
    let mut v = [0u64; 5];
    for (i, key) in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .enumerate()
    {
        let line = out
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{out}"));
        v[i] = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
    }
    v
}

#[test]
fn default_capabilities_are_dockers() {
    let env = setup!(Env::new());
    let [_, prm, eff, bnd, _] = caps(&env, &[]);
    assert_eq!(bnd, DOCKER_DEFAULT_CAPS, "CapBnd {bnd:016x}");
    assert_eq!(eff, DOCKER_DEFAULT_CAPS, "root's CapEff {eff:016x}");
    assert_eq!(prm, DOCKER_DEFAULT_CAPS, "root's CapPrm {prm:016x}");
}

#[test]
fn privileged_gives_every_capability() {
    let env = setup!(Env::new());
    let [_, _, eff, bnd, _] = caps(&env, &["--privileged"]);
    assert_eq!(bnd, all_caps(), "CapBnd {bnd:016x}");
    assert_eq!(eff, all_caps(), "CapEff {eff:016x}");
}

#[test]
fn cap_add_and_cap_drop_change_the_set() {
    let env = setup!(Env::new());
    assert_eq!(
        caps(&env, &["--cap-add", "NET_ADMIN"])[3],
        DOCKER_DEFAULT_CAPS | CAP_NET_ADMIN
    );
    assert_eq!(
        caps(&env, &["--cap-add", "CAP_NET_ADMIN"])[3],
        DOCKER_DEFAULT_CAPS | CAP_NET_ADMIN
    );
    assert_eq!(
        caps(&env, &["--cap-drop", "CHOWN"])[3],
        DOCKER_DEFAULT_CAPS & !CAP_CHOWN
    );
    assert_eq!(caps(&env, &["--cap-drop", "ALL"])[3], 0);
    assert_eq!(caps(&env, &["--cap-add", "ALL"])[3], all_caps());
    assert_eq!(
        caps(&env, &["--cap-drop", "ALL", "--cap-add", "CHOWN"])[3],
        CAP_CHOWN
    );
}

#[test]
fn mounting_needs_sys_admin() {
    let env = setup!(Env::new());
    let mount = [
        "busybox",
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t",
    ];
    let out = env.burrow(["run", "--rm"].iter().chain(&mount));
    assert_ne!(
        out.code,
        0,
        "mount without CAP_SYS_ADMIN must fail\n{}",
        out.describe()
    );
    env.burrow(
        ["run", "--rm", "--cap-add", "SYS_ADMIN"]
            .iter()
            .chain(&mount),
    )
    .success();
}

#[test]
fn a_non_root_user_has_no_effective_capabilities() {
    let env = setup!(Env::subuid());
    let [_, prm, eff, bnd, _] = caps(&env, &["--user", "1000"]);
    assert_eq!((prm, eff), (0, 0));
    assert_eq!(bnd, DOCKER_DEFAULT_CAPS);
}

#[test]
fn no_new_privileges_is_set() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "grep",
        "^NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "1"]
    );
}

#[test]
fn the_init_reaps_orphans() {
    let env = setup!(Env::new());
    // The subshell exits at once; its `sleep` is orphaned to PID 1, which must
    // reap it when it ends.
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "(sleep 0.2 &); (sleep 0.2 &); sleep 1; grep -h '^State' /proc/[0-9]*/status",
    ]);
    assert!(!out.contains('Z'), "zombies left: {out}");
}
