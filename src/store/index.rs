//! The store's indexes: `repositories.json` (tag → image id) and one small
//! `meta/<id>.json` per image (what the config does not say: the unpacked size).
//!
//! An image exists exactly when its `meta/` file does; the meta file is written
//! after the config blob and the layers are in place, and removed first, so a
//! listed image is always complete. Both files are replaced atomically, and
//! only while the store lock is held.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::image::is_sha256_hex;
use crate::paths::write_atomic;

/// Familiar tag (`busybox:latest`) → image id (64 hex).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags {
    map: BTreeMap<String, String>,
}

impl Tags {
    /// Reads the index; a missing file is an empty index.
    pub fn load(path: &Path) -> io::Result<Tags> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Tags::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(path, &json)
    }

    pub fn get(&self, tag: &str) -> Option<&str> {
        self.map.get(tag).map(String::as_str)
    }

    /// Points `tag` at `id`; returns the image it pointed at before.
    pub fn set(&mut self, tag: &str, id: &str) -> Option<String> {
        self.map.insert(tag.to_string(), id.to_string())
    }

    pub fn remove(&mut self, tag: &str) -> Option<String> {
        self.map.remove(tag)
    }

    /// Every tag of `id`, sorted.
    pub fn tags_of(&self, id: &str) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Per-image facts the config does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Bytes unpacked, summed over the layers.
    pub size: u64,
    /// A build step's image, not a build's result: kept for the build cache,
    /// hidden by `images` unless `-a` (Docker's intermediate images).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermediate: bool,
}

impl Meta {
    /// The facts of an image that is not a build step.
    pub fn new(size: u64) -> Meta {
        Meta {
            size,
            intermediate: false,
        }
    }

    pub fn load(path: &Path) -> io::Result<Meta> {
        serde_json::from_slice(&fs::read(path)?).map_err(io::Error::other)
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        write_atomic(path, &serde_json::to_vec(self).map_err(io::Error::other)?)
    }
}

/// Ids of every image, from the names in `meta/`.
pub fn image_ids(meta_dir: &Path) -> io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(meta_dir)? {
        let name = entry?.file_name();
        let id = name.to_str().and_then(|n| n.strip_suffix(".json"));
        // Skips write_atomic's temporary files and anything else stray.
        if let Some(id) = id.filter(|id| is_sha256_hex(id)) {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn tags_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repositories.json");
        assert_eq!(Tags::load(&path).unwrap(), Tags::default());
        let mut tags = Tags::default();
        assert_eq!(tags.set("busybox:latest", A), None);
        tags.set("busybox:1", A);
        tags.set("alpine:latest", B);
        assert_eq!(tags.set("busybox:1", B).as_deref(), Some(A));
        tags.save(&path).unwrap();
        let back = Tags::load(&path).unwrap();
        assert_eq!(back, tags);
        assert_eq!(back.get("busybox:latest"), Some(A));
        assert_eq!(back.tags_of(B), vec!["alpine:latest", "busybox:1"]);
        let mut back = back;
        assert_eq!(back.remove("alpine:latest").as_deref(), Some(B));
        assert_eq!(back.tags_of(B), vec!["busybox:1"]);
    }

    #[test]
    fn image_ids_ignore_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        Meta::new(3)
            .save(&dir.path().join(format!("{A}.json")))
            .unwrap();
        fs::write(dir.path().join(format!(".{B}.json.tmp-1")), b"{").unwrap();
        fs::write(dir.path().join("notes.json"), b"{}").unwrap();
        assert_eq!(image_ids(dir.path()).unwrap(), vec![A.to_string()]);
        assert_eq!(
            Meta::load(&dir.path().join(format!("{A}.json")))
                .unwrap()
                .size,
            3
        );
    }
}
