//! What the host allows an unprivileged user, read from `/proc` and `/sys`,
//! for `burrow info` and for errors that name the restriction and its fix.

use std::path::Path;

use nix::unistd::{AccessFlags, access};

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Why unprivileged user namespaces are unavailable, with the fix, if a known
/// restriction is in force.
pub fn userns_restriction() -> Option<String> {
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0); enable them with: sudo sysctl -w user.max_user_namespaces=15000".into());
    }
    if read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); enable them with: sudo sysctl -w kernel.unprivileged_userns_clone=1".into());
    }
    if read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 24.04); allow them with: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give burrow an AppArmor profile with 'userns,'".into());
    }
    None
}

/// Prefixes a failing step with the restriction that explains it, if any.
pub fn userns_hint(step: &str) -> String {
    match userns_restriction() {
        Some(why) => format!("{step}: {why}"),
        None => step.to_string(),
    }
}

/// One line of `burrow info`'s feature list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

fn feature(name: &'static str, available: bool, detail: impl Into<String>) -> Feature {
    Feature {
        name,
        available,
        detail: detail.into(),
    }
}

/// Everything `info` reports about the kernel and the host.
pub fn features() -> Vec<Feature> {
    let max = read_trim("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "unknown".into());
    let userns = match userns_restriction() {
        Some(why) => feature("user namespaces", false, why),
        None => feature(
            "user namespaces",
            Path::new("/proc/self/ns/user").exists(),
            format!("max_user_namespaces = {max}"),
        ),
    };
    let (major, minor) = kernel_version();
    let overlay_fs =
        std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("\toverlay"));
    let overlay = feature(
        "overlayfs in a user namespace",
        overlay_fs && (major, minor) >= (5, 11),
        if !overlay_fs {
            "overlay is not in /proc/filesystems (modprobe overlay)".to_string()
        } else {
            format!("kernel {major}.{minor}; needs 5.11 or later")
        },
    );
    let fuse = device_feature("FUSE", "/dev/fuse", "fuse3 / kmod fuse");
    let fusermount = crate::sandbox::idmap::find_helper("fusermount3");
    let fuse = Feature {
        detail: format!(
            "{}; fusermount3 {}",
            fuse.detail,
            fusermount
                .map(|p| format!("at {}", p.display()))
                .unwrap_or_else(|| "not found (apt install fuse3)".into())
        ),
        ..fuse
    };
    let tap = device_feature("TAP devices", "/dev/net/tun", "the tun module");
    let ping = read_trim("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let gid = nix::unistd::getegid().as_raw();
    let ping_ok = ping
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0))
        .collect::<Vec<_>>()
        .as_slice()
        .windows(2)
        .next()
        .is_some_and(|w| w[0] <= u64::from(gid) && u64::from(gid) <= w[1]);
    let ports =
        read_trim("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or_else(|| "1024".into());
    vec![
        userns,
        overlay,
        fuse,
        tap,
        feature(
            "unprivileged ICMP echo",
            ping_ok,
            format!("net.ipv4.ping_group_range = {}", ping.replace('\t', " ")),
        ),
        feature(
            "unprivileged ports",
            true,
            format!("net.ipv4.ip_unprivileged_port_start = {ports}"),
        ),
        cgroups(),
    ]
}

fn device_feature(name: &'static str, dev: &str, module: &str) -> Feature {
    if !Path::new(dev).exists() {
        return feature(name, false, format!("{dev} missing (load {module})"));
    }
    match access(dev, AccessFlags::R_OK | AccessFlags::W_OK) {
        Ok(()) => feature(name, true, format!("{dev} is accessible")),
        Err(_) => feature(
            name,
            false,
            format!(
                "{dev} is not readable and writable by this user; fix with: sudo chmod 0666 {dev}"
            ),
        ),
    }
}

fn cgroups() -> Feature {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let on = |dir: &str, fs: &str| {
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(dir) && l.split(' ').nth(2) == Some(fs))
    };
    let (mode, detail) = if on("/sys/fs/cgroup", "cgroup2") {
        (
            "v2",
            "unified hierarchy; limits need systemd delegation (not used yet)",
        )
    } else if on("/sys/fs/cgroup/unified", "cgroup2") {
        (
            "hybrid",
            "v1 controllers with cgroup2 at /sys/fs/cgroup/unified; resource limits unavailable",
        )
    } else {
        ("v1", "v1 only; resource limits unavailable")
    };
    feature("cgroups", false, format!("{mode}: {detail}"))
}

/// The running kernel's major and minor version.
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
