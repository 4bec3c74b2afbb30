//! Owner records: the owners of a single-id image, kept in an xattr.
//!
//! A user without a subordinate id range maps one id into its containers,
//! so the store cannot chown an image's files to their owners: it records
//! each owner other than `0:0` in the `user.burrow.owner` xattr instead
//! (`UID:GID:MODE`, the mode in octal), on the file itself. The record
//! travels with the file: copy-up copies `user.*` xattrs, and a layer made
//! from the upper dir (`commit`, `build`) writes the recorded owner into
//! its tar. What the overlay must add is keeping the record true: a chown
//! of a recorded file changes the record too, so the layer never claims an
//! owner the container replaced.
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

/// The xattr holding a recorded owner (the store's `OWNER_XATTR`).
pub const OWNER_RECORD: &str = "user.burrow.owner";

/// A recorded owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The permission bits the image gave the file.
    pub mode: u32,
}

impl Owner {
    /// Parses `UID:GID:MODE`; `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.trim().splitn(3, ':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        Some(Owner { uid, gid, mode })
    }

    pub fn format(&self) -> String {
        format!("{}:{}:{:o}", self.uid, self.gid, self.mode)
    }
}

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
    fn records_parse_and_format() {
        let o = Owner::parse(b"1000:100:755").unwrap();
        assert_eq!(
            o,
            Owner {
                uid: 1000,
                gid: 100,
                mode: 0o755
            }
        );
        assert_eq!(o.format(), "1000:100:755");
        assert_eq!(Owner::parse(b"1000:100"), None);
        assert_eq!(Owner::parse(b"x:1:644"), None);
    }

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
