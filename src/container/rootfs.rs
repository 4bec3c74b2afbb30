//! The container's root filesystem, prepared from the image's layers.
//!
//! This is the one place that decides how a rootfs is made; the rest of the
//! container module sees only a [`Rootfs`]: a folder to name as the spec's
//! root and, for overlay drivers, the mount that fills it. Drivers:
//!
//! - `overlay`: the kernel's overlayfs, mounted by the sandbox inside the
//!   container's user and mount namespaces (`userxattr`, Linux 5.11+). The
//!   image layers are the lower dirs, `upper/` and `work/` in the container
//!   folder keep its changes. Nothing is copied, and the mount vanishes with
//!   the container's mount namespace, so no stale mount can outlive it.
//! - `fuse`: burrow's own overlay ([`crate::overlay`]) served over FUSE by a
//!   process the supervisor starts in a user namespace with the container's
//!   maps; the sandbox mounts `/dev/fuse` on the rootfs and hands the
//!   descriptor over. Reads the store's OCI whiteouts directly, so it serves
//!   images the kernel overlay cannot, and works where the kernel refuses
//!   overlayfs in a user namespace.
//! - `vfs`: a private copy of every layer, bottom first, with OCI whiteouts
//!   (`.wh.NAME` deletes NAME, `.wh..wh..opq` empties the folder) applied on
//!   the way. The last resort, and the one that works everywhere.
//!
//! Checks come first, so a problem is one clear error instead of a failed
//! mount inside the sandbox: every layer must still be in the store; the
//! kernel overlay needs an upper dir on a filesystem with user xattrs and
//! d_type; the FUSE overlay needs `/dev/fuse`. When the user named no
//! driver, a driver that fails its check gives way to the next one; a
//! driver the user asked for is checked, never replaced.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// A storage driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Overlay,
    Fuse,
    Vfs,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Fuse => "fuse",
            Driver::Vfs => "vfs",
        }
    }

    /// Parses `--storage-driver`; `None` for automatic choice.
    pub fn parse(s: &str) -> Result<Option<Driver>> {
        match s {
            "" | "auto" => Ok(None),
            "overlay" => Ok(Some(Driver::Overlay)),
            "vfs" => Ok(Some(Driver::Vfs)),
            "fuse" => Ok(Some(Driver::Fuse)),
            other => bail!("unknown storage driver \"{other}\": use overlay, fuse or vfs"),
        }
    }
}

/// Picks a driver, and says why, for `info`: the kernel overlay where it
/// works, else burrow's FUSE overlay, else a copy. A driver the user asked
/// for is checked, not replaced.
pub fn choose(requested: Option<Driver>, layers: &[PathBuf]) -> Result<(Driver, String)> {
    choose_in(requested, layers, None)
}

/// [`choose`] for a container whose upper dir will live in `upper_parent`
/// (or on its filesystem): also checks that every layer is in the store and
/// that the kernel overlay can keep its upper dir there.
pub fn choose_in(
    requested: Option<Driver>,
    layers: &[PathBuf],
    upper_parent: Option<&Path>,
) -> Result<(Driver, String)> {
    check_layers(layers)?;
    let kernel_overlay_blocked =
        || overlay_unavailable().or_else(|| upper_parent.and_then(upper_fs_unsuitable_once));
    match requested {
        Some(Driver::Overlay) => {
            if let Some(why) = kernel_overlay_blocked() {
                bail!(
                    "the overlay storage driver is unavailable: {why}; use --storage-driver fuse or vfs"
                );
            }
            return Ok((Driver::Overlay, "requested".into()));
        }
        Some(Driver::Fuse) => {
            if let Some(why) = fuse_unavailable() {
                bail!(
                    "the fuse storage driver is unavailable: {why}; use --storage-driver overlay or vfs"
                );
            }
            return Ok((Driver::Fuse, "requested".into()));
        }
        Some(Driver::Vfs) => return Ok((Driver::Vfs, "requested".into())),
        None => {}
    }
    let fuse = fuse_unavailable().is_none();
    let why = match kernel_overlay_blocked() {
        None if !layers.iter().any(|l| has_whiteouts(l)) => {
            return Ok((
                Driver::Overlay,
                "the kernel allows overlayfs in a user namespace".into(),
            ));
        }
        None => "the image's layers hold OCI whiteouts, which the kernel overlay does not read"
            .to_string(),
        Some(why) => why,
    };
    Ok(if fuse {
        (Driver::Fuse, why)
    } else {
        (Driver::Vfs, format!("{why}, and FUSE is unavailable"))
    })
}

