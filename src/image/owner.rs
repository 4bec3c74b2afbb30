//! The owner record: how an image keeps owners it could not chown.
//!
//! A user without a subordinate id range maps one id into its containers,
//! so the store cannot give an image's files their owners. It records each
//! owner other than `0:0` in the `user.burrow.owner` xattr of the file
//! instead, as `UID:GID:MODE` (the mode in octal). The store writes and
//! reads these records (unpack, pack), the overlay keeps them true through
//! chown, and a layer made from a container writes them into its tar; this
//! module is the one definition of the format they share.

/// The xattr holding a recorded owner.
pub const OWNER_XATTR: &str = "user.burrow.owner";

/// A recorded owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRecord {
    pub uid: u32,
    pub gid: u32,
    /// The permission bits the image gave the file.
    pub mode: u32,
}

impl OwnerRecord {
    /// Parses `UID:GID:MODE`; `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<OwnerRecord> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.trim().splitn(3, ':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        Some(OwnerRecord {
            uid,
            gid,
            mode: mode & 0o7777,
        })
    }

    /// The xattr value.
    pub fn format(&self) -> String {
        format!("{}:{}:{:o}", self.uid, self.gid, self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_format() {
        let o = OwnerRecord::parse(b"1000:100:755").unwrap();
        assert_eq!(
            o,
            OwnerRecord {
                uid: 1000,
                gid: 100,
                mode: 0o755
            }
        );
        assert_eq!(o.format(), "1000:100:755");
        assert_eq!(OwnerRecord::parse(b"1000:100"), None);
        assert_eq!(OwnerRecord::parse(b"x:1:644"), None);
        assert_eq!(OwnerRecord::parse(b"1:2:104755").unwrap().mode, 0o4755);
    }
}
