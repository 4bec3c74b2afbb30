//! What the store keeps for registries: pulled layers, manifests, compressed
//! blobs and repository digests.
//!
//! A pull first claims each layer it lacks ([`Store::claim_layer`]): a
//! second pull that needs the same layer waits for the claim and then finds
//! the layer in the store, so concurrent pulls fetch a shared layer once. The
//! holder hands the layer's stream to [`Store::receive_layer`], which unpacks
//! it into a scratch folder while hashing both the compressed bytes (the blob
//! digest, which the caller checks against the manifest) and the tar stream
//! (the diff_id), and keeps the compressed bytes as a file beside it. Once
//! both digests check out, [`Store::commit_layer`] flushes the layer to disk
//! and renames it (and its blob) into place under the lock, before the claim
//! is released. A layer no image lists yet is harmless (a killed pull leaves
//! its finished layers for the next pull to use); the image itself appears
//! only with [`Store::commit_pull`], in the store's usual order: config →
//! meta → tag.
//!
//! `images/registry.json` indexes what only registries care about:
//! - `repo_digests`: `NAME@sha256:...` (the manifest digest a registry gave
//!   for that repository) → image id, for `images --digests` and for
//!   resolving `NAME@sha256:...` locally;
//! - `manifests`: image id → the digest of its platform manifest blob, so a
//!   push of a pulled image sends the manifest it came with;
//! - `layers`: diff_id → the compressed blob that holds that layer, and the
//!   repositories known to hold the blob (for cross-repository mounts).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

use super::index::Meta;
use super::lock::Claim;
use super::scratch::Scratch;
use super::{Image, Store, StoreError, layer, pack, stream, sys, write_new};
use crate::image::{Digest, Hasher, Reference};
use crate::paths::write_atomic;

/// A compressed layer blob and what it unpacks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    /// `sha256:...` of the compressed bytes.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// `sha256:...` of the tar stream inside. Equals the local diff_id for a
    /// pulled layer; a layer packed from its folder may differ.
    pub diff_id: String,
    /// Repositories (`host/path`) known to hold the blob.
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RegistryIndex {
    #[serde(default)]
    pub(super) repo_digests: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) manifests: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) layers: BTreeMap<String, LayerBlob>,
}

/// A layer stream whose bytes do not hash to the digest the caller expected.
#[derive(Debug, thiserror::Error)]
#[error("its sha256 is {actual}, not {expected}")]
pub struct BlobMismatch {
    pub expected: Digest,
    pub actual: Digest,
}

/// A downloaded layer, unpacked in scratch and not yet visible.
#[derive(Debug)]
pub struct StagedLayer {
    scratch: Scratch,
    /// sha256 of the bytes received (the blob digest).
    pub digest: Digest,
    pub size: u64,
    /// sha256 of the tar stream.
    pub diff_id: Digest,
    /// Bytes of file content unpacked.
    pub unpacked_size: u64,
}

impl StagedLayer {
    pub(super) fn layer_dir(&self) -> PathBuf {
        self.scratch.path().join("layer")
    }

    pub(super) fn blob_path(&self) -> PathBuf {
        self.scratch.path().join("blob")
    }

    /// Writes the unpacked files and the blob to disk, as must happen
    /// before they are renamed into the store. One syncfs instead of an
    /// fsync per file: the kernel writes everything back in one pass (and
    /// layers staged beside this one with it).
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let path = self.scratch.path();
        let dir = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        sys::syncfs(&dir).context("cannot flush the layer to disk")?;
        Ok(())
    }
}

/// The right to fetch one layer; other pulls of it wait until it drops.
#[derive(Debug)]
pub struct LayerClaim {
    _claim: Claim,
}

/// One layer of a pull: its blob, and its unpacked size when this pull
/// fetched it (else the store measures the folder it already had).
#[derive(Debug)]
pub struct PulledLayer {
    pub diff_id: Digest,
    pub blob: LayerBlob,
    pub unpacked_size: Option<u64>,
}

/// Everything [`Store::commit_pull`] makes visible.
#[derive(Debug)]
pub struct PullCommit<'a> {
    /// What was pulled; its tag (if any) is set.
    pub reference: &'a Reference,
    /// The digest the registry gave for the reference (an index's, if it
    /// served one): the repository digest.
    pub repo_digest: &'a Digest,
    /// Manifest and index documents to keep, by digest.
    pub documents: Vec<(Digest, Vec<u8>)>,
    /// The platform manifest's digest.
    pub manifest: Digest,
    pub config: &'a [u8],
    pub layers: Vec<PulledLayer>,
}

