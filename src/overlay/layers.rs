//! The layer logic: which layer holds a path, what a merged folder lists.
//!
//! Plain path code over the layers' folders, with no FUSE in sight, so the
//! rules are tested on temporary folders. Layer 0 is the upper (writable)
//! dir, layers 1.. are the read-only lowers, top first. The rules are
//! overlayfs's, with OCI whiteout files (see [`super::whiteout`]):
//!
//! - a name is looked up top-down; the first layer that has it decides what
//!   it is; a whiteout `.wh.NAME` in a layer hides NAME in every layer below;
//! - a non-folder hides everything below it;
//! - a folder merges with the folders of the same path below it, down to a
//!   layer whose folder holds the opaque marker, or a layer where the path
//!   is whited out or is not a folder.
//!
//! An entry and its own whiteout in the same layer: the entry wins (the
//! whiteout speaks only of the layers below).

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::whiteout;

/// The index of the upper dir among the layers.
pub const UPPER: usize = 0;

/// The layers of one overlay: the upper dir first, then the lowers, top first.
#[derive(Debug, Clone)]
pub struct Layers {
    roots: Vec<PathBuf>,
}

/// Where a path was found.
#[derive(Debug)]
pub struct Found {
    /// The topmost layer holding the path: its metadata is the entry's.
    pub layer: usize,
    pub meta: Metadata,
    /// For a folder, the layers whose folders merge into it, top first
    /// (starting with `layer`); empty for anything else.
    pub dir_layers: Vec<usize>,
}

impl Found {
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
}

/// One name of a merged folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    /// The layer the name comes from.
    pub layer: usize,
    /// The file type from the layer's directory entry (`d_type`).
    pub kind: Option<fs::FileType>,
}

impl Layers {
    /// `lowers` are top first: `lowers[0]` covers `lowers[1]`.
    pub fn new(upper: PathBuf, lowers: Vec<PathBuf>) -> Layers {
        let mut roots = Vec::with_capacity(lowers.len() + 1);
        roots.push(upper);
        roots.extend(lowers);
        Layers { roots }
    }

    pub fn count(&self) -> usize {
        self.roots.len()
    }

    pub fn root(&self, layer: usize) -> &Path {
        &self.roots[layer]
    }