/// Checks that every layer folder of the image is still in the store: one
/// removed by hand (or by a damaged store) would otherwise surface as a
/// failed mount or copy with no hint of the cause.
pub fn check_layers(layers: &[PathBuf]) -> Result<()> {
    for layer in layers {
        if !fs::metadata(layer).is_ok_and(|m| m.is_dir()) {
            let id = layer.file_name().unwrap_or_default().to_string_lossy();
            bail!(
                "image layer {id} is missing from the store ({} is gone); remove the image (burrow rmi IMAGE) and pull or load it again",
                layer.display()
            );
        }
    }
    Ok(())
}

/// Why the filesystem holding the folder `dir` cannot hold the kernel
/// overlay's upper dir, if it cannot. overlayfs in a user namespace
/// (`userxattr`) records opaque folders and renames in `user.overlay.*`
/// xattrs, and needs the file type in directory entries (d_type) to merge
/// folders. Probed with a scratch folder in `dir`, removed afterwards.
pub fn upper_fs_unsuitable(dir: &Path) -> Option<String> {
    let probe = dir.join(format!(".burrow-fs-probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&probe);
    if let Err(e) = fs::create_dir(&probe) {
        return Some(format!("cannot write in {}: {e}", dir.display()));
    }
    let lacking = probe_upper_fs(&probe);
    let _ = fs::remove_dir_all(&probe);
    let fix = "put burrow's data on a local filesystem such as ext4, xfs (ftype=1) or btrfs with --root DIR";
    match lacking {
        Ok(None) => None,
        Ok(Some(what)) => Some(format!(
            "the filesystem of {} does not support {what}, which the kernel overlay's upper dir needs ({fix})",
            dir.display()
        )),
        Err(e) => Some(format!(
            "cannot check the filesystem of {}: {e}",
            dir.display()
        )),
    }
}

/// [`upper_fs_unsuitable`], probed once per filesystem rather than on every
/// container start: a filesystem that passed is remembered by its device
/// number in `.upper-fs-ok` in the data folder (`dir` is a staging folder,
/// `DATA/tmp/create-ID`; losing that file costs one probe).
fn upper_fs_unsuitable_once(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let data = dir.parent().and_then(Path::parent);
    let (Ok(meta), Some(data)) = (fs::metadata(dir), data) else {
        return upper_fs_unsuitable(dir);
    };
    let marker = data.join(".upper-fs-ok");
    let dev = meta.dev().to_string();
    if fs::read_to_string(&marker).is_ok_and(|s| s.trim() == dev) {
        return None;
    }
    let why = upper_fs_unsuitable(dir);
    if why.is_none() {
        let _ = fs::write(&marker, dev);
    }
    why
}

/// What the filesystem of the empty folder `probe` lacks, if anything.
fn probe_upper_fs(probe: &Path) -> io::Result<Option<&'static str>> {
    let file = probe.join("f");
    fs::write(&file, b"")?;
    match xattr::set(&file, "user.burrow.probe", b"1") {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
            return Ok(Some("user extended attributes (user.*)"));
        }
        Err(e) => return Err(e),
    }
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let mut dir = nix::dir::Dir::open(probe, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
    for entry in dir.iter() {
        let entry = entry?;
        if entry.file_name().to_bytes() == b"f" && entry.file_type().is_none() {
            return Ok(Some("file types in directory entries (d_type)"));
        }
    }
    Ok(None)
}

/// Why the kernel overlay cannot be used here, if it cannot.
pub fn overlay_unavailable() -> Option<String> {
    let (major, minor) = crate::sandbox::probe::kernel_version();
    if (major, minor) < (5, 11) {
        return Some(format!(
            "kernel {major}.{minor} cannot mount overlayfs in a user namespace (needs 5.11)"
        ));
    }
    if !fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("\toverlay")) {
        return Some("overlayfs is not available (modprobe overlay)".into());
    }
    None
}

