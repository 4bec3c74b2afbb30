//! The local image store.
//!
//! Layout under the data root:
//! - `images/blobs/sha256/<hex>`: content-addressed blobs (image configs now; manifests
//!   and compressed layers once pulls land). An image's id is its config's sha256.
//! - `images/layers/<diff_id hex>/`: each layer unpacked once, shared by every image.
//! - `images/meta/<id>.json`: per-image facts the config lacks (size); an image
//!   exists exactly when this file does.
//! - `images/repositories.json`: familiar tag (`busybox:latest`) → image id.
//! - `images/lock`: a flock held exclusively while anything above changes, shared
//!   while reading.
//! - `images/locks/<diff_id hex>`: a claim on a layer some pull is fetching;
//!   exists only while one is (see [`lock`]).
//!
//! Nothing half written is ever visible: layers are unpacked into a scratch
//! folder under `dirs.tmp()` and renamed into place, JSON is written atomically,
//! and an image's parts appear in the order layers → config → meta → tag (and
//! vanish in reverse). A crash leaves at most scratch folders, which the next
//! [`Store::open`] removes, or an unreferenced layer or blob.
//!
//! Submodules: [`layer`] turns tarballs into layers (decompression, the
//! diff_id, the unpack helper), [`unpack`] makes a tar stream's files beneath
//! the layer folder by directory fd, [`distribution`] keeps what pulls and
//! pushes need (compressed blobs, manifests, repository digests; `registry.json`),
//! [`pack`] turns a layer folder back into a tarball (with the owners the layer
//! was unpacked with), [`archive`] saves and loads
//! docker-archive and oci-archive tarballs, [`index`] keeps tags and metadata,
//! [`import`] builds configs, [`remove`] decides what `rmi` may do, [`prune`]
//! what `image prune` removes, [`stream`] hands a layer's bytes between the
//! threads that download, decompress, hash and unpack it, [`sys`] wraps `lsetxattr` and `syncfs`, [`lock`] and
//! [`scratch`] are the concurrency and atomicity plumbing.

mod archive;
mod commit;
mod distribution;
mod import;
mod index;
mod layer;
mod lock;
mod pack;
mod prune;
mod remove;
mod scratch;
mod stream;
mod sys;
#[cfg(test)]
mod testutil;
mod unpack;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use thiserror::Error;

pub use archive::Loaded;
pub use commit::{NewImage, docker_fields};
pub use distribution::{
    BlobMismatch, Committed, LayerBlob, LayerClaim, PullCommit, PulledLayer, StagedLayer, dir_size,
};
pub use import::{ImportOptions, host_arch};
pub use layer::{
    Compression, LayerError, OWNER_XATTR, Ownership, detect, helper_remove, helper_unpack,
    recorded_owner, set_ownership,
};
pub use pack::helper_pack;
pub use prune::Pruned;
pub use remove::Conflict;

use self::index::{Meta, Tags};
use self::lock::LockGuard;
use self::scratch::Scratch;
use crate::image::{Digest, Reference};
use crate::paths::{Dirs, make_private_dir, write_atomic};
use crate::timefmt;

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
    /// A build step's image, hidden by `images` unless `-a`.
    pub intermediate: bool,
}

/// The result of [`Store::import`].
#[derive(Debug, Clone)]
pub struct Imported {
    pub image: Image,
    /// Device nodes in the tarball that could not be created unprivileged.
    pub skipped_devices: u64,
}

/// One line of `rmi` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A familiar tag: `busybox:latest`.
    Untagged(String),
    /// An image id (64 hex).
    Deleted(String),
}

pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store under `dirs.data`, and removes
    /// scratch folders left by processes that died mid-import.
    pub fn open(dirs: &Dirs) -> Result<Store, StoreError> {
        let store = Store {
            root: dirs.data.join("images"),
            tmp: dirs.tmp(),
        };
        make_private_dir(&store.root)
            .with_context(|| format!("cannot create image store {}", store.root.display()))?;
        for dir in [
            store.blobs(),
            store.root.join("layers"),
            store.root.join("locks"),
            store.root.join("meta"),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        scratch::clean_stale(&store.tmp)
            .with_context(|| format!("cannot clean scratch folders in {}", store.tmp.display()))?;
        Ok(store)
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `docker.io/library/busybox:latest`)
    /// or by a unique prefix of its id (with or without `sha256:`).
    pub fn resolve(&self, name: &str) -> Result<Image, StoreError> {
        let _lock = self.lock_shared()?;
        let tags = self.tags()?;
        let (id, _) = self.find(name, &tags)?;
        self.load(&id, &tags)
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        let _lock = self.lock_shared()?;
        let tags = self.tags()?;
        let mut images = self
            .ids()?
            .iter()
            .map(|id| self.load(id, &tags))
            .collect::<Result<Vec<_>, _>>()?;
        // Parsed, not compared as text: configs from elsewhere vary the precision.
        let key = |i: &Image| timefmt::parse_rfc3339(&i.created);
        images.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.id.cmp(&b.id)));
        Ok(images)
    }

    /// Makes a one-layer image from a tarball (plain, gzip or zstd), like
    /// `docker import`. The unpack runs without the lock; only moving the
    /// results into place holds it.
    pub fn import(
        &self,
        input: impl Read,
        options: &ImportOptions,
    ) -> Result<Imported, StoreError> {
        let scratch = Scratch::create(&self.tmp, "unpack")
            .with_context(|| format!("cannot create a scratch folder in {}", self.tmp.display()))?;
        let unpacked =
            layer::unpack_configured(input, scratch.path()).context("cannot import the tarball")?;
        // The tarball's own newest mtime, not the clock, dates the image, so the
        // same tarball with the same options is the same image (same id), as a
        // reproducible build would want; Docker uses the clock instead.
        let created = UNIX_EPOCH + Duration::from_secs(unpacked.newest_mtime);
        let config = import::config(&unpacked.diff_id, options, &timefmt::rfc3339(created));
        let bytes = serde_json::to_vec(&config).context("cannot encode the image config")?;
        let id = Digest::of(&bytes);

        let _lock = self.lock()?;
        let layer_dir = self.layer_dir(&unpacked.diff_id);
        if !layer_dir.exists() {
            layer::move_into_place(scratch.path(), &layer_dir)
                .with_context(|| format!("cannot move the layer into {}", layer_dir.display()))?;
        }
        write_new(&self.blob(id.hex()), &bytes)?;
        let meta = self.meta(id.hex());
        Meta::new(unpacked.size)
            .save(&meta)
            .with_context(|| format!("cannot write {}", meta.display()))?;
        let mut tags = self.tags()?;
        if let Some(reference) = &options.reference {
            tags.set(&tag_key(reference)?, id.hex());
            self.save_tags(&tags)?;
        }
        let image = self.load(id.hex(), &tags)?;
        Ok(Imported {
            image,
            skipped_devices: unpacked.skipped_devices,
        })
    }

    /// Points `target` at the image `source` names, moving the tag if it
    /// named another image. Returns the image id.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<String, StoreError> {
        let key = tag_key(target)?;
        let _lock = self.lock()?;
        let mut tags = self.tags()?;
        let (id, _) = self.find(source, &tags)?;
        tags.set(&key, &id);
        self.save_tags(&tags)?;
        Ok(id)
    }

    /// Removes a tag or an image, as `docker rmi` does (see [`remove`]).
    /// `users` lists the containers using an image id; it is asked under the
    /// lock, once the name is resolved. A refusal is a [`Conflict`] inside
    /// `StoreError::Other`.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        users: impl FnOnce(&str) -> anyhow::Result<Vec<String>>,
    ) -> Result<Vec<Removed>, StoreError> {
        let lock = self.lock()?;
        let mut tags = self.tags()?;
        let (id, via_tag) = self.find(name, &tags)?;
        let users = users(&id)?;
        let all_tags = tags.tags_of(&id);
        let request = remove::Request {
            name,
            id: &id,
            via_tag: via_tag.as_deref(),
            tags: &all_tags,
            users: &users,
            force,
        };
        let plan = remove::plan(&request).map_err(|c| StoreError::Other(c.into()))?;

        let mut removed = Vec::new();
        for tag in &plan.untag {
            tags.remove(tag);
            removed.push(Removed::Untagged(tag.clone()));
        }
        self.save_tags(&tags)?;
        if !plan.delete {
            return Ok(removed);
        }
        let trash = self.delete_image(&id)?;
        removed.push(Removed::Deleted(id));
        // The unused layers are already out of sight; emptying them needs no lock.
        drop(lock);
        drop(trash);
        Ok(removed)
    }

    /// Deletes the image's meta and config, forgets its registry records and
    /// the blobs only it used, and moves its layers that no other
    /// image uses into a scratch folder, returned so the caller can drop it
    /// (and the files) once the lock is released.
    fn delete_image(&self, id: &str) -> Result<Scratch, StoreError> {
        let config = self.read_config(id)?;
        let meta = self.meta(id);
        fs::remove_file(&meta).with_context(|| format!("cannot remove {}", meta.display()))?;
        let blob = self.blob(id);
        fs::remove_file(&blob).with_context(|| format!("cannot remove {}", blob.display()))?;

        let in_use = self.layers_in_use()?;
        let trash =
            Scratch::create(&self.tmp, "trash").context("cannot create a scratch folder")?;
        let mut gone = Vec::new();
        for diff_id in config.rootfs().diff_ids() {
            let digest = parse_diff_id(diff_id)?;
            let dir = self.layer_dir(&digest);
            if in_use.contains(digest.hex()) {
                continue;
            }
            for has in [true, false] {
                let _ = fs::remove_file(whiteout_marker(&dir, has));
            }
            if dir.exists() {
                fs::rename(&dir, trash.path().join(digest.hex()))
                    .or_else(|_| layer::move_into_place(&dir, &trash.path().join(digest.hex())))
                    .with_context(|| format!("cannot remove layer {}", dir.display()))?;
            }
            gone.push(digest);
        }
        self.forget_image(id, &gone)?;
        Ok(trash)
    }

    /// Diff ids (hex) of every layer some image still lists.
    fn layers_in_use(&self) -> Result<HashSet<String>, StoreError> {
        let mut used = HashSet::new();
        for id in self.ids()? {
            for diff_id in self.read_config(&id)?.rootfs().diff_ids() {
                used.insert(parse_diff_id(diff_id)?.hex().to_string());
            }
        }
        Ok(used)
    }

    /// Resolves `name` to an image id, and the tag it went through, if any.
    fn find(&self, name: &str, tags: &Tags) -> Result<(String, Option<String>), StoreError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            return self.find_by_prefix(name, hex).map(|id| (id, None));
        }
        if let Ok(reference) = name.parse::<Reference>()
            && reference.digest().is_none()
        {
            let key = reference.familiar();
            if let Some(id) = tags.get(&key) {
                return Ok((id.to_string(), Some(key)));
            }
        }
        // `NAME@sha256:...`: the image pulled (or pushed) under that digest.
        if let Ok(reference) = name.parse::<Reference>()
            && let Some(id) = self.find_by_repo_digest(&reference)
        {
            return Ok((id, None));
        }
        self.find_by_prefix(name, name).map(|id| (id, None))
    }

    fn find_by_prefix(&self, name: &str, prefix: &str) -> Result<String, StoreError> {
        let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(hex) {
            return Err(StoreError::NotFound(name.to_string()));
        }
        let mut matches = self.ids()?.into_iter().filter(|id| id.starts_with(prefix));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(StoreError::Ambiguous(name.to_string())),
            (None, _) => Err(StoreError::NotFound(name.to_string())),
        }
    }

    fn load(&self, id: &str, tags: &Tags) -> Result<Image, StoreError> {
        let config = self.read_config(id)?;
        let meta_path = self.meta(id);
        let meta = Meta::load(&meta_path)
            .with_context(|| format!("cannot read {}", meta_path.display()))?;
        let layers = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| parse_diff_id(d).map(|d| self.layer_dir(&d)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Image {
            id: id.to_string(),
            repo_tags: tags.tags_of(id),
            created: config.created().clone().unwrap_or_default(),
            size: meta.size,
            config,
            layers,
            intermediate: meta.intermediate,
        })
    }

    /// Reads a config blob and checks it still hashes to its name.
    fn read_config(&self, id: &str) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        let path = self.blob(id);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if Digest::of(&bytes).hex() != id {
            return Err(anyhow!(
                "image config {} is corrupt: its sha256 does not match",
                path.display()
            )
            .into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot parse image config {}", path.display()))
            .map_err(StoreError::from)
    }

    fn ids(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("meta");
        index::image_ids(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))
            .map_err(StoreError::from)
    }

    fn tags(&self) -> Result<Tags, StoreError> {
        let path = self.tags_path();
        Tags::load(&path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(StoreError::from)
    }

    fn save_tags(&self, tags: &Tags) -> Result<(), StoreError> {
        let path = self.tags_path();
        tags.save(&path)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(StoreError::from)
    }

    fn lock(&self) -> Result<LockGuard, StoreError> {
        let path = self.root.join("lock");
        lock::exclusive(&path)
            .with_context(|| format!("cannot lock {}", path.display()))
            .map_err(StoreError::from)
    }

    fn lock_shared(&self) -> Result<LockGuard, StoreError> {
        let path = self.root.join("lock");
        lock::shared(&path)
            .with_context(|| format!("cannot lock {}", path.display()))
            .map_err(StoreError::from)
    }

    fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.blobs().join(hex)
    }

    fn meta(&self, id: &str) -> PathBuf {
        self.root.join("meta").join(format!("{id}.json"))
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }
}

