//! `save` and `load`: images to and from docker-archive and oci-archive
//! tarballs (the layouts are described in [`crate::image::archive`]).
//!
//! Save writes, per image, its config and its layers: for an oci-archive the
//! compressed blobs the store keeps (or a deterministic gzip made now, as
//! `push` does), for a docker-archive those blobs decompressed, since Docker
//! wants plain tarballs whose sha256 is the diff_id. A layer packed from its
//! folder may hash differently from the tarball it was unpacked from; the
//! saved config then lists the new diff_ids (and the saved image has another
//! id), exactly as `push` does.
//!
//! Load reads the whole archive into a scratch folder first (an archive
//! piped in may put `manifest.json` last), recognises the layout by its
//! content, checks every digest it is given, unpacks each missing layer once
//! through the same staging as a pull, and commits like a pull: layers,
//! blobs, config, meta, tags, under the lock. A failure leaves only scratch.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use oci_spec::image::ImageConfiguration;

use super::index::Meta;
use super::scratch::Scratch;
use super::{LayerBlob, StagedLayer, Store, StoreError, layer, parse_diff_id, tag_key, write_new};
use crate::image::archive::{
    self as format, CONTAINERD_NAME, Descriptor, DockerEntry, Format, OCI_LAYOUT, OciIndex,
    OciManifest, REF_NAME,
};
use crate::image::{Digest, Hasher, Reference};

/// `anyhow::bail!` for functions returning [`StoreError`].
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(StoreError::Other(anyhow!($($arg)*)))
    };
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// One image a `load` made visible.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// 64 hex.
    pub id: String,
    /// Familiar tags set.
    pub tags: Vec<String>,
}

/// An image of an archive being loaded, before its layers are read.
struct Candidate {
    config: Vec<u8>,
    layers: Vec<Source>,
    tags: Vec<Reference>,
}

/// Where a layer is inside the unpacked archive, and what it must hash to.
struct Source {
    path: String,
    digest: Option<Digest>,
    media_type: Option<String>,
}

/// One image to save: the tags it goes under, its config and layer blobs.
struct Saved {
    tags: Vec<String>,
    config: Vec<u8>,
    blobs: Vec<LayerBlob>,
}

