//! A container's plan: the OCI runtime spec, checked and turned into plain data
//! before any system call is made.
//!
//! Parsing here is where a bad spec is refused, with the field named; the
//! recipe in `child.rs` then walks the plan without decisions of its own.

use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::SandboxError;
use super::idmap::IdMap;

/// The annotation that asks for burrow's built-in init as pid 1.
pub const ANNOTATION_INIT: &str = "io.burrow.init";
/// The annotation that asks for a TAP device in the container's network
/// namespace, handed back to the supervisor: `NAME ADDR/PREFIX GATEWAY MTU`,
/// then optionally `ADDR6/PREFIX GATEWAY6` for IPv6.
pub const ANNOTATION_TAP: &str = "io.burrow.net.tap";

/// The annotation that asks for a FUSE mount as the root filesystem: the
/// child mounts `/dev/fuse` on the rootfs and hands the descriptor to a
/// server the caller runs (burrow's overlay).
pub const ANNOTATION_FUSE_ROOT: &str = "io.burrow.rootfs.fuse";

/// A TAP device to create and configure inside the network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPlan {
    pub name: String,
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mtu: u32,
    /// An IPv6 address, prefix and default gateway, where the kernel has IPv6.
    pub ipv6: Option<(std::net::Ipv6Addr, u8, std::net::Ipv6Addr)>,
}

impl TapPlan {
    /// The annotation's text for this plan.
    pub fn annotation(&self) -> String {
        let v4 = format!(
            "{} {}/{} {} {}",
            self.name, self.address, self.prefix, self.gateway, self.mtu
        );
        match self.ipv6 {
            Some((address, prefix, gateway)) => format!("{v4} {address}/{prefix} {gateway}"),
            None => v4,
        }
    }

