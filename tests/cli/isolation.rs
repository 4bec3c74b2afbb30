//! What a container sees: its ids, processes, host name, network, file system.

use std::fs;
use std::path::Path;

use crate::util::Env;

/// `cat /proc/self/uid_map` (or gid_map) as (inside, outside, count) rows.
fn id_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().map(|n| n.parse().unwrap()).collect();
            assert_eq!(f.len(), 3, "bad map line {l:?}");
            (f[0], f[1], f[2])
        })
        .collect()
}

#[test]
fn root_inside_is_the_user_outside_plus_its_subordinate_ids() {
    let env = setup!(Env::subuid());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo --; cat /proc/self/gid_map",
    ]);
    let (uid, rest) = out.split_once('\n').unwrap();
    assert_eq!(uid, "0", "{out}");
    let (uids, gids) = rest.split_once("--\n").unwrap();
    let (sub_start, _) = env.user.subuid.unwrap();
    let uids = id_map(uids);
    assert_eq!(uids[0], (0, env.user.uid as u64, 1), "{out}");
    assert_eq!(uids.len(), 2, "{out}");
    assert_eq!((uids[1].0, uids[1].1), (1, sub_start as u64), "{out}");
    assert!(
        uids[1].2 >= 65534,
        "ids up to nobody (65534) are mapped: {out}"
    );
    let gids = id_map(gids);
    assert_eq!(gids[0], (0, env.user.gid as u64, 1), "{out}");
    assert_eq!(gids[1].1, env.user.subgid.unwrap().0 as u64, "{out}");
}

#[test]
fn without_subordinate_ids_only_the_user_is_mapped() {
    let env = setup!(Env::single_id());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let (uid, map) = out.split_once('\n').unwrap();
    assert_eq!(uid, "0", "{out}");
    assert_eq!(id_map(map), vec![(0, env.user.uid as u64, 1)], "{out}");
    // Files the image gives to uid 1000 still exist (owned by root here).
    env.ok(["run", "--rm", "busybox", "test", "-d", "/home/user"]);
}

#[test]
fn without_subordinate_ids_other_users_are_refused() {
    let env = setup!(Env::single_id());
    let out = env
        .burrow(["run", "--rm", "--user", "1000", "busybox", "id"])
        .burrow_error();
    assert!(
        out.stderr.contains("subuid"),
        "the error says what to set up\n{}",
        out.describe()
    );
}

#[test]
fn the_container_sees_only_its_own_processes() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ls -d /proc/[0-9]*; echo --; ps",
    ]);
    let (pids, ps) = out.split_once("--\n").unwrap();
    let pids: Vec<&str> = pids.lines().collect();
    assert!(pids.contains(&"/proc/1"), "{out}");
    assert!(pids.len() <= 4, "only the init, sh and ls: {out}");
    let rows = ps.lines().skip(1).count();
    assert!(
        (2..=4).contains(&rows),
        "ps shows only the container's processes: {out}"
    );
    // Without the init, the command itself is PID 1.
    assert_eq!(
        env.ok([
            "run",
            "--rm",
            "--init=false",
            "busybox",
            "sh",
            "-c",
            "echo $$"
        ]),
        "1\n"
    );
}

#[test]
fn hostname_and_etc_files() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo --; cat /etc/hosts; echo --; test -f /etc/resolv.conf && echo resolv",
    ]);
    let parts: Vec<&str> = out.split("--\n").collect();
    assert_eq!(parts[0], "box\nbox\n", "{out}");
    assert!(parts[1].contains("localhost"), "{out}");
    assert!(
        parts[1]
            .lines()
            .any(|l| l.split_whitespace().skip(1).any(|n| n == "box")),
        "/etc/hosts names the host: {out}"
    );
    assert_eq!(parts[2], "resolv\n", "{out}");
}

