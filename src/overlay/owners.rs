//! Owner records (see [`crate::image::OwnerRecord`]) on the mounted
//! overlay. Records travel with their files: copy-up copies `user.*`
//! xattrs. What the overlay must add is keeping them true: a chown of a
//! recorded file changes the record too, so a layer made from the upper dir
//! never claims an owner the container replaced.
//!
//! The kernel shows a container only the ids its user namespace maps; with
//! one id mapped, a recorded owner such as 1000 could only be shown as the
//! overflow id 65534, and an owner the namespace cannot name also denies
//! root its override of file permissions there. So `stat` keeps showing the
//! backing file's real owner, and the record is for the layers.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use super::sys;

pub use crate::image::{OWNER_XATTR as OWNER_RECORD, OwnerRecord as Owner};

/// The owner recorded on `path` (not followed), if any.
pub fn read(path: &Path) -> Option<Owner> {
    let mut buf = [0u8; 64];
    let n = sys::lgetxattr(path, OsStr::new(OWNER_RECORD), &mut buf).ok()?;
    Owner::parse(&buf[..n])
}

/// After a chown of `path` to `uid`/`gid` (`None`: unchanged): rewrites its
/// record, or drops it when the owner became `0:0` (which the store never
/// records). A file with no record is left alone: its real owner is the
/// truth.
pub fn rechown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let Some(old) = read(path) else {
        return Ok(());
    };
    let new = Owner {
        uid: uid.unwrap_or(old.uid),
        gid: gid.unwrap_or(old.gid),
        mode: old.mode,
    };
    if new.uid == 0 && new.gid == 0 {
        sys::lremovexattr(path, OsStr::new(OWNER_RECORD))
    } else {
        sys::lsetxattr(path, OsStr::new(OWNER_RECORD), new.format().as_bytes(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_rewrites_or_drops_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        let name = OsStr::new(OWNER_RECORD);
        if sys::lsetxattr(&f, name, b"1000:1000:644", 0).is_err() {
            eprintln!("skipped: no user xattrs on the temporary folder's filesystem");
            return;
        }
        rechown(&f, None, Some(50)).unwrap();
        assert_eq!(read(&f).unwrap().format(), "1000:50:644");
        rechown(&f, Some(0), Some(0)).unwrap();
        assert_eq!(read(&f), None, "0:0 is never recorded");
        // No record: nothing is written.
        rechown(&f, Some(7), None).unwrap();
        assert_eq!(read(&f), None);
    }
}