/// The index key for a tag: its familiar form. Digests cannot be tags.
fn tag_key(reference: &Reference) -> Result<String, StoreError> {
    if reference.digest().is_some() || reference.tag().is_none() {
        return Err(anyhow!(
            "cannot tag an image as \"{}\": a tag name cannot carry a digest; drop the @sha256:... part",
            reference.familiar()
        )
        .into());
    }
    Ok(reference.familiar())
}

fn parse_diff_id(diff_id: &str) -> Result<Digest, StoreError> {
    diff_id
        .parse::<Digest>()
        .with_context(|| "image config lists an invalid layer diff_id")
        .map_err(StoreError::from)
}

/// Writes a content-addressed blob unless it is already there (same name, same bytes).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests;

/// The marker beside an unpacked layer folder that records whether the layer
/// holds OCI whiteouts (`<layer>.whiteouts` or `<layer>.no-whiteouts`), so
/// the rootfs driver choice walks each layer once. Removed with the layer.
pub fn whiteout_marker(layer_dir: &Path, has_whiteouts: bool) -> PathBuf {
    let mut name = layer_dir.as_os_str().to_owned();
    name.push(if has_whiteouts {
        ".whiteouts"
    } else {
        ".no-whiteouts"
    });
    PathBuf::from(name)
}