impl Store {
    /// Writes the images `names` resolve to as one archive to `out`.
    pub fn save_archive(
        &self,
        names: &[String],
        format: Format,
        out: impl Write,
    ) -> Result<(), StoreError> {
        let images = self.images_to_save(names)?;
        let mut tar = tar::Builder::new(out);
        match format {
            Format::Docker => self.write_docker(&images, &mut tar)?,
            Format::Oci => self.write_oci(&images, &mut tar)?,
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .context("cannot write the archive")?;
        Ok(())
    }

    /// Resolves the names (several may name one image) and gathers each
    /// image's config and layer blobs.
    fn images_to_save(&self, names: &[String]) -> Result<Vec<Saved>, StoreError> {
        let mut found: Vec<(String, Vec<String>)> = Vec::new();
        {
            let _lock = self.lock_shared()?;
            let tags = self.tags()?;
            for name in names {
                let (id, via_tag) = self.find(name, &tags)?;
                let i = match found.iter().position(|(f, _)| *f == id) {
                    Some(i) => i,
                    None => {
                        found.push((id, Vec::new()));
                        found.len() - 1
                    }
                };
                if let Some(tag) = via_tag.filter(|t| !found[i].1.contains(t)) {
                    found[i].1.push(tag);
                }
            }
        }
        let mut images = Vec::new();
        for (id, tags) in found {
            let stored = self.config_bytes(&id)?;
            let config: ImageConfiguration = serde_json::from_slice(&stored)
                .with_context(|| format!("cannot parse the config of image {}", &id[..12]))?;
            let diff_ids = config
                .rootfs()
                .diff_ids()
                .iter()
                .map(|d| parse_diff_id(d))
                .collect::<Result<Vec<_>, _>>()?;
            let blobs = diff_ids
                .iter()
                .map(|d| self.layer_blob(d))
                .collect::<Result<Vec<_>, _>>()?;
            let config = with_diff_ids(&stored, &diff_ids, &blobs)?;
            images.push(Saved {
                tags,
                config,
                blobs,
            });
        }
        Ok(images)
    }

    fn write_docker(
        &self,
        images: &[Saved],
        tar: &mut tar::Builder<impl Write>,
    ) -> Result<(), StoreError> {
        let scratch =
            Scratch::create(&self.tmp, "save").context("cannot create a scratch folder")?;
        let mut written = Vec::new();
        let mut entries = Vec::new();
        for image in images {
            let mut layers = Vec::new();
            for blob in &image.blobs {
                let diff_id: Digest = blob.diff_id.parse().map_err(|e| anyhow!("{e}"))?;
                let name = format!("{}.tar", diff_id.hex());
                if !written.contains(&name) {
                    let plain = scratch.path().join(&name);
                    self.decompress_blob(blob, &diff_id, &plain)?;
                    append_file(tar, &name, &plain)?;
                    fs::remove_file(&plain).ok();
                    written.push(name.clone());
                }
                layers.push(name);
            }
            let config_name = format!("{}.json", Digest::of(&image.config).hex());
            if !written.contains(&config_name) {
                append_bytes(tar, &config_name, &image.config)?;
                written.push(config_name.clone());
            }
            entries.push(DockerEntry {
                config: config_name,
                repo_tags: image.tags.clone(),
                layers,
            });
        }
        let manifest = serde_json::to_vec(&entries).context("cannot encode manifest.json")?;
        append_bytes(tar, "manifest.json", &manifest)
    }

    fn write_oci(
        &self,
        images: &[Saved],
        tar: &mut tar::Builder<impl Write>,
    ) -> Result<(), StoreError> {
        append_bytes(tar, "oci-layout", OCI_LAYOUT.as_bytes())?;
        append_dir(tar, "blobs/")?;
        append_dir(tar, "blobs/sha256/")?;
        let mut written = Vec::new();
        let mut put = |tar: &mut tar::Builder<_>, digest: &Digest, source: Blob<'_>| {
            if written.contains(digest) {
                return Ok(());
            }
            written.push(digest.clone());
            let name = format::blob_path(digest);
            match source {
                Blob::Bytes(b) => append_bytes(tar, &name, b),
                Blob::File(p) => append_file(tar, &name, p),
            }
        };
        let mut index = Vec::new();
        for image in images {
            let config_digest = Digest::of(&image.config);
            let mut layers = Vec::new();
            for blob in &image.blobs {
                let digest: Digest = blob.digest.parse().map_err(|e| anyhow!("{e}"))?;
                let path = self
                    .blob_file(&digest)
                    .ok_or_else(|| anyhow!("the store lost layer blob {digest}"))?;
                put(tar, &digest, Blob::File(&path))?;
                layers.push(descriptor(&blob.media_type, &digest, blob.size));
            }
            put(tar, &config_digest, Blob::Bytes(&image.config))?;
            let manifest = OciManifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                config: descriptor(OCI_CONFIG, &config_digest, image.config.len() as u64),
                layers,
            };
            let bytes = serde_json::to_vec(&manifest).context("cannot encode a manifest")?;
            let digest = Digest::of(&bytes);
            put(tar, &digest, Blob::Bytes(&bytes))?;
            let entry = descriptor(OCI_MANIFEST, &digest, bytes.len() as u64);
            if image.tags.is_empty() {
                index.push(entry.clone());
            }
            for tag in &image.tags {
                // Both names: Docker and containerd read the first, podman
                // and skopeo the second.
                let full = tag
                    .parse::<Reference>()
                    .map_or(tag.clone(), |r| r.to_string());
                let mut entry = entry.clone();
                entry
                    .annotations
                    .insert(CONTAINERD_NAME.into(), full.clone());
                entry.annotations.insert(REF_NAME.into(), full);
                index.push(entry);
            }
        }
        let index = OciIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: index,
        };
        let bytes = serde_json::to_vec(&index).context("cannot encode index.json")?;
        append_bytes(tar, "index.json", &bytes)
    }

    /// Writes a layer blob's tar stream to `to`, checking it hashes to `diff_id`.
    fn decompress_blob(
        &self,
        blob: &LayerBlob,
        diff_id: &Digest,
        to: &Path,
    ) -> Result<(), StoreError> {
        let digest: Digest = blob.digest.parse().map_err(|e| anyhow!("{e}"))?;
        let path = self
            .blob_file(&digest)
            .ok_or_else(|| anyhow!("the store lost layer blob {digest}"))?;
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut input = layer::decompress(io::BufReader::new(file))
            .with_context(|| format!("cannot read layer blob {}", path.display()))?;
        let mut out = HashingWriter {
            inner: BufWriter::new(
                File::create(to).with_context(|| format!("cannot create {}", to.display()))?,
            ),
            hasher: Hasher::new(),
        };
        io::copy(&mut input, &mut out)
            .and_then(|_| out.inner.flush())
            .with_context(|| format!("cannot decompress layer blob {}", path.display()))?;
        let actual = Digest::from_hasher(out.hasher);
        if actual != *diff_id {
            return Err(anyhow!(
                "layer blob {} is corrupt: its tar stream hashes to {actual}, not {diff_id}",
                path.display()
            )
            .into());
        }
        Ok(())
    }

    /// Loads every image of a docker-archive or oci-archive (plain or
    /// compressed, recognised by content) and tags them.
    pub fn load_archive(&self, input: impl Read) -> Result<Vec<Loaded>, StoreError> {
        let scratch = Scratch::create(&self.tmp, "load")
            .with_context(|| format!("cannot create a scratch folder in {}", self.tmp.display()))?;
        let archive = Unpacked::read(input, &scratch.path().join("files"))?;
        let candidates = if archive.exists("manifest.json") {
            docker_candidates(&archive)?
        } else if archive.exists("index.json") {
            oci_candidates(&archive)?
        } else {
            fail!(
                "the input is not an image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)"
            );
        };
        if candidates.is_empty() {
            fail!("the archive holds no images");
        }

        let mut staged: HashMap<Digest, (StagedLayer, Option<String>)> = HashMap::new();
        let mut images = Vec::new();
        for candidate in &candidates {
            let config: ImageConfiguration = serde_json::from_slice(&candidate.config)
                .context("an image config in the archive is not valid JSON")?;
            let diff_ids = config
                .rootfs()
                .diff_ids()
                .iter()
                .map(|d| parse_diff_id(d))
                .collect::<Result<Vec<_>, _>>()?;
            if diff_ids.len() != candidate.layers.len() {
                fail!(
                    "the archive lists {} layers for an image whose config lists {}",
                    candidate.layers.len(),
                    diff_ids.len()
                );
            }
            for (source, diff_id) in candidate.layers.iter().zip(&diff_ids) {
                if self.has_layer(diff_id) || staged.contains_key(diff_id) {
                    continue;
                }
                let layer = self.receive_from_archive(&archive, source, diff_id)?;
                staged.insert(diff_id.clone(), (layer, source.media_type.clone()));
            }
            images.push((Digest::of(&candidate.config), diff_ids));
        }
        self.commit_load(&candidates, &images, staged)
    }

    fn receive_from_archive(
        &self,
        archive: &Unpacked,
        source: &Source,
        diff_id: &Digest,
    ) -> Result<StagedLayer, StoreError> {
        let file = archive.open(&source.path)?;
        let layer = self
            .receive(io::BufReader::new(file), source.digest.as_ref())
            .with_context(|| format!("layer {} of the archive", source.path))?;
        if layer.diff_id != *diff_id {
            fail!(
                "layer {} of the archive is corrupt: its tar stream hashes to {}, but the image config's diff_id is {diff_id}",
                source.path,
                layer.diff_id
            );
        }
        Ok(layer)
    }

    /// Makes loaded images visible, as `commit_pull` does for a pull.
    fn commit_load(
        &self,
        candidates: &[Candidate],
        images: &[(Digest, Vec<Digest>)],
        staged: HashMap<Digest, (StagedLayer, Option<String>)>,
    ) -> Result<Vec<Loaded>, StoreError> {
        // One flush covers every staged layer: they share a filesystem.
        if let Some((layer, _)) = staged.values().next() {
            layer.flush()?;
        }
        let _lock = self.lock()?;
        let mut index = self.registry_index()?;
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for (diff_id, (layer, media_type)) in &staged {
            let dir = self.layer_dir(diff_id);
            if !dir.exists() {
                layer::move_into_place(&layer.layer_dir(), &dir)
                    .with_context(|| format!("cannot move the layer into {}", dir.display()))?;
            }
            sizes.insert(diff_id.clone(), layer.unpacked_size);
            // A plain tarball is not worth keeping twice; compressed blobs
            // are, so `push` and `save` reuse them.
            if layer.digest == layer.diff_id {
                continue;
            }
            let blob = self.blob(layer.digest.hex());
            if !blob.exists() {
                fs::rename(layer.blob_path(), &blob)
                    .with_context(|| format!("cannot move the blob into {}", blob.display()))?;
            }
            let media_type = media_type
                .clone()
                .unwrap_or_else(|| compressed_media_type(&blob));
            index
                .layers
                .entry(diff_id.hex().to_string())
                .or_insert_with(|| LayerBlob {
                    digest: layer.digest.to_string(),
                    size: layer.size,
                    media_type,
                    diff_id: diff_id.to_string(),
                    sources: Vec::new(),
                });
        }
        self.save_registry_index(&index)?;
        let mut tags = self.tags()?;
        let mut loaded = Vec::new();
        for (candidate, (id, diff_ids)) in candidates.iter().zip(images) {
            write_new(&self.blob(id.hex()), &candidate.config)?;
            let size = diff_ids
                .iter()
                .map(|d| match sizes.get(d) {
                    Some(s) => *s,
                    None => super::distribution::dir_size(&self.layer_dir(d)).unwrap_or(0),
                })
                .sum();
            let meta = self.meta(id.hex());
            Meta::new(size)
                .save(&meta)
                .with_context(|| format!("cannot write {}", meta.display()))?;
            let mut names = Vec::new();
            for reference in &candidate.tags {
                let key = tag_key(reference)?;
                tags.set(&key, id.hex());
                names.push(key);
            }
            loaded.push(Loaded {
                id: id.hex().to_string(),
                tags: names,
            });
        }
        self.save_tags(&tags)?;
        Ok(loaded)
    }
}

