//! The local image store.
//!
//! (Interface fixed; the implementation is being written.)
//!
//! Layout under the data root:
//! - `images/blobs/sha256/<hex>`: content-addressed blobs (image configs now; manifests
//!   and compressed layers once pulls land).
//! - `images/layers/<diff_id hex>/`: each layer unpacked once, shared by every image.
//! - `images/repositories.json`: tag → image id.
//! - `images/lock`: a flock held while the index changes.

use std::path::PathBuf;

use thiserror::Error;

use crate::paths::Dirs;

#[derive(Debug, Error)]
pub enum StoreError {
    /// No tag or id prefix matches. Carries what the user typed.
    #[error("image \"{0}\" not found locally; import it with: burrow import ROOTFS.tar {0}")]
    NotFound(String),
    #[error("image id prefix \"{0}\" is ambiguous; give more characters")]
    Ambiguous(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// An image as `run` needs it.
#[derive(Debug, Clone)]
pub struct Image {
    /// 64 hex characters: the sha256 of the config blob (no `sha256:` prefix).
    pub id: String,
    /// Familiar forms, as `docker images` shows them: `busybox:latest`.
    pub repo_tags: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// Bytes unpacked.
    pub size: u64,
    pub config: oci_spec::image::ImageConfiguration,
    /// Unpacked layer folders, bottom first.
    pub layers: Vec<PathBuf>,
}

pub struct Store {
    #[allow(dead_code)]
    root: PathBuf,
}

impl Store {
    pub fn open(dirs: &Dirs) -> Result<Store, StoreError> {
        Ok(Store { root: dirs.data.join("images") })
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `docker.io/library/busybox:latest`)
    /// or by a unique prefix of its id (with or without `sha256:`).
    pub fn resolve(&self, name: &str) -> Result<Image, StoreError> {
        Err(StoreError::NotFound(name.to_string()))
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        Ok(Vec::new())
    }
}