    pub fn parse(text: &str) -> Result<TapPlan, SandboxError> {
        let bad = || {
            SandboxError::Spec(format!(
                "annotation {ANNOTATION_TAP}: expected NAME ADDR/PREFIX GATEWAY MTU [ADDR6/PREFIX GATEWAY6], got \"{text}\""
            ))
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (v4, v6) = parts.split_at(parts.len().min(4));
        let [name, cidr, gateway, mtu] = v4 else {
            return Err(bad());
        };
        let ipv6 = match v6 {
            [] => None,
            [cidr6, gateway6] => {
                let (addr, prefix) = cidr6.split_once('/').ok_or_else(bad)?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                if prefix > 128 {
                    return Err(bad());
                }
                let addr = addr.parse().map_err(|_| bad())?;
                Some((addr, prefix, gateway6.parse().map_err(|_| bad())?))
            }
            _ => return Err(bad()),
        };
        let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 || name.is_empty() || name.len() > 15 {
            return Err(bad());
        }
        Ok(TapPlan {
            name: name.to_string(),
            address: addr.parse().map_err(|_| bad())?,
            prefix,
            gateway: gateway.parse().map_err(|_| bad())?,
            mtu: mtu.parse().map_err(|_| bad())?,
            ipv6,
        })
    }

    pub fn netmask(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub readonly_root: bool,
    pub hostname: Option<String>,
    /// Namespaces to create, as clone flags; always includes a user namespace.
    pub namespaces: CloneFlags,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub mounts: Vec<MountOp>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub process: ProcessPlan,
    /// Run burrow's minimal init as pid 1, the command as its child.
    pub init: bool,
    /// A TAP device for the userspace network, if the container has one.
    pub tap: Option<TapPlan>,
    /// Mount FUSE on the rootfs and hand its descriptor to the caller's server.
    pub fuse_root: bool,
}

#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
    pub no_new_privs: bool,
    /// A pseudo-terminal from the container's own devpts is its stdio and
    /// controlling terminal; the master goes to the supervisor
    /// (`Handover::console`).
    pub terminal: bool,
    /// The terminal's size in rows and columns from the start, so the
    /// command never sees a terminal of no size; `None`: 24 by 80.
    pub terminal_size: Option<(u16, u16)>,
}

/// One mount, in the order the spec lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOp {
    /// Absolute path inside the container.
    pub dest: PathBuf,
    pub kind: MountKind,
    /// Flags for the first mount(2) call (without MS_RDONLY for binds, which
    /// need a remount to become read-only).
    pub flags: MsFlags,
    /// Filesystem-specific options (`mode=755,size=65536k`).
    pub data: Option<String>,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MountKind {
    /// A host path bound in; `recursive` for rbind.
    Bind { source: PathBuf, recursive: bool },
    /// A fresh filesystem instance: proc, sysfs, tmpfs, devpts, mqueue.
    Fs { fstype: String, source: String },
}

impl Plan {
    /// Checks a spec and turns it into a plan. `bundle` resolves a relative
    /// `root.path`, as the runtime spec says.
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<Plan, SandboxError> {
        let bad = |field: &str, why: String| SandboxError::Spec(format!("{field}: {why}"));
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| bad("root", "missing".into()))?;
        let rootfs = bundle.join(root.path());
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| bad("linux", "missing".into()))?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| bad("process", "missing".into()))?;

        let mut namespaces = CloneFlags::empty();
        for ns in linux.namespaces().iter().flatten() {
            if ns.path().is_some() {
                return Err(bad(
                    "linux.namespaces",
                    "joining an existing namespace is not supported".into(),
                ));
            }
            namespaces |= match ns.typ() {
                LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                other => {
                    return Err(bad(
                        "linux.namespaces",
                        format!("{other:?} is not supported"),
                    ));
                }
            };
        }
        let required = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
        if !namespaces.contains(required) {
            return Err(bad(
                "linux.namespaces",
                "a rootless container needs user and mount namespaces".into(),
            ));
        }

        let maps = |m: &Option<Vec<LinuxIdMapping>>| -> Vec<IdMap> {
            m.iter()
                .flatten()
                .map(|m| IdMap {
                    container: m.container_id(),
                    host: m.host_id(),
                    size: m.size(),
                })
                .collect()
        };
        let (uid_map, gid_map) = (maps(linux.uid_mappings()), maps(linux.gid_mappings()));
        if uid_map.is_empty() || gid_map.is_empty() {
            return Err(bad(
                "linux.uidMappings",
                "a user namespace needs uid and gid mappings".into(),
            ));
        }

        let mounts = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| {
                mount_op(
                    m.destination(),
                    m.typ().as_deref(),
                    m.source().as_deref(),
                    m.options().as_deref().unwrap_or(&[]),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        let annotation = |key: &str| spec.annotations().as_ref().and_then(|a| a.get(key));
        let init = annotation(ANNOTATION_INIT).is_some_and(|v| v == "true");
        let tap = annotation(ANNOTATION_TAP)
            .map(|t| TapPlan::parse(t))
            .transpose()?;
        let fuse_root = annotation(ANNOTATION_FUSE_ROOT).is_some_and(|v| v == "true");
        if tap.is_some() && !namespaces.contains(CloneFlags::CLONE_NEWNET) {
            return Err(bad(
                "annotations",
                format!("{ANNOTATION_TAP} needs a network namespace"),
            ));
        }

        Ok(Plan {
            rootfs,
            readonly_root: root.readonly().unwrap_or(false),
            hostname: spec.hostname().clone(),
            namespaces,
            uid_map,
            gid_map,
            mounts,
            masked_paths: linux
                .masked_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            readonly_paths: linux
                .readonly_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            process: process_plan(process)?,
            init,
            tap,
            fuse_root,
        })
    }
}

fn process_plan(p: &oci_spec::runtime::Process) -> Result<ProcessPlan, SandboxError> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SandboxError::Spec("process.args: no command given".into()));
    }
    let caps = p.capabilities().as_ref();
    let set = |s: Option<&oci_spec::runtime::Capabilities>| -> Result<CapsHashSet, SandboxError> {
        s.into_iter()
            .flatten()
            .map(|c| capability(&c.to_string()))
            .collect()
    };
    Ok(ProcessPlan {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().clone(),
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        bounding: set(caps.and_then(|c| c.bounding().as_ref()))?,
        effective: set(caps.and_then(|c| c.effective().as_ref()))?,
        permitted: set(caps.and_then(|c| c.permitted().as_ref()))?,
        inheritable: set(caps.and_then(|c| c.inheritable().as_ref()))?,
        ambient: set(caps.and_then(|c| c.ambient().as_ref()))?,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        terminal_size: None,
    })
}

/// Parses a capability name in either form: `CAP_NET_ADMIN` or `NET_ADMIN`.
pub fn capability(name: &str) -> Result<Capability, SandboxError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map_err(|_| SandboxError::Spec(format!("unknown capability \"{name}\"")))
}

