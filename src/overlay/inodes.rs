//! The inode table: FUSE node ids for paths, stable for the life of a mount.
//!
//! A node is a path relative to the overlay's root (a hard-linked file is one
//! node with several paths). Ids are handed out from a counter and never
//! reused, so a generation of 0 is always right, and the id doubles as
//! `st_ino`: what `stat` shows stays the same for the whole mount, across
//! copy-up (which changes the backing file) and across the kernel forgetting
//! the node. A node is dropped only when no path names it any more and the
//! kernel holds no reference.
//!
//! Hard links: files whose backing inode has more than one link are also
//! indexed by that backing `(st_dev, st_ino)`, so every name of a link group
//! met by a lookup is the same node, whichever layer the names live in.
//!
//! Where a node's data lives: a lookup records the layer it found the node
//! in ([`Seen`]), with the overlay's backing epoch read before it looked, so
//! a READ of that node opens the backing file straight away instead of
//! searching the layers again, for as long as the epoch has not moved.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

/// The root folder's node id, fixed by FUSE.
pub const ROOT: u64 = 1;

/// The identity of a backing file: `(st_dev, st_ino)`.
pub type Key = (u64, u64);

/// The layer a lookup found a node in, and the backing epoch read before
/// it looked: true for as long as the epoch stays there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub layer: usize,
    pub epoch: u64,
}

#[derive(Debug)]
struct Node {
    /// Every known name; the first is the one data is reached through.
    paths: Vec<PathBuf>,
    /// Lookups the kernel holds (FUSE's `nlookup`).
    lookups: u64,
    /// Backing identities indexed in `by_key` for this node.
    keys: Vec<Key>,
    /// Where the last lookup found the node's data, if one did.
    seen: Option<Seen>,
}

/// Hashes node ids, which this table hands out itself from a counter: a
/// multiply spreads them well enough, and no caller can choose them to
/// collide (unlike names, which keep std's keyed hash). SipHash showed in
/// the profile of a READ per file.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses for its
        // control bytes, depend on every bit of the id.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
