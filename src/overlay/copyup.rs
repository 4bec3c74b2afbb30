//! Copy-up: bringing an entry of a lower layer into the upper dir.
//!
//! Every copy is built in the work dir under a fresh name and renamed into
//! the upper dir when complete, so the upper dir never shows a half-copied
//! file: after a crash, the entry is either the lower one or the whole copy.
//! (The work dir must be on the upper dir's filesystem for that rename;
//! [`super::Overlay::new`] checks.)
//!
//! What is copied: the data (through `copy_file_range` where the kernel can,
//! which shares extents on filesystems that reflink), the mode, the owner
//! (when permitted: as an unprivileged user only one's own ids), extended
//! attributes (those the caller may set: `user.*` always; `trusted.*` and
//! `security.*` need privilege and are skipped when refused), and the
//! access and modification times, last, as writing the rest changes them.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, lchown};
use std::path::Path;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::layers::{Layers, UPPER, child};
use super::sys;
use super::whiteout;

/// Creates at `tmp` a copy of the entry `src` (not a folder's contents),
/// with its metadata. `data: false` leaves a regular file empty (the caller
/// is about to truncate it).
pub fn copy_entry(src: &Path, meta: &Metadata, tmp: &Path, data: bool) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        private_dir(tmp)?;
    } else if ft.is_file() {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        if data {
            let mut input = File::open(src)?;
            io::copy(&mut input, &mut out)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, tmp)?;
    } else {
        // fifo, socket, or a device node (which needs privilege).
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        mknod(tmp, kind, Mode::from_bits_truncate(0o600), meta.rdev()).map_err(io::Error::from)?;
    }
    copy_meta(src, meta, tmp)
}

/// Makes a folder only the server may enter until its mode is set: the
/// server's umask may be clear (see `super::serve_fd`), so a plain
/// `create_dir` would leave it open to everyone meanwhile.
pub fn private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(path)
}

/// Gives `dst` the owner, mode, extended attributes and times of `src`.
pub fn copy_meta(src: &Path, meta: &Metadata, dst: &Path) -> io::Result<()> {
    let symlink = meta.file_type().is_symlink();
    chown_if_permitted(dst, meta.uid(), meta.gid())?;
    if !symlink {
        // After chown, which clears set-id bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    for (name, value) in sys::all_xattrs(src)? {
        match sys::lsetxattr(dst, OsStr::from_bytes(&name), &value, 0) {
            Ok(()) => {}
            // trusted.* and security.* need privilege; symlinks take no user.*.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
            Err(e) => return Err(e),
        }
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// chown that accepts being refused: an unprivileged server keeps its own
/// ids, which is what the caller would have got from the kernel anyway.
pub fn chown_if_permitted(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match lchown(path, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Maybe the group alone is allowed (one of ours).
            match lchown(path, None, Some(gid)) {
                Err(e) if e.raw_os_error() != Some(libc::EPERM) => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// [`chown_if_permitted`] on an open file.
pub fn fchown_if_permitted(file: &std::fs::File, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::fchown;
    match fchown(file, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => match fchown(file, None, Some(gid)) {
            Err(e) if e.raw_os_error() != Some(libc::EPERM) => Err(e),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    }
}

/// Builds at `tmp` a complete, self-contained copy of the merged folder
/// `rel` (whose merging layers are `dir_layers`), for renaming a folder that
/// lives partly in the lowers. Upper entries that are not folders are
/// *moved*, not copied, so descriptors open on them stay valid. The copy is
/// marked opaque: it no longer merges with anything below.
pub fn copy_tree(
    layers: &Layers,
    rel: &Path,
    found_meta: &Metadata,
    dir_layers: &[usize],
    tmp: &Path,
) -> io::Result<()> {
    let top = layers.real(dir_layers[0], rel);
    copy_entry(&top, found_meta, tmp, false)?;
    for entry in layers.read_dir(rel, dir_layers)? {
        let sub = child(rel, &entry.name);
        let Some(found) = layers.lookup(&sub)? else {
            continue;
        };
        let dst = tmp.join(&entry.name);
        if found.is_dir() {
            copy_tree(layers, &sub, &found.meta, &found.dir_layers, &dst)?;
        } else if found.layer == UPPER {
            fs::rename(layers.real(UPPER, &sub), &dst)?;
        } else {
            copy_entry(&layers.real(found.layer, &sub), &found.meta, &dst, true)?;
        }
    }
    write_marker(&tmp.join(whiteout::OPAQUE))?;
    // Filling the folder changed its times: put them back.
    let atime = TimeSpec::new(found_meta.atime(), found_meta.atime_nsec());
    let mtime = TimeSpec::new(found_meta.mtime(), found_meta.mtime_nsec());
    utimensat(
        AT_FDCWD,
        tmp,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Creates a whiteout or opaque marker: an empty regular file, as in OCI
/// layers.
pub fn write_marker(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a marker if it is there.
pub fn remove_marker(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_data_mode_times_and_user_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, "hello").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o751)).unwrap();
        let xattrs = sys::lsetxattr(&src, OsStr::new("user.k"), b"v", 0).is_ok();
        let old = TimeSpec::new(1_000_000, 5);
        utimensat(AT_FDCWD, &src, &old, &old, UtimensatFlags::NoFollowSymlink).unwrap();
        let meta = fs::symlink_metadata(&src).unwrap();
        let dst = dir.path().join("dst");
        copy_entry(&src, &meta, &dst, true).unwrap();
        let m = fs::symlink_metadata(&dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"hello");
        assert_eq!(m.mode() & 0o7777, 0o751);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000, 5));
        if xattrs {
            let mut buf = [0u8; 8];
            let n = sys::lgetxattr(&dst, OsStr::new("user.k"), &mut buf).unwrap();
            assert_eq!(&buf[..n], b"v");
        }
    }

    #[test]
    fn copies_symlinks_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("target/x", &link).unwrap();
        let dst = dir.path().join("link2");
        copy_entry(&link, &fs::symlink_metadata(&link).unwrap(), &dst, true).unwrap();
        assert_eq!(fs::read_link(&dst).unwrap(), Path::new("target/x"));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o640)).unwrap();
        let dst = dir.path().join("fifo2");
        copy_entry(&fifo, &fs::symlink_metadata(&fifo).unwrap(), &dst, true).unwrap();
        let m = fs::symlink_metadata(&dst).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        assert_eq!(m.mode() & 0o777, 0o640);
    }
}
