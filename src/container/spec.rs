//! The container's plan as an OCI runtime spec (`config.json`), what runc,
//! crun and youki consume. Everything the sandbox does comes from here.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use caps::Capability;
use oci_spec::runtime::{
    Capability as OciCap, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMapping,
    LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::options::{Network, ResolvedUser};
use super::record::Record;
use crate::sandbox::idmap::IdMap;
use crate::sandbox::plan::{
    ANNOTATION_FUSE_ROOT, ANNOTATION_INIT, ANNOTATION_TAP, TapPlan, all_capabilities, capability,
};

/// The container's side of the userspace network, slirp4netns's layout:
/// 10.0.2.100/24, gateway 10.0.2.2 (the host), DNS 10.0.2.3, MTU 65520;
/// fd00::100/64 via fd00::2 with the same roles over IPv6.
pub fn slirp_tap() -> TapPlan {
    TapPlan {
        name: "tap0".into(),
        address: std::net::Ipv4Addr::new(10, 0, 2, 100),
        prefix: 24,
        gateway: std::net::Ipv4Addr::new(10, 0, 2, 2),
        mtu: 65520,
        ipv6: Some((
            std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100),
            64,
            std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        )),
    }
}

/// The DNS server the userspace network answers on.
pub const SLIRP_DNS: &str = "10.0.2.3";

/// The capabilities Docker grants by default.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Paths Docker hides from containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes bound from the host: a user namespace cannot create them.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Applies `--privileged`, `--cap-add` and `--cap-drop` (with `ALL`) to the
/// default set. Unknown names are errors.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<Capability>> {
    let all = all_capabilities();
    let mut set: std::collections::BTreeSet<String> = if privileged {
        all.iter().map(|c| c.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    let names = |list: &[String]| -> Result<Vec<String>> {
        list.iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.eq_ignore_ascii_case("ALL"))
            .map(|s| {
                capability(s)
                    .map(|c| c.to_string())
                    .map_err(anyhow::Error::from)
            })
            .collect()
    };
    if drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        set.clear();
    }
    for c in names(drop)? {
        set.remove(&c);
    }
    if add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        set.extend(all.iter().map(|c| c.to_string()));
    }
    set.extend(names(add)?);
    Ok(set.iter().filter_map(|n| n.parse().ok()).collect())
}

/// Everything the spec needs besides the record.
pub struct SpecInputs<'a> {
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    pub uid_map: &'a [IdMap],
    pub gid_map: &'a [IdMap],
    pub caps: &'a [Capability],
    /// Files in the container folder bound over `/etc/hosts` and friends.
    pub etc_files: &'a [(&'a str, &'a Path)],
    /// Options of an overlay mounted over the root, for the overlay driver.
    pub root_overlay: Option<&'a [String]>,
}

pub fn build(rec: &Record, inputs: &SpecInputs) -> Result<Spec> {
    let cfg = &rec.config;
    let maps = |m: &[IdMap]| -> Result<Vec<LinuxIdMapping>> {
        m.iter()
            .map(|m| {
                LinuxIdMappingBuilder::default()
                    .container_id(m.container)
                    .host_id(m.host)
                    .size(m.size)
                    .build()
            })
            .collect::<Result<_, _>>()
            .context("id mapping")
    };
    let mut namespaces = vec![
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if cfg.network != Some(Network::Host) {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;

    let oci_caps: std::collections::HashSet<OciCap> = inputs
        .caps
        .iter()
        .filter_map(|c| c.to_string().trim_start_matches("CAP_").parse().ok())
        .collect();
    // Docker gives a non-root user the bounding set only; root gets it
    // effective and permitted too.
    let live = if inputs.user.uid == 0 {
        oci_caps.clone()
    } else {
        Default::default()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(oci_caps)
        .effective(live.clone())
        .permitted(live)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()?;

    let process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .args(rec.command.clone())
        .env(cfg.env.clone())
        .cwd(cfg.workdir.clone())
        .user(
            UserBuilder::default()
                .uid(inputs.user.uid)
                .gid(inputs.user.gid)
                .additional_gids(inputs.user.additional_gids.clone())
                .build()?,
        )
        .capabilities(capabilities)
        .no_new_privileges(true)
        // Resource limits are inherited from the caller, as Podman does.
        .rlimits(Vec::new())
        .build()?;

    let linux = LinuxBuilder::default()
        .uid_mappings(maps(inputs.uid_map)?)
        .gid_mappings(maps(inputs.gid_map)?)
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?;

    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_INIT.to_string(), cfg.init.to_string());
    if cfg.storage_driver == Some(super::rootfs::Driver::Fuse) {
        annotations.insert(ANNOTATION_FUSE_ROOT.to_string(), "true".to_string());
    }
    if let Some(Network::Slirp { .. }) = cfg.network {
        annotations.insert(ANNOTATION_TAP.to_string(), slirp_tap().annotation());
    }

    Ok(SpecBuilder::default()
        .version("1.2.0")
        .root(
            RootBuilder::default()
                .path(inputs.rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(cfg.hostname.clone())
        .process(process)
        .mounts(mounts(rec, inputs)?)
        .linux(linux)
        .annotations(annotations)
        .build()?)
}

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn mounts(rec: &Record, inputs: &SpecInputs) -> Result<Vec<Mount>> {
    let gid5 = crate::sandbox::idmap::is_mapped(inputs.gid_map, 5);
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if gid5 {
        pts.push("gid=5");
    }
    let mut out = Vec::new();
    if let Some(opts) = inputs.root_overlay {
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        out.push(mount("/", "overlay", "overlay", &opts)?);
    }
    out.extend([
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount("/dev/pts", "devpts", "devpts", &pts)?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ]);
    for dev in DEVICES {
        let path = format!("/dev/{dev}");
        out.push(mount(&path, "bind", &path, &["bind", "nosuid", "noexec"])?);
    }
    for (dest, source) in inputs.etc_files {
        out.push(mount(
            dest,
            "bind",
            &source.display().to_string(),
            &["bind", "nosuid", "nodev", "noexec"],
        )?);
    }
    for b in &rec.config.binds {
        let mode = if b.readonly { "ro" } else { "rw" };
        out.push(mount(
            &b.destination,
            "bind",
            &b.source.display().to_string(),
            &["rbind", mode],
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(c: &[Capability]) -> Vec<String> {
        c.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn default_caps_are_dockers() {
        let bits: u64 = capabilities(false, &[], &[])
            .unwrap()
            .iter()
            .map(|c| 1u64 << c.index())
            .sum();
        assert_eq!(bits, 0xa80425fb);
    }

    #[test]
    fn cap_add_and_drop() {
        let c = capabilities(
            false,
            &["net_admin".into()],
            &["CAP_CHOWN".into(), "KILL".into()],
        )
        .unwrap();
        let n = names(&c);
        assert!(n.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!n.contains(&"CAP_CHOWN".to_string()) && !n.contains(&"CAP_KILL".to_string()));
        let only = capabilities(false, &["SYS_ADMIN".into()], &["ALL".into()]).unwrap();
        assert_eq!(names(&only), vec!["CAP_SYS_ADMIN"]);
        assert!(capabilities(false, &["FLY".into()], &[]).is_err());
        assert!(capabilities(true, &[], &[]).unwrap().len() > DEFAULT_CAPS.len());
    }
}