    /// The real path of `rel` (relative to the overlay's root) in `layer`.
    pub fn real(&self, layer: usize, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.roots[layer].clone()
        } else {
            self.roots[layer].join(rel)
        }
    }

    /// The layers that merge into the root folder, starting at `first`.
    fn root_layers(&self, first: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.roots.len());
        for layer in first..self.roots.len() {
            out.push(layer);
            if is_opaque(&self.roots[layer]) {
                break;
            }
        }
        out
    }

    /// Finds `rel` in the merged view, walking it from the root.
    pub fn lookup(&self, rel: &Path) -> io::Result<Option<Found>> {
        self.lookup_from(rel, UPPER)
    }

    /// Finds `rel` in the merged view of the layers `first..` only (with
    /// `first = 1`: what the lowers alone show).
    pub fn lookup_from(&self, rel: &Path, first: usize) -> io::Result<Option<Found>> {
        let mut dir_layers = self.root_layers(first);
        let mut walked = PathBuf::new();
        let mut found = None;
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            };
            if dir_layers.is_empty() {
                // The previous component was not a folder.
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            walked.push(name);
            match self.lookup_in(&dir_layers, &walked)? {
                None => return Ok(None),
                Some(f) => {
                    dir_layers = f.dir_layers.clone();
                    found = Some(f);
                }
            }
        }
        match found {
            Some(f) => Ok(Some(f)),
            None => {
                // The root itself.
                let layer = first;
                let meta = fs::symlink_metadata(&self.roots[layer])?;
                Ok(Some(Found {
                    layer,
                    meta,
                    dir_layers,
                }))
            }
        }
    }

    /// Finds the child `rel` of a folder whose merging layers are
    /// `parent_layers`: one step of a lookup.
    pub fn lookup_in(&self, parent_layers: &[usize], rel: &Path) -> io::Result<Option<Found>> {
        self.search(parent_layers, rel, true)
    }

    /// [`Self::lookup_in`] for the entry's own metadata only: a folder's
    /// merging layers are left out (empty), which spares a probe of every
    /// layer below it and of their opaque markers (a `stat` of a folder).
    pub fn top_in(&self, parent_layers: &[usize], rel: &Path) -> io::Result<Option<Found>> {
        self.search(parent_layers, rel, false)
    }

    fn search(
        &self,
        parent_layers: &[usize],
        rel: &Path,
        merge: bool,
    ) -> io::Result<Option<Found>> {
        let name = rel.file_name().unwrap_or_default();
        if whiteout::is_marker(name) {
            return Ok(None);
        }
        let mut found: Option<Found> = None;
        for (i, &layer) in parent_layers.iter().enumerate() {
            let path = self.real(layer, rel);
            match fs::symlink_metadata(&path) {
                Ok(meta) => match &mut found {
                    None => {
                        let is_dir = meta.is_dir();
                        found = Some(Found {
                            layer,
                            meta,
                            dir_layers: Vec::new(),
                        });
                        if !is_dir || !merge {
                            break;
                        }
                        let f = found.as_mut().expect("just set");
                        f.dir_layers.push(layer);
                        if is_opaque(&path) {
                            break;
                        }
                    }
                    Some(f) => {
                        // A non-folder below a folder ends the merge.
                        if !meta.is_dir() {
                            break;
                        }
                        f.dir_layers.push(layer);
                        if is_opaque(&path) {
                            break;
                        }
                    }
                },
                // A whiteout in the parent's last merging layer would hide
                // only layers the parent does not merge: not looked for.
                Err(e) if is_absent(&e) => {
                    if i + 1 < parent_layers.len() && self.whiteout_exists(layer, rel) {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Whether `layer` holds a whiteout for `rel`.
    pub fn whiteout_exists(&self, layer: usize, rel: &Path) -> bool {
        let wh = self.whiteout_path(layer, rel);
        fs::symlink_metadata(wh).is_ok()
    }

    /// The path of `rel`'s whiteout file in `layer`.
    pub fn whiteout_path(&self, layer: usize, rel: &Path) -> PathBuf {
        let name = rel.file_name().unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.real(layer, parent).join(whiteout::whiteout_for(name))
    }

    /// The merged listing of the folder `rel`, whose merging layers are
    /// `dir_layers`: sorted by name (so two listings of the same state
    /// agree), markers and whited-out names left out, `.` and `..` not
    /// included.
    pub fn read_dir(&self, rel: &Path, dir_layers: &[usize]) -> io::Result<Vec<Entry>> {
        let mut merged: BTreeMap<OsString, Entry> = BTreeMap::new();
        // Names deleted by the layers read so far, for the layers below.
        let mut hidden: HashSet<OsString> = HashSet::new();
        for &layer in dir_layers {
            let mut whiteouts = Vec::new();
            let iter = match fs::read_dir(self.real(layer, rel)) {
                Ok(it) => it,
                // A lower folder may vanish only if the store is changed
                // under us; the upper one may be removed by a racing rmdir.
                Err(e) if is_absent(&e) && layer == UPPER => continue,
                Err(e) => return Err(e),
            };
            for entry in iter {
                let entry = entry?;
                let name = entry.file_name();
                if let Some(target) = whiteout::whited_out(&name) {
                    whiteouts.push(target.to_os_string());
                    continue;
                }
                if whiteout::is_marker(&name)
                    || hidden.contains(&name)
                    || merged.contains_key(&name)
                {
                    continue;
                }
                let kind = entry.file_type().ok();
                merged.insert(name.clone(), Entry { name, layer, kind });
            }
            hidden.extend(whiteouts);
        }
        Ok(merged.into_values().collect())
    }

    /// Whether the merged folder `rel` lists nothing.
    pub fn dir_is_empty(&self, rel: &Path, dir_layers: &[usize]) -> io::Result<bool> {
        Ok(self.read_dir(rel, dir_layers)?.is_empty())
    }
}

/// Whether the folder at `path` holds the opaque marker.
pub fn is_opaque(path: &Path) -> bool {
    fs::symlink_metadata(path.join(whiteout::OPAQUE)).is_ok()
}

/// Whether an error means "nothing there" (including a path through a
/// non-folder).
pub fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// `parent/name` as a path relative to the overlay's root.
pub fn child(parent: &Path, name: &OsStr) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        parent.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        layers: Layers,
    }

    /// Builds upper + two lowers from `(layer, path, content)`; a path
    /// ending in `/` is a folder.
    fn fixture(files: &[(usize, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let roots: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("l{i}"))).collect();
        for r in &roots {
            fs::create_dir(r).unwrap();
        }
        for (layer, path) in files {
            let p = roots[*layer].join(path);
            if path.ends_with('/') {
                fs::create_dir_all(&p).unwrap();
            } else {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, format!("{layer}:{path}")).unwrap();
            }
        }
        let layers = Layers::new(roots[0].clone(), roots[1..].to_vec());
        Fixture { _dir: dir, layers }
    }

    fn layer_of(f: &Fixture, path: &str) -> Option<usize> {
        f.layers.lookup(Path::new(path)).unwrap().map(|f| f.layer)
    }

    fn names(f: &Fixture, path: &str) -> Vec<String> {
        let found = f.layers.lookup(Path::new(path)).unwrap().unwrap();
        f.layers
            .read_dir(Path::new(path), &found.dir_layers)
            .unwrap()
            .into_iter()
            .map(|e| format!("{}@{}", e.name.to_string_lossy(), e.layer))
            .collect()
    }

    #[test]
    fn lookup_is_top_down() {
        let f = fixture(&[(2, "etc/a"), (1, "etc/a"), (2, "etc/b"), (0, "etc/c")]);
        assert_eq!(layer_of(&f, "etc/a"), Some(1));
        assert_eq!(layer_of(&f, "etc/b"), Some(2));
        assert_eq!(layer_of(&f, "etc/c"), Some(0));
        assert_eq!(layer_of(&f, "etc"), Some(0));
        assert_eq!(layer_of(&f, "etc/none"), None);
        assert_eq!(layer_of(&f, ""), Some(0));
        let etc = f.layers.lookup(Path::new("etc")).unwrap().unwrap();
        assert_eq!(etc.dir_layers, vec![0, 1, 2]);
    }

    #[test]
    fn whiteouts_hide_lower_names() {
        let f = fixture(&[
            (2, "etc/a"),
            (2, "etc/b"),
            (1, "etc/.wh.a"),
            (0, "etc/.wh.b"),
        ]);
        assert_eq!(layer_of(&f, "etc/a"), None);
        assert_eq!(layer_of(&f, "etc/b"), None);
        assert_eq!(layer_of(&f, "etc/.wh.a"), None, "markers are never shown");
        assert!(names(&f, "etc").is_empty());
    }

    #[test]
    fn recreated_name_wins_over_its_whiteout() {
        let f = fixture(&[(2, "etc/a"), (0, "etc/.wh.a"), (0, "etc/a")]);
        assert_eq!(layer_of(&f, "etc/a"), Some(0));
        assert_eq!(names(&f, "etc"), vec!["a@0"]);
    }

    #[test]
    fn whited_out_folder_hides_its_subtree() {
        let f = fixture(&[(2, "d/x"), (1, ".wh.d")]);
        assert_eq!(layer_of(&f, "d"), None);
        assert_eq!(layer_of(&f, "d/x"), None);
    }

    #[test]
    fn opaque_folder_stops_the_merge() {
        let f = fixture(&[
            (2, "d/old"),
            (1, "d/mid"),
            (0, "d/new"),
            (0, "d/.wh..wh..opq"),
        ]);
        assert_eq!(layer_of(&f, "d/old"), None);
        assert_eq!(layer_of(&f, "d/mid"), None);
        assert_eq!(layer_of(&f, "d/new"), Some(0));
        assert_eq!(names(&f, "d"), vec!["new@0"]);
        let f = fixture(&[(2, "d/old"), (1, "d/mid"), (1, "d/.wh..wh..opq")]);
        assert_eq!(names(&f, "d"), vec!["mid@1"]);
    }

    #[test]
    fn a_file_hides_a_lower_folder_and_stops_the_merge() {
        let f = fixture(&[(2, "d/x"), (1, "d")]);
        let d = f.layers.lookup(Path::new("d")).unwrap().unwrap();
        assert_eq!(d.layer, 1);
        assert!(!d.is_dir());
        assert!(f.layers.lookup(Path::new("d/x")).is_err(), "ENOTDIR");
        // And a folder over a file merges nothing below the file.
        let f = fixture(&[(2, "d/x"), (1, "d"), (0, "d/")]);
        assert_eq!(names(&f, "d"), Vec::<String>::new());
    }

    #[test]
    fn readdir_merges_sorted_and_unique() {
        let f = fixture(&[
            (2, "d/c"),
            (2, "d/a"),
            (1, "d/b"),
            (1, "d/a"),
            (0, "d/e/"),
            (0, "d/.wh.c"),
        ]);
        assert_eq!(names(&f, "d"), vec!["a@1", "b@1", "e@0"]);
    }

    #[test]
    fn top_in_finds_the_same_entry_without_merging() {
        let f = fixture(&[(2, "d/x"), (1, "d/"), (0, "d/"), (1, ".wh.e"), (2, "e")]);
        let all = [0, 1, 2];
        let merged = f.layers.lookup_in(&all, Path::new("d")).unwrap().unwrap();
        let top = f.layers.top_in(&all, Path::new("d")).unwrap().unwrap();
        assert_eq!((merged.layer, merged.dir_layers), (0, vec![0, 1, 2]));
        assert_eq!((top.layer, top.dir_layers), (0, vec![]));
        assert!(f.layers.top_in(&all, Path::new("e")).unwrap().is_none());
    }

    #[test]
    fn lowers_alone() {
        let f = fixture(&[(2, "d/a"), (0, "d/.wh.a")]);
        assert!(f.layers.lookup_from(Path::new("d/a"), 1).unwrap().is_some());
        assert!(f.layers.lookup(Path::new("d/a")).unwrap().is_none());
    }
}