/// Why burrow's FUSE overlay cannot be mounted here, if it cannot. The
/// sandbox mounts it directly as root of the container's user namespace,
/// so only `/dev/fuse` matters (no fusermount3).
pub fn fuse_unavailable() -> Option<String> {
    use nix::unistd::{AccessFlags, access};
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing (modprobe fuse)".into());
    }
    access("/dev/fuse", AccessFlags::R_OK | AccessFlags::W_OK)
        .err()
        .map(|_| {
            "/dev/fuse is not readable and writable by this user (as root: chmod 0666 /dev/fuse)"
                .into()
        })
}

/// A prepared root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub driver: Driver,
    /// Options of the overlay mount the sandbox makes at `/`, if any.
    pub overlay_options: Option<Vec<String>>,
}

/// Prepares `dir/rootfs` (and `upper/`, `work/` for overlay) from `layers`,
/// bottom first. `final_dir` is where `dir` will live once the container
/// exists (the overlay options name final paths). `throwaway`: the
/// container is removed when it exits (`--rm`), so its writable layer need
/// not survive a crash of the host; the kernel overlay is then mounted
/// `volatile` (no syncs reach the upper dir's disk), as Podman does.
pub fn prepare(
    driver: Driver,
    layers: &[PathBuf],
    dir: &Path,
    final_dir: &Path,
    throwaway: bool,
) -> Result<Rootfs> {
    check_layers(layers)?;
    let target = dir.join("rootfs");
    fs::create_dir(&target).with_context(|| format!("cannot create {}", target.display()))?;
    match driver {
        Driver::Vfs => {
            for layer in layers {
                copy_layer(layer, &target).with_context(|| {
                    format!("cannot copy layer {} into the container", layer.display())
                })?;
            }
            Ok(Rootfs {
                driver,
                overlay_options: None,
            })
        }
        Driver::Fuse => {
            for sub in ["upper", "work"] {
                fs::create_dir(dir.join(sub))
                    .with_context(|| format!("cannot create {sub} in {}", dir.display()))?;
            }
            Ok(Rootfs {
                driver,
                overlay_options: None,
            })
        }
        Driver::Overlay => {
            for sub in ["upper", "work"] {
                fs::create_dir(dir.join(sub))
                    .with_context(|| format!("cannot create {sub} in {}", dir.display()))?;
            }
            let lowers: Vec<String> = layers
                .iter()
                .rev()
                .map(|l| l.display().to_string())
                .collect();
            if lowers.is_empty() {
                bail!("the image has no layers");
            }
            if let Some(bad) = lowers.iter().find(|l| l.contains([',', ':'])) {
                bail!(
                    "layer path {bad} contains ',' or ':', which overlayfs options cannot express; use --storage-driver vfs"
                );
            }
            let mut options = vec![
                format!("lowerdir={}", lowers.join(":")),
                format!("upperdir={}", final_dir.join("upper").display()),
                format!("workdir={}", final_dir.join("work").display()),
                "userxattr".into(),
            ];
            if throwaway {
                options.push("volatile".into());
            }
            Ok(Rootfs {
                driver,
                overlay_options: Some(options),
            })
        }
    }
}

/// Reads a file of the image (such as `/etc/passwd`) from its layers, top
/// down, without a prepared rootfs: the overlay driver has none until the
/// sandbox mounts it. A whiteout in a higher layer hides lower copies.
pub fn read_image_file(layers: &[PathBuf], path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let whiteout = path.with_file_name(format!("{WHITEOUT_PREFIX}{name}"));
    for layer in layers.iter().rev() {
        let found = crate::sandbox::secure_join(layer, path).ok()?;
        if found.is_file() {
            return fs::read_to_string(found).ok();
        }
        if crate::sandbox::secure_join(layer, &whiteout).ok()?.exists() {
            return None;
        }
    }
    None
}

