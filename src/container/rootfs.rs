//! The container's root filesystem, prepared from the image's layers.
//!
//! This is the one place that decides how a rootfs is made, so the
//! copy-on-write overlay can replace it without touching anything else. The
//! driver here is `vfs`: a private copy of every layer, bottom first, with
//! OCI whiteouts (`.wh.NAME` deletes NAME, `.wh..wh..opq` empties the folder)
//! applied on the way. Regular files are copied with `copy_file_range`
//! (through `std::fs::copy`), which shares extents where the filesystem can.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result};

/// The storage driver's name, for `info` and `inspect`.
pub const DRIVER: &str = "vfs";

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Builds `target` (which must not exist) from `layers`, bottom first.
pub fn prepare(layers: &[std::path::PathBuf], target: &Path) -> Result<()> {
    fs::create_dir(target).with_context(|| format!("cannot create {}", target.display()))?;
    for layer in layers {
        copy_layer(layer, target)
            .with_context(|| format!("cannot copy layer {} into the container", layer.display()))?;
    }
    Ok(())
}

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
        prepare(&[l1, l2], &out).unwrap();
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