pub struct Inodes {
    nodes: IdMap<Node>,
    by_path: HashMap<PathBuf, u64>,
    by_key: HashMap<Key, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut t = Inodes {
            nodes: IdMap::default(),
            by_path: HashMap::new(),
            by_key: HashMap::new(),
            next: ROOT + 1,
        };
        t.nodes.insert(
            ROOT,
            Node {
                paths: vec![PathBuf::new()],
                lookups: 1,
                keys: Vec::new(),
                seen: None,
            },
        );
        t.by_path.insert(PathBuf::new(), ROOT);
        t
    }

    /// The path data of `ino` is reached through.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        self.nodes.get(&ino).and_then(|n| n.paths.first().cloned())
    }

    /// The path of `ino` and the layer that held its data, if a lookup
    /// recorded one at backing epoch `epoch` (the current one).
    pub fn located(&self, ino: u64, epoch: u64) -> Option<(&Path, usize)> {
        let n = self.nodes.get(&ino)?;
        let seen = n.seen.filter(|s| s.epoch == epoch)?;
        Some((n.paths.first()?, seen.layer))
    }

    /// Every known name of `ino`.
    pub fn paths(&self, ino: u64) -> Vec<PathBuf> {
        self.nodes
            .get(&ino)
            .map(|n| n.paths.clone())
            .unwrap_or_default()
    }

    /// Whether node `ino` is still in the table.
    pub fn contains(&self, ino: u64) -> bool {
        self.nodes.contains_key(&ino)
    }

    /// The node of `path` when that is its only name and the kernel holds
    /// it: removing the name would leave a node that is perhaps still open.
    pub fn held_by_last_name(&self, path: &Path) -> Option<u64> {
        let ino = self.get(path)?;
        let n = self.nodes.get(&ino)?;
        (n.paths.len() == 1 && n.lookups > 0).then_some(ino)
    }

    /// The node of `path` if the table knows it.
    pub fn get(&self, path: &Path) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The node of `path`, created if new, without taking a reference (for
    /// `d_ino` in listings).
    pub fn peek(&mut self, path: &Path) -> u64 {
        self.get_or_insert(path, None)
    }

    /// The node of `path` after a successful lookup: takes a reference. A
    /// `link_key` (the backing identity of a file with several links) makes
    /// all names of one link group the same node. `seen` is where the
    /// lookup found it; it is kept only when `path` is the name the node's
    /// data is reached through.
    pub fn lookup(&mut self, path: &Path, link_key: Option<Key>, seen: Option<Seen>) -> u64 {
        let ino = self.get_or_insert(path, link_key);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
            if n.paths.first().is_some_and(|p| p == path) {
                n.seen = seen;
            }
        }
        ino
    }

    fn get_or_insert(&mut self, path: &Path, link_key: Option<Key>) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            if let Some(key) = link_key {
                self.add_key(ino, key);
            }
            return ino;
        }
        if let Some(&ino) = link_key.and_then(|k| self.by_key.get(&k)) {
            // Another name of a known link group.
            self.by_path.insert(path.to_path_buf(), ino);
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.paths.push(path.to_path_buf());
            }
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                paths: vec![path.to_path_buf()],
                lookups: 0,
                keys: Vec::new(),
                seen: None,
            },
        );
        self.by_path.insert(path.to_path_buf(), ino);
        if let Some(key) = link_key {
            self.add_key(ino, key);
        }
        ino
    }

    /// Records another backing identity of `ino` (its copy in the upper dir
    /// after copy-up), so names linked to that copy find the same node.
    pub fn add_key(&mut self, ino: u64, key: Key) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        if !n.keys.contains(&key) {
            n.keys.push(key);
            self.by_key.insert(key, ino);
        }
    }

    /// The kernel dropped `count` references.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT {
            return;
        }
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        n.lookups = n.lookups.saturating_sub(count);
        self.drop_if_unused(ino);
    }

    fn drop_if_unused(&mut self, ino: u64) {
        let unused = self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.lookups == 0 && n.paths.is_empty());
        if unused && let Some(n) = self.nodes.remove(&ino) {
            for k in n.keys {
                // Backing inode numbers are reused by the filesystem once
                // the file is gone: never let a new file find this node.
                if self.by_key.get(&k) == Some(&ino) {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    /// `path` no longer names anything (unlink, rmdir, replaced by rename).
    pub fn remove(&mut self, path: &Path) {
        let Some(ino) = self.by_path.remove(path) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.paths.retain(|q| q != path);
            // The name data is reached through may have changed.
            n.seen = None;
        }
        self.drop_if_unused(ino);
    }

    /// Paths strictly below `dir`, for a folder renamed as a whole. A scan
    /// of the table: folder renames are rare, file operations stay O(1).
    fn below(&self, dir: &Path) -> Vec<PathBuf> {
        self.by_path
            .keys()
            .filter(|p| p.starts_with(dir) && p.as_path() != dir)
            .cloned()
            .collect()
    }

    /// `old` is now called `new`, with everything below it when it is a
    /// folder; whatever `new` named before is gone.
    pub fn rename(&mut self, old: &Path, new: &Path, is_dir: bool) {
        self.remove(new);
        let mut moved = if is_dir { self.below(old) } else { Vec::new() };
        moved.push(old.to_path_buf());
        for p in moved {
            let Some(ino) = self.by_path.remove(&p) else {
                continue;
            };
            let rest = p.strip_prefix(old).expect("below old");
            let q = if rest.as_os_str().is_empty() {
                new.to_path_buf()
            } else {
                new.join(rest)
            };
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.seen = None;
                for name in &mut n.paths {
                    if *name == p {
                        *name = q.clone();
                    }
                }
            }
            self.by_path.insert(q, ino);
        }
    }

    /// `new` is a new hard link to `ino`.
    pub fn link(&mut self, ino: u64, new: &Path) {
        self.remove(new);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.paths.push(new.to_path_buf());
            self.by_path.insert(new.to_path_buf(), ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn ids_are_stable_and_never_reused() {
        let mut t = Inodes::new();
        let a = t.lookup(&p("a"), None, None);
        assert_eq!(t.lookup(&p("a"), None, None), a);
        t.forget(a, 2);
        // Forgotten but still named: same id on the next lookup.
        assert_eq!(t.lookup(&p("a"), None, None), a);
        t.remove(&p("a"));
        t.forget(a, 1);
        let b = t.lookup(&p("a"), None, None);
        assert_ne!(a, b, "a new file never gets an old id");
        assert_eq!(t.path(a), None);
    }

    #[test]
    fn a_referenced_node_survives_unlink() {
        let mut t = Inodes::new();
        let a = t.lookup(&p("a"), None, None);
        t.remove(&p("a"));
        assert!(t.nodes.contains_key(&a), "the kernel still holds it");
        t.forget(a, 1);
        assert!(!t.nodes.contains_key(&a));
    }

    #[test]
    fn rename_moves_the_subtree() {
        let mut t = Inodes::new();
        let d = t.lookup(&p("d"), None, None);
        let f = t.lookup(&p("d/x/f"), None, None);
        let other = t.lookup(&p("dd/f"), None, None);
        t.rename(&p("d"), &p("e"), true);
        assert_eq!(t.path(d), Some(p("e")));
        assert_eq!(t.path(f), Some(p("e/x/f")));
        assert_eq!(t.path(other), Some(p("dd/f")), "prefix is by component");
        assert_eq!(t.peek(&p("e/x/f")), f);
    }

    #[test]
    fn link_groups_are_one_node() {
        let mut t = Inodes::new();
        let a = t.lookup(&p("a"), Some((1, 7)), None);
        let b = t.lookup(&p("b"), Some((1, 7)), None);
        assert_eq!(a, b);
        assert_eq!(t.paths(a), vec![p("a"), p("b")]);
        t.remove(&p("a"));
        assert_eq!(t.path(a), Some(p("b")));
        let c = t.lookup(&p("c"), None, None);
        t.link(c, &p("d"));
        assert_eq!(t.peek(&p("d")), c);
    }

    #[test]
    fn seen_holds_for_its_epoch_and_name_only() {
        let mut t = Inodes::new();
        let seen = Some(Seen { layer: 2, epoch: 5 });
        let a = t.lookup(&p("a"), None, seen);
        assert_eq!(t.located(a, 5), Some((Path::new("a"), 2)));
        assert_eq!(t.located(a, 6), None, "the epoch moved");
        t.rename(&p("a"), &p("b"), false);
        assert_eq!(t.located(a, 5), None, "renamed: look again");
        let l = t.lookup(&p("l1"), Some((1, 9)), None);
        t.lookup(&p("l2"), Some((1, 9)), seen);
        assert_eq!(t.located(l, 5), None, "seen through another name");
    }

    #[test]
    fn a_dead_link_group_frees_its_key() {
        let mut t = Inodes::new();
        let a = t.lookup(&p("a"), Some((1, 7)), None);
        t.remove(&p("a"));
        t.forget(a, 1);
        let b = t.lookup(&p("b"), Some((1, 7)), None);
        assert_ne!(a, b);
    }
}