/// Whether a layer folder holds any OCI whiteout. Layers never change once
/// unpacked, so the answer is kept in a marker beside the layer
/// (`<layer>.whiteouts` or `<layer>.no-whiteouts`) and the walk happens once.
fn has_whiteouts(layer: &Path) -> bool {
    let (yes, no) = (
        crate::store::whiteout_marker(layer, true),
        crate::store::whiteout_marker(layer, false),
    );
    if yes.exists() {
        return true;
    }
    if no.exists() {
        return false;
    }
    let found = walk_for_whiteouts(layer);
    // Best effort: a layer folder we may not write to is walked each time.
    let _ = fs::write(if found { &yes } else { &no }, b"");
    found
}

fn walk_for_whiteouts(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(WHITEOUT_PREFIX)
            || (e.file_type().is_ok_and(|t| t.is_dir()) && walk_for_whiteouts(&e.path()))
    })
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn copy_layer(src: &Path, dst: &Path) -> io::Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
    // An opaque marker hides everything lower layers put here.
    if entries.iter().any(|e| e.file_name() == OPAQUE) {
        for old in fs::read_dir(dst)? {
            remove_any(&old?.path())?;
        }
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE {
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            remove_any(&dst.join(hidden))?;
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&to)?;
                    fs::create_dir(&to)?;
                }
                Err(_) => fs::create_dir(&to)?,
            }
            copy_layer(&from, &to)?;
            // Write permission was needed while filling the folder.
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            continue;
        }
        if fs::symlink_metadata(&to).is_ok() {
            remove_any(&to)?;
        }
        if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        }
        // Sockets, fifos and devices cannot be made unprivileged; a layer
        // unpacked by burrow has none.
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_layer_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let present = tmp.path().join("aaa");
        fs::create_dir(&present).unwrap();
        let gone = tmp.path().join("bbb");
        let err = check_layers(&[present.clone(), gone])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image layer bbb is missing from the store"),
            "{err}"
        );
        check_layers(&[present]).unwrap();
    }

    #[test]
    fn an_ordinary_folder_can_hold_an_upper_dir_and_the_probe_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(upper_fs_unsuitable(tmp.path()), None);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    /// ramfs has no user xattrs. Mounting it needs root (CI runs the unit
    /// tests as root); the mount lives in a mount namespace of this test's
    /// thread alone, which dies with the thread, so nothing is left.
    #[test]
    fn a_filesystem_without_user_xattrs_is_refused_for_the_upper_dir() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting ramfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let why = std::thread::spawn(move || {
            use nix::mount::{MsFlags, mount};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount(
                Some("none"),
                &dir,
                Some("ramfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            upper_fs_unsuitable(&dir)
        })
        .join()
        .unwrap()
        .expect("ramfs must be refused");
        assert!(why.contains("user extended attributes"), "{why}");
        assert!(why.contains("--root DIR"), "{why}");
    }

    #[test]
    fn layers_with_whiteouts() {
        let tmp = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (
            tmp.path().join("l1"),
            tmp.path().join("l2"),
            tmp.path().join("out"),
        );
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::create_dir_all(l1.join("opq")).unwrap();
        fs::write(l1.join("etc/motd"), "old").unwrap();
        fs::write(l1.join("etc/gone"), "x").unwrap();
        fs::write(l1.join("opq/old"), "x").unwrap();
        symlink("etc/motd", l1.join("link")).unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::create_dir_all(l2.join("opq")).unwrap();
        fs::write(l2.join("etc/motd"), "new").unwrap();
        fs::write(l2.join("etc/.wh.gone"), "").unwrap();
        fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
        fs::write(l2.join("opq/fresh"), "y").unwrap();
        fs::create_dir(&out).unwrap();
        prepare(Driver::Vfs, &[l1, l2], &out, &out, false).unwrap();
        let out = out.join("rootfs");
        assert_eq!(fs::read_to_string(out.join("etc/motd")).unwrap(), "new");
        assert!(!out.join("etc/gone").exists());
        assert!(!out.join("opq/old").exists() && out.join("opq/fresh").exists());
        assert_eq!(
            fs::read_link(out.join("link")).unwrap(),
            Path::new("etc/motd")
        );
        assert!(!out.join("etc/.wh.gone").exists());
    }
}