enum Blob<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// The archive's files, on disk, and its links.
struct Unpacked {
    root: PathBuf,
    links: HashMap<String, String>,
}

impl Unpacked {
    /// Writes every regular file of the (possibly compressed) tarball below
    /// `root`; records symlinks and hard links to resolve on open.
    fn read(input: impl Read, root: &Path) -> Result<Unpacked, StoreError> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let stream = layer::decompress(input).context("cannot read the archive")?;
        let mut archive = tar::Archive::new(stream);
        let mut links = HashMap::new();
        let not_tar = "cannot read the archive; is it a docker-archive or oci-archive tarball?";
        for entry in archive.entries().context(not_tar)? {
            let mut entry = entry.context(not_tar)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = format::normalise(&raw).filter(|p| !p.is_empty()) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let resolved = if kind.is_symlink() {
                    format::resolve_link(&path, &target)
                } else {
                    format::normalise(&target)
                };
                if let Some(resolved) = resolved {
                    links.insert(path, resolved);
                }
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let dest = root.join(&path);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                let mut file = File::create(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                io::copy(&mut entry, &mut file).context(not_tar)?;
            }
        }
        Ok(Unpacked {
            root: root.to_path_buf(),
            links,
        })
    }

    /// Follows links (a few hops) to a file's path inside the archive.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut path = format::normalise(path)?;
        for _ in 0..16 {
            if self.root.join(&path).is_file() {
                return Some(path);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }

    fn open(&self, path: &str) -> Result<File, StoreError> {
        let resolved = self
            .resolve(path)
            .ok_or_else(|| anyhow!("the archive has no file {path}"))?;
        Ok(File::open(self.root.join(resolved))
            .with_context(|| format!("cannot open {path} of the archive"))?)
    }

    fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open(path)?
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {path} of the archive"))?;
        Ok(bytes)
    }

    /// A blob of an oci-archive, checked against its digest.
    fn blob(&self, d: &Descriptor) -> Result<Vec<u8>, StoreError> {
        let digest: Digest = d.digest.parse().map_err(|e| anyhow!("{e}"))?;
        let bytes = self.read_file(&format::blob_path(&digest), 16 << 20)?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            fail!("blob {digest} of the archive is corrupt: its sha256 is {actual}");
        }
        Ok(bytes)
    }
}

