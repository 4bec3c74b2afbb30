//! `image prune`: remove images nothing needs.
//!
//! Dangling images (no tag) go; with `all`, every image no container uses
//! goes, tags and all. Containers run on the unpacked layers directly, so an
//! image a container uses always stays. Each image is removed as `rmi`
//! removes it (meta, config, records, unused layers and blobs), all under one
//! hold of the lock; the layers are emptied after it is released.

use std::collections::HashSet;

use super::distribution::dir_size;
use super::{Removed, Store, StoreError};

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Pruned {
    /// In Docker's order: an image's untags, then its deletion.
    pub removed: Vec<Removed>,
    /// Bytes of layer files freed.
    pub reclaimed: u64,
}

impl Store {
    /// Removes dangling images, or with `all` every unused one. `in_use`
    /// gives the ids of images containers use; it is asked under the lock.
    pub fn prune(
        &self,
        all: bool,
        in_use: impl FnOnce() -> anyhow::Result<HashSet<String>>,
    ) -> Result<Pruned, StoreError> {
        let lock = self.lock()?;
        let in_use = in_use()?;
        let mut tags = self.tags()?;
        let mut pruned = Pruned::default();
        let mut trash = Vec::new();
        for id in self.ids()? {
            let image_tags = tags.tags_of(&id);
            if in_use.contains(&id) || !(all || image_tags.is_empty()) {
                continue;
            }
            for tag in image_tags {
                tags.remove(&tag);
                pruned.removed.push(Removed::Untagged(tag));
            }
            // Untag first: a crash in between leaves a dangling image, not a
            // tag naming a missing one.
            self.save_tags(&tags)?;
            let folder = self.delete_image(&id)?;
            pruned.reclaimed += dir_size(folder.path()).unwrap_or(0);
            trash.push(folder);
            pruned.removed.push(Removed::Deleted(id));
        }
        drop(lock);
        drop(trash);
        Ok(pruned)
    }
}
