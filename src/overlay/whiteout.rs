//! OCI whiteout names, as the store's layers keep them: plain files.
//!
//! `.wh.NAME` in a folder deletes NAME from the layers below it;
//! `.wh..wh..opq` in a folder hides everything the layers below hold in that
//! folder. The overlay writes the same markers into its upper dir, so the
//! upper dir is itself an OCI layer that `commit` or `diff` can tar as it is.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The prefix of every whiteout file.
pub const PREFIX: &[u8] = b".wh.";
/// The opaque-folder marker.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Whether `name` is one of the overlay's own markers (never shown, never
/// created by a user: such a name would turn into a deletion in the image).
pub fn is_marker(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX)
}

/// The name NAME's whiteout file has: `.wh.NAME`.
pub fn whiteout_for(name: &OsStr) -> OsString {
    let mut v = Vec::with_capacity(PREFIX.len() + name.len());
    v.extend_from_slice(PREFIX);
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// The name a whiteout file deletes, or `None` for the opaque marker and
/// ordinary names.
pub fn whited_out(name: &OsStr) -> Option<&OsStr> {
    if name == OPAQUE {
        return None;
    }
    name.as_bytes().strip_prefix(PREFIX).map(OsStr::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_marker(OsStr::new(".wh.x")));
        assert!(is_marker(OsStr::new(OPAQUE)));
        assert!(!is_marker(OsStr::new(".w")));
        assert_eq!(whiteout_for(OsStr::new("a b")), ".wh.a b");
        assert_eq!(whited_out(OsStr::new(".wh.x")), Some(OsStr::new("x")));
        assert_eq!(whited_out(OsStr::new(OPAQUE)), None);
        assert_eq!(whited_out(OsStr::new("x")), None);
    }
}