#[test]
fn network_none_has_only_loopback() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; echo --; tail -n +3 /proc/net/dev | cut -d: -f1; echo --; ip -o link",
    ]);
    let parts: Vec<&str> = out.split("--\n").collect();
    assert_eq!(
        parts[0].split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    assert_eq!(
        parts[1].split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    let links: Vec<&str> = parts[2].lines().collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(
        links[0].contains("lo:") && links[0].contains("UP"),
        "loopback is up: {out}"
    );
    // The default is the userspace network: loopback and the TAP device.
    let default = env.ok(["run", "--rm", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(
        default.split_whitespace().collect::<Vec<_>>(),
        ["lo", "tap0"]
    );
}

#[test]
fn network_host_sees_the_hosts_interfaces() {
    let env = setup!(Env::new());
    let host_dev = fs::read_to_string("/proc/net/dev").unwrap();
    let names = |text: &str| {
        let mut v: Vec<String> = text
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect();
        v.sort();
        v
    };
    let out = env.ok([
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    assert_eq!(names(&out), names(&host_dev));
}

#[test]
fn proc_hides_what_docker_hides() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "for f in /proc/kcore /proc/keys /proc/timer_list; do \
            if [ -e $f ]; then echo $f $(wc -c < $f); else echo $f absent; fi; done; \
         [ -c /proc/kcore ] && echo kcore-is-char; \
         echo firmware: $(ls /sys/firmware 2>/dev/null | wc -l); \
         echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-readonly",
    ]);
    for f in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        let line = out.lines().find(|l| l.starts_with(f)).unwrap();
        assert!(
            line.ends_with(" 0") || line.ends_with("absent"),
            "{f} is masked: {out}"
        );
    }
    // Some kernels have no /proc/kcore at all.
    if Path::new("/proc/kcore").exists() {
        assert!(
            out.contains("kcore-is-char"),
            "/proc/kcore is /dev/null bound over: {out}"
        );
    }
    assert!(out.contains("firmware: 0"), "{out}");
    assert!(out.contains("sysrq-readonly"), "{out}");
}

#[test]
fn dev_has_the_standard_devices() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo $d; done; \
         for d in pts shm mqueue; do [ -d /dev/$d ] && echo $d; done; \
         echo x > /dev/null && echo null-ok; \
         head -c 5 /dev/zero | wc -c; \
         echo x > /dev/full 2>/dev/null || echo full-fails; \
         head -c 8 /dev/urandom | wc -c; \
         [ -L /dev/fd ] && echo fd-link; \
         touch /dev/shm/x && echo shm-writable",
    ]);
    let expected = "null\nzero\nfull\nrandom\nurandom\ntty\npts\nshm\nmqueue\nnull-ok\n5\nfull-fails\n8\nfd-link\nshm-writable\n";
    assert_eq!(out, expected);
}

#[test]
fn volumes_bind_host_folders() {
    let env = setup!(Env::new());
    let shared = env.home().join("shared");
    env.host("mkdir", [shared.to_str().unwrap()]).success();
    env.host(
        "sh",
        [
            "-c",
            &format!(
                "echo one > {0}/a.txt; echo two > {0}/b.txt",
                shared.display()
            ),
        ],
    )
    .success();

    let ro = format!("{}:/work:ro", shared.display());
    assert_eq!(
        env.ok(["run", "--rm", "-v", &ro, "busybox", "ls", "/work"]),
        "a.txt\nb.txt\n"
    );
    let out = env.burrow([
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /work/a.txt; touch /work/new",
    ]);
    assert_eq!(out.stdout, "one\n");
    assert_ne!(
        out.code,
        0,
        "a read-only volume refuses writes\n{}",
        out.describe()
    );
    assert!(!shared.join("new").exists());

    let rw = format!("{}:/work", shared.display());
    env.ok([
        "run",
        "--rm",
        "-v",
        &rw,
        "busybox",
        "sh",
        "-c",
        "echo three > /work/c.txt",
    ]);
    assert_eq!(fs::read_to_string(shared.join("c.txt")).unwrap(), "three\n");
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(shared.join("c.txt")).unwrap());
    assert_eq!(
        owner, env.user.uid,
        "files root writes in a volume belong to the user outside"
    );
}

#[test]
fn a_file_can_be_bound_too() {
    let env = setup!(Env::new());
    let file = env.home().join("config.txt");
    env.host("sh", ["-c", &format!("echo setting > {}", file.display())])
        .success();
    let spec = format!("{}:/etc/app.conf:ro", file.display());
    assert_eq!(
        env.ok([
            "run",
            "--rm",
            "-v",
            &spec,
            "busybox",
            "cat",
            "/etc/app.conf"
        ]),
        "setting\n"
    );
}
