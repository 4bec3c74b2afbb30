//! User and group id maps: which host ids the container's ids stand for.
//!
//! Two modes, as Podman has them:
//! - **range**: container 0 is the caller, container 1..=N are the caller's
//!   subordinate ids from `/etc/subuid` and `/etc/subgid`, written by the
//!   setuid helpers `newuidmap`/`newgidmap`.
//! - **single**: only container 0 is mapped, to the caller. Any user may
//!   write such a map for its own namespace; `setgroups` must then be denied.

use std::fmt;
use std::path::{Path, PathBuf};

/// One line of a uid or gid map: `size` ids from `container` on stand for
/// `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// Parses `/etc/subuid`-format text and returns the ranges for a user, given
/// by name or by numeric id (both forms occur in the wild).
pub fn parse_subids(text: &str, name: &str, id: u32) -> Vec<SubRange> {
    let id = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split(':');
            let (owner, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            if owner != name && owner != id {
                return None;
            }
            let range = SubRange {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// Builds the map for range mode: 0 → `own`, then the ranges in order from 1.
pub fn range_map(own: u32, ranges: &[SubRange]) -> Vec<IdMap> {
    let mut maps = vec![IdMap {
        container: 0,
        host: own,
        size: 1,
    }];
    let mut next = 1u32;
    for r in ranges {
        maps.push(IdMap {
            container: next,
            host: r.start,
            size: r.count,
        });
        next = next.saturating_add(r.count);
    }
    maps
}

/// The map for single mode.
pub fn single_map(own: u32) -> Vec<IdMap> {
    vec![IdMap {
        container: 0,
        host: own,
        size: 1,
    }]
}

/// Whether the maps need the setuid helpers (anything beyond the caller's own id).
pub fn needs_helper(maps: &[IdMap], own: u32) -> bool {
    maps != single_map(own).as_slice()
}

/// Whether container id `id` is mapped by `maps`.
pub fn is_mapped(maps: &[IdMap], id: u32) -> bool {
    maps.iter()
        .any(|m| id >= m.container && id - m.container < m.size)
}

/// The text the kernel expects in `/proc/PID/uid_map`.
pub fn proc_format(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

/// The arguments `newuidmap PID ...` expects after the pid.
pub fn helper_args(maps: &[IdMap]) -> Vec<String> {
    maps.iter()
        .flat_map(|m| [m.container, m.host, m.size])
        .map(|n| n.to_string())
        .collect()
}

/// How this host lets the caller map ids, decided once per command.
#[derive(Debug, Clone)]
pub struct HostIds {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// Why range mode is not available, when it is not.
    pub single_reason: Option<String>,
}

impl HostIds {
    pub fn is_range(&self) -> bool {
        self.single_reason.is_none()
    }
}

impl fmt::Display for HostIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.single_reason {
            None => write!(
                f,
                "range (newuidmap/newgidmap with /etc/subuid and /etc/subgid)"
            ),
            Some(why) => write!(f, "single id ({why})"),
        }
    }
}

/// Decides the maps for the calling user from `/etc/subuid`, `/etc/subgid`
/// and the presence of the helpers.
pub fn detect(uid: u32, gid: u32, user_name: &str) -> HostIds {
    detect_with(
        uid,
        gid,
        user_name,
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
    )
}

fn detect_with(uid: u32, gid: u32, name: &str, subuid: &Path, subgid: &Path) -> HostIds {
    let single = |why: String| HostIds {
        uid_map: single_map(uid),
        gid_map: single_map(gid),
        single_reason: Some(why),
    };
    let (Some(_), Some(_)) = (find_helper("newuidmap"), find_helper("newgidmap")) else {
        return single("newuidmap/newgidmap not found; install the uidmap package".into());
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let uids = parse_subids(&read(subuid), name, uid);
    let gids = parse_subids(&read(subgid), name, uid);
    if uids.is_empty() || gids.is_empty() {
        let which = if uids.is_empty() { subuid } else { subgid };
        return single(format!(
            "{} has no range for user {name}; add one with: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}",
            which.display()
        ));
    }
    HostIds {
        uid_map: range_map(uid, &uids),
        gid_map: range_map(gid, &gids),
        single_reason: None,
    }
}

/// Finds a setuid helper on `PATH` or in the usual places.
pub fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str =
        "# comment\nalice:100000:65536\n1001:300000:1000\nbob:165536:65536\nalice:500000:10\n";

    #[test]
    fn parses_by_name_and_id() {
        let r = parse_subids(SUBUID, "alice", 1000);
        assert_eq!(
            r,
            vec![
                SubRange {
                    start: 100000,
                    count: 65536
                },
                SubRange {
                    start: 500000,
                    count: 10
                }
            ]
        );
        assert_eq!(
            parse_subids(SUBUID, "carol", 1001),
            vec![SubRange {
                start: 300000,
                count: 1000
            }]
        );
        assert!(parse_subids(SUBUID, "dave", 1002).is_empty());
        assert!(parse_subids("broken line\nx:1\n", "x", 1).is_empty());
    }

    #[test]
    fn range_maps_are_contiguous() {
        let maps = range_map(1000, &parse_subids(SUBUID, "alice", 1000));
        assert_eq!(
            maps,
            vec![
                IdMap {
                    container: 0,
                    host: 1000,
                    size: 1
                },
                IdMap {
                    container: 1,
                    host: 100000,
                    size: 65536
                },
                IdMap {
                    container: 65537,
                    host: 500000,
                    size: 10
                },
            ]
        );
        assert!(is_mapped(&maps, 65546) && !is_mapped(&maps, 65547));
        assert!(needs_helper(&maps, 1000));
        assert!(!needs_helper(&single_map(1000), 1000));
        assert_eq!(
            helper_args(&maps[..2]),
            ["0", "1000", "1", "1", "100000", "65536"]
        );
        assert_eq!(proc_format(&single_map(7)), "0 7 1\n");
    }

    #[test]
    fn detection_falls_back_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (su, sg) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&su, "").unwrap();
        std::fs::write(&sg, "").unwrap();
        let ids = detect_with(1000, 1000, "alice", &su, &sg);
        if find_helper("newuidmap").is_some() {
            assert!(ids.single_reason.unwrap().contains("usermod --add-subuids"));
        }
        assert_eq!(ids.uid_map, single_map(1000));
    }
}