fn docker_candidates(archive: &Unpacked) -> Result<Vec<Candidate>, StoreError> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&archive.read_file("manifest.json", 16 << 20)?)
            .context("the archive's manifest.json is not valid")?;
    entries
        .into_iter()
        .map(|e| {
            let tags = e
                .repo_tags
                .iter()
                .map(|t| t.parse::<Reference>())
                .collect::<Result<Vec<_>, _>>()
                .context("the archive's manifest.json has an invalid tag")?;
            Ok(Candidate {
                config: archive.read_file(&e.config, 16 << 20)?,
                layers: e
                    .layers
                    .into_iter()
                    .map(|path| Source {
                        path,
                        digest: None,
                        media_type: None,
                    })
                    .collect(),
                tags,
            })
        })
        .collect()
}

fn oci_candidates(archive: &Unpacked) -> Result<Vec<Candidate>, StoreError> {
    let index: OciIndex = serde_json::from_slice(&archive.read_file("index.json", 16 << 20)?)
        .context("the archive's index.json is not valid")?;
    // Entries naming the same manifest are one image with several tags.
    let mut by_manifest: BTreeMap<String, (Descriptor, Vec<Reference>)> = BTreeMap::new();
    let mut order = Vec::new();
    for d in index.manifests {
        let name = format::oci_name(&d.annotations);
        let slot = by_manifest.entry(d.digest.clone()).or_insert_with(|| {
            order.push(d.digest.clone());
            (d, Vec::new())
        });
        slot.1.extend(name);
    }
    let mut out = Vec::new();
    for digest in order {
        let (descriptor, tags) = by_manifest.remove(&digest).unwrap();
        let manifest = platform_manifest(archive, &descriptor)?;
        let config = archive.blob(&manifest.config)?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                let digest: Digest = l.digest.parse().map_err(|e| anyhow!("{e}"))?;
                Ok(Source {
                    path: format::blob_path(&digest),
                    digest: Some(digest),
                    media_type: Some(l.media_type.clone()),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.push(Candidate {
            config,
            layers,
            tags,
        });
    }
    Ok(out)
}

/// The image manifest a descriptor points at, through an index if it points
/// at one (the host's platform, else the first).
fn platform_manifest(archive: &Unpacked, d: &Descriptor) -> Result<OciManifest, StoreError> {
    let bytes = archive.blob(d)?;
    if d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST {
        return Ok(serde_json::from_slice(&bytes)
            .with_context(|| format!("manifest {} of the archive is not valid", d.digest))?);
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(flatten)]
        descriptor: Descriptor,
        platform: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    let index: Index = serde_json::from_slice(&bytes)
        .with_context(|| format!("index {} of the archive is not valid", d.digest))?;
    let arch = super::host_arch().to_string();
    let chosen = index
        .manifests
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p["architecture"] == arch.as_str() && p["os"] == "linux")
        })
        .or(index.manifests.first())
        .ok_or_else(|| anyhow!("index {} of the archive is empty", d.digest))?;
    platform_manifest(archive, &chosen.descriptor)
}