/// What a pull changed.
#[derive(Debug)]
pub struct Committed {
    pub image: Image,
    /// False when the tag already named this image ("Image is up to date").
    pub changed: bool,
}

/// Hashes what is written through it.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Whether the layer with this diff_id is unpacked in the store.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// Unpacks a layer stream (plain, gzip or zstd) into scratch, keeping the
    /// compressed bytes. Reads `input` to its end, so the digest covers it
    /// all; bytes that do not hash to `expected` fail with [`BlobMismatch`]
    /// (inside `StoreError::Other`), even when they also failed to unpack:
    /// a corrupt download is reported as such, not as a bad tarball.
    pub fn receive_layer(
        &self,
        input: impl Read + Send,
        expected: &Digest,
    ) -> Result<StagedLayer, StoreError> {
        self.receive(input, Some(expected))
    }

    /// [`Store::receive_layer`] for a stream whose blob digest nobody
    /// promised (a docker-archive names layers by path); the caller checks
    /// the diff_id instead.
    pub(super) fn receive(
        &self,
        input: impl Read + Send,
        expected: Option<&Digest>,
    ) -> Result<StagedLayer, StoreError> {
        let scratch = Scratch::create(&self.tmp, "pull")
            .with_context(|| format!("cannot create a scratch folder in {}", self.tmp.display()))?;
        let layer_dir = scratch.path().join("layer");
        fs::create_dir(&layer_dir)
            .with_context(|| format!("cannot create {}", layer_dir.display()))?;
        let blob_path = scratch.path().join("blob");
        let file = File::create(&blob_path)
            .with_context(|| format!("cannot create {}", blob_path.display()))?;
        let (unpacked, fetched) = std::thread::scope(|s| {
            let (reader, fetcher) = stream::spawn_fetch(s, input, &file);
            let unpacked = layer::unpack_configured(reader, &layer_dir);
            (unpacked, fetcher.join())
        });
        let fetched = fetched.map_err(|_| anyhow!("the layer download thread panicked"))?;
        let actual = fetched.digest;
        if let Some(expected) = expected.filter(|e| fetched.result.is_ok() && actual != **e) {
            let mismatch = BlobMismatch {
                expected: expected.clone(),
                actual,
            };
            return Err(anyhow!(mismatch).into());
        }
        // A failed read fails the unpack too; name the cause, not its echo.
        fetched.result.context("cannot read the layer")?;
        let unpacked = unpacked.context("cannot unpack the layer")?;
        Ok(StagedLayer {
            digest: actual,
            size: fetched.size,
            diff_id: unpacked.diff_id,
            unpacked_size: unpacked.size,
            scratch,
        })
    }

    /// Claims the layer `diff_id` for fetching, waiting (after calling
    /// `waiting` once) while another process holds it. `None` when the
    /// layer is in the store by the time the claim is ours: whoever held it
    /// fetched it. A claim whose holder died passes to the next waiter.
    pub fn claim_layer(
        &self,
        diff_id: &Digest,
        waiting: impl FnOnce(),
    ) -> Result<Option<LayerClaim>, StoreError> {
        let path = self.root.join("locks").join(diff_id.hex());
        let claim = Claim::acquire(&path, waiting)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok((!self.has_layer(diff_id)).then_some(LayerClaim { _claim: claim }))
    }

    /// Makes one fetched layer and its blob part of the store, durably:
    /// the unpacked files reach the disk before the rename that makes them
    /// visible, and the rename before any image can list the layer.
    /// `staged` must hold a layer whose diff_id the caller checked. Returns
    /// the unpacked size.
    pub fn commit_layer(
        &self,
        staged: StagedLayer,
        blob: &LayerBlob,
        source: &str,
    ) -> Result<u64, StoreError> {
        staged.flush()?;
        let _lock = self.lock()?;
        let dir = self.layer_dir(&staged.diff_id);
        if !dir.exists() {
            layer::move_into_place(&staged.layer_dir(), &dir)
                .with_context(|| format!("cannot move the layer into {}", dir.display()))?;
        }
        let target = self.blob(staged.digest.hex());
        if !target.exists() {
            fs::rename(staged.blob_path(), &target)
                .with_context(|| format!("cannot move the blob into {}", target.display()))?;
        }
        for parent in [self.root.join("layers"), self.blobs()] {
            sync_dir(&parent).with_context(|| format!("cannot flush {}", parent.display()))?;
        }
        let mut index = self.registry_index()?;
        let entry = index
            .layers
            .entry(staged.diff_id.hex().to_string())
            .or_insert_with(|| blob.clone());
        if !entry.sources.iter().any(|s| s == source) {
            entry.sources.push(source.to_string());
        }
        self.save_registry_index(&index)?;
        Ok(staged.unpacked_size)
    }

    /// Makes a pulled image visible: documents, config, meta, tag. Its
    /// layers are in the store already ([`Store::commit_layer`]).
    pub fn commit_pull(&self, pull: PullCommit<'_>) -> Result<Committed, StoreError> {
        let id = Digest::of(pull.config);
        let _lock = self.lock()?;
        let mut index = self.registry_index()?;
        let mut size = 0;
        let source = pull.reference.name();
        for layer in &pull.layers {
            let dir = self.layer_dir(&layer.diff_id);
            // An `rmi` or `prune` while this pull ran may have removed a
            // layer that no image listed; never commit an image without it.
            if !dir.is_dir() {
                return Err(anyhow!(
                    "layer {} was removed from the store while the image was pulled; pull it again",
                    layer.diff_id
                )
                .into());
            }
            size += match layer.unpacked_size {
                Some(n) => n,
                None => dir_size(&dir).unwrap_or(0),
            };
            let entry = index
                .layers
                .entry(layer.diff_id.hex().to_string())
                .or_insert_with(|| layer.blob.clone());
            if !entry.sources.contains(&source) {
                entry.sources.push(source.clone());
            }
        }
        for (digest, bytes) in &pull.documents {
            write_new(&self.blob(digest.hex()), bytes)?;
        }
        write_new(&self.blob(id.hex()), pull.config)?;
        let meta = self.meta(id.hex());
        Meta::new(size)
            .save(&meta)
            .with_context(|| format!("cannot write {}", meta.display()))?;
        index
            .manifests
            .insert(id.hex().into(), pull.manifest.to_string());
        index.repo_digests.insert(
            format!("{}@{}", pull.reference.familiar_name(), pull.repo_digest),
            id.hex().into(),
        );
        self.save_registry_index(&index)?;
        let mut tags = self.tags()?;
        let mut changed = true;
        if pull.reference.tag().is_some() && pull.reference.digest().is_none() {
            let key = pull.reference.familiar();
            changed = tags.set(&key, id.hex()).as_deref() != Some(id.hex());
            self.save_tags(&tags)?;
        }
        let image = self.load(id.hex(), &tags)?;
        Ok(Committed { image, changed })
    }

    /// Repository digests (`NAME@sha256:...`) by image id.
    pub fn repo_digests(&self) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let _lock = self.lock_shared()?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, id) in self.registry_index()?.repo_digests {
            out.entry(id).or_default().push(name);
        }
        Ok(out)
    }

    /// The image a `NAME@sha256:...` reference was pulled as, if it exists.
    pub(super) fn find_by_repo_digest(&self, reference: &Reference) -> Option<String> {
        let digest = reference.digest()?;
        let key = format!("{}@{digest}", reference.familiar_name());
        let index = self.registry_index().ok()?;
        let id = index.repo_digests.get(&key)?;
        self.meta(id).exists().then(|| id.clone())
    }

    /// The config blob of an image, as stored (its sha256 is the id).
    pub fn config_bytes(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        self.read_config(id)?;
        let path = self.blob(id);
        fs::read(&path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(StoreError::from)
    }

    /// The manifest an image was pulled with, if the store has it.
    pub fn pulled_manifest(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _lock = self.lock_shared()?;
        let index = self.registry_index()?;
        let Some(digest) = index.manifests.get(id) else {
            return Ok(None);
        };
        let Ok(digest) = digest.parse::<Digest>() else {
            return Ok(None);
        };
        let bytes = fs::read(self.blob(digest.hex())).ok();
        Ok(bytes.filter(|b| Digest::of(b) == digest))
    }

    /// The path of a blob, if the store holds it.
    pub fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.blob(digest.hex());
        path.is_file().then_some(path)
    }

    /// The compressed blob for a layer: the one it was pulled or pushed as,
    /// or a new gzip of its folder (deterministic, so the same every time).
    pub fn layer_blob(&self, diff_id: &Digest) -> Result<LayerBlob, StoreError> {
        {
            let _lock = self.lock_shared()?;
            if let Some(known) = self.registry_index()?.layers.get(diff_id.hex())
                && let Ok(d) = known.digest.parse::<Digest>()
                && self.blob(d.hex()).is_file()
            {
                return Ok(known.clone());
            }
        }
        let dir = self.layer_dir(diff_id);
        let scratch =
            Scratch::create(&self.tmp, "pack").context("cannot create a scratch folder")?;
        let path = scratch.path().join("blob");
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let compressed = HashWriter {
            inner: BufWriter::new(file),
            hasher: Hasher::new(),
            count: 0,
        };
        let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
        let mut tar = HashWriter {
            inner: gz,
            hasher: Hasher::new(),
            count: 0,
        };
        pack::pack_configured(&dir, &mut tar)
            .with_context(|| format!("cannot pack layer {}", dir.display()))?;
        let mut compressed = tar.inner.finish().context("cannot compress the layer")?;
        compressed.flush().context("cannot write the layer blob")?;
        let blob = LayerBlob {
            digest: Digest::from_hasher(compressed.hasher).to_string(),
            size: compressed.count,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: Digest::from_hasher(tar.hasher).to_string(),
            sources: Vec::new(),
        };
        let digest: Digest = blob.digest.parse().map_err(|e| anyhow!("{e}"))?;
        let _lock = self.lock()?;
        let target = self.blob(digest.hex());
        if !target.exists() {
            fs::rename(&path, &target)
                .with_context(|| format!("cannot move the blob into {}", target.display()))?;
        }
        let mut index = self.registry_index()?;
        index.layers.insert(diff_id.hex().into(), blob.clone());
        self.save_registry_index(&index)?;
        Ok(blob)
    }

    /// Records a push: the blobs `name` now holds and its repository digest.
    pub fn record_push(
        &self,
        reference: &Reference,
        id: &str,
        manifest: &Digest,
        layers: &[Digest],
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut index = self.registry_index()?;
        let name = reference.name();
        for diff_id in layers {
            if let Some(blob) = index.layers.get_mut(diff_id.hex())
                && !blob.sources.contains(&name)
            {
                blob.sources.push(name.clone());
            }
        }
        index.repo_digests.insert(
            format!("{}@{manifest}", reference.familiar_name()),
            id.to_string(),
        );
        self.save_registry_index(&index)
    }

    /// Drops what `registry.json` says about a deleted image (its manifest,
    /// its repository digests, the blobs of the layers `gone` with it) and
    /// removes the blob files nothing else recorded still names.
    pub(super) fn forget_image(&self, id: &str, gone: &[Digest]) -> Result<(), StoreError> {
        let mut index = self.registry_index()?;
        let mut unused = Vec::new();
        unused.extend(index.manifests.remove(id));
        index.repo_digests.retain(|name, image| {
            let keep = image != id;
            if !keep && let Some((_, digest)) = name.rsplit_once('@') {
                unused.push(digest.to_string());
            }
            keep
        });
        for diff_id in gone {
            unused.extend(index.layers.remove(diff_id.hex()).map(|b| b.digest));
        }
        let mut named: HashSet<String> = index.manifests.values().cloned().collect();
        named.extend(index.layers.values().map(|b| b.digest.clone()));
        named.extend(
            index
                .repo_digests
                .keys()
                .filter_map(|k| k.rsplit_once('@').map(|(_, d)| d.to_string())),
        );
        for digest in unused {
            let Ok(d) = digest.parse::<Digest>() else {
                continue;
            };
            // An image's config is its id: never a blob another image's record names.
            if named.contains(&digest) || self.meta(d.hex()).exists() {
                continue;
            }
            match fs::remove_file(self.blob(d.hex())) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow!(e).context(format!("cannot remove blob {d}")).into()),
            }
        }
        self.save_registry_index(&index)
    }

    pub(super) fn registry_index(&self) -> Result<RegistryIndex, StoreError> {
        let path = self.root.join("registry.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("cannot parse {}", path.display()))
                .map_err(StoreError::from),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RegistryIndex::default()),
            Err(e) => Err(anyhow!(e)
                .context(format!("cannot read {}", path.display()))
                .into()),
        }
    }

    pub(super) fn save_registry_index(&self, index: &RegistryIndex) -> Result<(), StoreError> {
        let path = self.root.join("registry.json");
        let json = serde_json::to_vec_pretty(index).context("cannot encode the registry index")?;
        write_atomic(&path, &json)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(StoreError::from)
    }
}

/// Flushes a folder's entries (a rename into it) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes of regular file content under `dir`, as unpacking counts them.
///
/// A folder this user may not read counts as empty instead of failing the
/// sum: with a subuid range, a layer's mode-0700 folders (an image's
/// `/root`, apt's `partial/`) belong to subordinate ids. The total is then
/// a little low, where an error made callers report nothing at all.
pub fn dir_size(dir: &Path) -> io::Result<u64> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}
