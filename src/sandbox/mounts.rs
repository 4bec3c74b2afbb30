//! The mount half of the recipe: runs inside the new user and mount
//! namespaces, as the namespace's root, before `pivot_root`.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, pivot_root};

use super::SandboxError;
use super::plan::{MountKind, MountOp};

type Result<T> = std::result::Result<T, SandboxError>;

fn step(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let what = what.into();
    move |e| SandboxError::Setup {
        step: what,
        source: io::Error::from(e),
    }
}

fn io_step(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Setup { step: what, source }
}

/// Stops mount events from leaking to the host, then makes the rootfs a
/// mount point of its own, which `pivot_root` requires.
pub fn prepare_root(rootfs: &Path) -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make / private"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step(format!(
        "bind the root filesystem {}",
        rootfs.display()
    )))
}

/// Mounts FUSE on the rootfs, as root of the container's user namespace, and
/// returns the `/dev/fuse` descriptor a server must answer on. The kernel
/// checks permissions (`default_permissions`); `allow_other` lets every user
/// of the container in.
pub fn mount_fuse_root(rootfs: &Path) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let dev = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(io_step(
            "open /dev/fuse (chmod 0666 /dev/fuse as root if it is not open to users)",
        ))?;
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other",
        dev.as_raw_fd()
    );
    mount(
        Some("burrow"),
        rootfs,
        Some("fuse.burrow"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(step("mount the FUSE root filesystem"))?;
    Ok(dev.into())
}

/// Performs one mount of the spec under `rootfs`.
pub fn apply(rootfs: &Path, op: &MountOp) -> Result<()> {
    let target =
        secure_join(rootfs, &op.dest).map_err(io_step(format!("resolve {}", op.dest.display())))?;
    let what = || format!("mount {}", op.dest.display());
    match &op.kind {
        MountKind::Bind { source, recursive } => {
            let is_dir = fs::metadata(source)
                .map_err(io_step(format!("bind source {}", source.display())))?
                .is_dir();
            make_target(&target, is_dir)
                .map_err(io_step(format!("create {}", op.dest.display())))?;
            let mut flags = MsFlags::MS_BIND | op.flags;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(
                Some(source.as_path()),
                &target,
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(step(what()))?;
            if op.readonly || !(op.flags & !MsFlags::MS_REC).is_empty() {
                remount_bind(&target, op.flags, op.readonly)
                    .map_err(step(format!("make {} read-only", op.dest.display())))?;
            }
        }
        MountKind::Fs { fstype, source } => {
            make_target(&target, true).map_err(io_step(format!("create {}", op.dest.display())))?;
            let mut flags = op.flags;
            if op.readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            let res = mount(
                Some(source.as_str()),
                &target,
                Some(fstype.as_str()),
                flags,
                op.data.as_deref(),
            );
            match res {
                // A fresh sysfs needs a network namespace of our own; with
                // --network host, bind the host's read-only instead.
                Err(nix::Error::EPERM) if fstype == "sysfs" => {
                    mount(
                        Some("/sys"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None::<&str>,
                    )
                    .map_err(step("bind the host's /sys"))?;
                    remount_bind(&target, MsFlags::empty(), true)
                        .map_err(step("make /sys read-only"))?;
                }
                // devpts with gid=5 fails when gid 5 is not mapped (single-id
                // mode); the kernel then uses the opener's group, which is fine.
                Err(nix::Error::EINVAL) if fstype == "devpts" => {
                    let data = op.data.as_deref().map(|d| {
                        d.split(',')
                            .filter(|o| !o.starts_with("gid="))
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                    mount(
                        Some(source.as_str()),
                        &target,
                        Some("devpts"),
                        flags,
                        data.as_deref(),
                    )
                    .map_err(step(what()))?;
                }
                r => r.map_err(step(what()))?,
            }
        }
    }
    Ok(())
}

/// Makes a bind mount read-only (or applies nosuid/nodev/noexec to it). In a
/// user namespace the kernel refuses a remount that would clear flags locked
/// by the mount's origin, so the current ones are read back and kept.
fn remount_bind(target: &Path, extra: MsFlags, readonly: bool) -> nix::Result<()> {
    let current = statvfs(target)?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    if readonly || current.contains(FsFlags::ST_RDONLY) {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}

/// Creates `target` as a folder or as an empty file for a file bind.
fn make_target(target: &Path, dir: bool) -> io::Result<()> {
    if dir {
        return fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(target);
    }
    if let Some(parent) = target.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    if target.exists() {
        return Ok(());
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(target)
        .map(drop)
}

/// Adds the `/dev` symlinks every container expects.
pub fn dev_symlinks(rootfs: &Path) -> Result<()> {
    let dev = rootfs.join("dev");
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match std::os::unix::fs::symlink(target, dev.join(link)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_step(format!("link /dev/{link}"))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Swaps the root: the rootfs becomes `/` and the host's tree is detached.
/// `pivot_root(".", ".")` stacks the old root on the new one, so one lazy
/// unmount of `.` removes it without needing a spare folder in the image.
pub fn pivot(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(step("enter the root filesystem"))?;
    pivot_root(".", ".").map_err(step("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the host's root"))?;
    chdir("/").map_err(step("chdir /"))
}

/// Hides a path under /proc or /sys: /dev/null over files, an empty read-only
/// tmpfs over folders. Paths this kernel lacks are skipped.
pub fn mask(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let res = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    res.map_err(step(format!("mask {}", path.display())))
}

/// Makes a path read-only in place. Paths this kernel lacks are skipped.
pub fn make_readonly(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .and_then(|()| remount_bind(path, MsFlags::empty(), true))
    .map_err(step(format!("make {} read-only", path.display())))
}

/// Remounts `/` read-only (`--read-only`).
pub fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::empty(), true).map_err(step("make / read-only"))
}

/// Joins `path` under `root` as if `root` were `/`: symlinks met on the way
/// are resolved inside `root`, so an image cannot point a mount outside
/// itself. The last component need not exist.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn secure_join_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/etc")).unwrap();
        symlink("/real/etc", root.join("etc")).unwrap();
        symlink("../../../../outside", root.join("escape")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/etc/hosts")).unwrap(),
            root.join("real/etc/hosts")
        );
        assert_eq!(
            secure_join(root, Path::new("/escape/x")).unwrap(),
            root.join("outside/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../a")).unwrap(),
            root.join("a")
        );
        assert!(secure_join(root, Path::new("/loop")).is_err());
    }
}