/// The config to save: the stored one, or a copy listing the blobs'
/// diff_ids when packing changed them.
fn with_diff_ids(
    stored: &[u8],
    local: &[Digest],
    blobs: &[LayerBlob],
) -> Result<Vec<u8>, StoreError> {
    if local
        .iter()
        .zip(blobs)
        .all(|(d, b)| d.to_string() == b.diff_id)
    {
        return Ok(stored.to_vec());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(stored).context("cannot parse the image config")?;
    let ids: Vec<serde_json::Value> = blobs.iter().map(|b| b.diff_id.clone().into()).collect();
    value["rootfs"]["diff_ids"] = ids.into();
    Ok(serde_json::to_vec(&value).context("cannot encode the image config")?)
}

/// The media type of a compressed blob, from its magic bytes.
fn compressed_media_type(path: &Path) -> String {
    let mut magic = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match layer::detect(&magic[..n]) {
        layer::Compression::Zstd => LAYER_ZSTD.into(),
        _ => LAYER_GZIP.into(),
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: digest.to_string(),
        size,
        annotations: BTreeMap::new(),
    }
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes(
    tar: &mut tar::Builder<impl Write>,
    name: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut h = header(bytes.len() as u64, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, name, bytes)
        .with_context(|| format!("cannot write {name} to the archive"))?;
    Ok(())
}

fn append_file(
    tar: &mut tar::Builder<impl Write>,
    name: &str,
    path: &Path,
) -> Result<(), StoreError> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let mut h = header(len, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, name, io::BufReader::new(file))
        .with_context(|| format!("cannot write {name} to the archive"))?;
    Ok(())
}

fn append_dir(tar: &mut tar::Builder<impl Write>, name: &str) -> Result<(), StoreError> {
    let mut h = header(0, tar::EntryType::Directory, 0o755);
    tar.append_data(&mut h, name, io::empty())
        .with_context(|| format!("cannot write {name} to the archive"))?;
    Ok(())
}

/// Hashes what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