/// Every capability this kernel knows, for `--privileged` and `ALL`.
pub fn all_capabilities() -> CapsHashSet {
    caps::runtime::thread_all_supported()
}

/// Which capability set a name refers to in error messages.
pub fn set_name(set: CapSet) -> &'static str {
    match set {
        CapSet::Ambient => "ambient",
        CapSet::Bounding => "bounding",
        CapSet::Effective => "effective",
        CapSet::Inheritable => "inheritable",
        CapSet::Permitted => "permitted",
    }
}

/// Translates fstab-style options into mount(2) flags and filesystem data.
pub fn mount_op(
    dest: &Path,
    typ: Option<&str>,
    source: Option<&Path>,
    options: &[String],
) -> Result<MountOp, SandboxError> {
    if !dest.is_absolute() {
        return Err(SandboxError::Spec(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut readonly = false;
    let mut bind = typ == Some("bind");
    let mut recursive = false;
    for opt in options {
        match opt.as_str() {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "bind" => bind = true,
            "rbind" => (bind, recursive) = (true, true),
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            // Propagation: every container mount is private; nothing to do.
            "private" | "rprivate" | "slave" | "rslave" => {}
            other => data.push(other.to_string()),
        }
    }
    let kind = if bind {
        let source = source.ok_or_else(|| {
            SandboxError::Spec(format!("bind mount on {} has no source", dest.display()))
        })?;
        MountKind::Bind {
            source: source.to_path_buf(),
            recursive,
        }
    } else {
        let fstype = typ
            .ok_or_else(|| SandboxError::Spec(format!("mount on {} has no type", dest.display())))?
            .to_string();
        let source = source
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| fstype.clone());
        MountKind::Fs { fstype, source }
    };
    Ok(MountOp {
        dest: dest.to_path_buf(),
        kind,
        flags,
        data: (!data.is_empty()).then(|| data.join(",")),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bind_options() {
        let m = mount_op(
            Path::new("/work"),
            Some("bind"),
            Some(Path::new("/home/u")),
            &opts(&["rbind", "ro"]),
        )
        .unwrap();
        assert_eq!(
            m.kind,
            MountKind::Bind {
                source: "/home/u".into(),
                recursive: true
            }
        );
        assert!(m.readonly && m.data.is_none());
    }

    #[test]
    fn fs_options() {
        let m = mount_op(
            Path::new("/dev"),
            Some("tmpfs"),
            Some(Path::new("tmpfs")),
            &opts(&["nosuid", "mode=755", "size=65536k"]),
        )
        .unwrap();
        assert_eq!(
            m.kind,
            MountKind::Fs {
                fstype: "tmpfs".into(),
                source: "tmpfs".into()
            }
        );
        assert_eq!(m.flags, MsFlags::MS_NOSUID);
        assert_eq!(m.data.as_deref(), Some("mode=755,size=65536k"));
        assert!(mount_op(Path::new("rel"), Some("tmpfs"), None, &[]).is_err());
        assert!(mount_op(Path::new("/x"), Some("bind"), None, &[]).is_err());
    }

    #[test]
    fn tap_annotation_round_trip() {
        let t = TapPlan::parse("tap0 10.0.2.100/24 10.0.2.2 65520").unwrap();
        assert_eq!(t.netmask(), std::net::Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(TapPlan::parse(&t.annotation()).unwrap(), t);
        let t6 = TapPlan::parse("tap0 10.0.2.100/24 10.0.2.2 65520 fd00::100/64 fd00::2").unwrap();
        assert_eq!(
            t6.ipv6,
            Some(("fd00::100".parse().unwrap(), 64, "fd00::2".parse().unwrap()))
        );
        assert_eq!(TapPlan::parse(&t6.annotation()).unwrap(), t6);
        for bad in [
            "tap0 10.0.2.100/24 10.0.2.2 1500 fd00::100/64",
            "tap0 10.0.2.100/24 10.0.2.2 1500 fd00::100/129 fd00::2",
            "tap0",
            "tap0 10.0.2.100 10.0.2.2 1500",
            "tap0 10.0.2.100/33 10.0.2.2 1500",
            "t 1.2.3.4/8 x 1",
        ] {
            assert!(TapPlan::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capability_names() {
        assert_eq!(capability("net_admin").unwrap(), Capability::CAP_NET_ADMIN);
        assert_eq!(capability("CAP_CHOWN").unwrap(), Capability::CAP_CHOWN);
        assert!(capability("FLY").is_err());
    }
}
