//! The build cache: step key → image id, in `images/build-cache.json`.
//!
//! A key is the sha256 of the previous step's key (the base image id for
//! the first), the instruction as substituted and, for COPY/ADD, the
//! sha256 of the layer its sources make; so a change anywhere invalidates
//! exactly the steps from there on. An entry whose image was removed is a
//! miss. Losing a concurrent update only costs a rebuild, so the file is
//! written atomically without a lock.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::paths::{Dirs, write_atomic};

pub struct Cache {
    path: PathBuf,
    entries: BTreeMap<String, String>,
}

impl Cache {
    pub fn open(dirs: &Dirs) -> Cache {
        let path = dirs.data.join("images").join("build-cache.json");
        let entries = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache { path, entries }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub fn put(&mut self, key: &str, id: &str) {
        self.entries.insert(key.to_string(), id.to_string());
        // Re-read first: another build may have added entries meanwhile.
        let mut on_disk: BTreeMap<String, String> = fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        on_disk.extend(self.entries.clone());
        if let Ok(bytes) = serde_json::to_vec_pretty(&on_disk) {
            let _ = write_atomic(&self.path, &bytes);
        }
    }
}

/// The key of a step after `parent`.
pub fn key(parent: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}
