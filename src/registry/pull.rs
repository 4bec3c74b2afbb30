//! `pull`: a reference in, an image in the store out.
//!
//! The recipe: resolve the reference to a manifest (through an index when
//! the registry serves one, picking the wanted platform); fetch and check
//! the config; download the layers the store lacks, a few at a time, each
//! claimed first (so a concurrent pull of the same layer waits for this one
//! and then uses it), unpacked while it streams in, checked against its blob
//! digest and its diff_id, and committed on its own; then commit the image.
//! A failure drops the scratch folders; layers finished before it stay, and
//! are what the next pull of the image needs anyway. A pull killed midway
//! leaves only scratch that the next `Store::open` removes, and finished
//! layers.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use oci_spec::image::ImageConfiguration;

use super::RegistryError;
use super::client::{Client, Transport};
use super::manifest::{self, Descriptor, Document, DocumentError, Manifest, Wanted};
use super::progress::Progress;
use super::retry::{self, Resuming};
use crate::image::{Digest, Reference};
use crate::paths::Dirs;
use crate::store::{BlobMismatch, Image, LayerBlob, PullCommit, PulledLayer, Store, StoreError};

/// Layers downloaded at once, as Docker's default `max-concurrent-downloads` is 3.
const PARALLEL_DOWNLOADS: usize = 3;

/// Where progress lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Nothing.
    Quiet,
    /// `pull` prints to stdout, like `docker pull`.
    #[default]
    Stdout,
    /// `run` pulls on stderr, so the container's output stays clean.
    Stderr,
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--platform`; the host's when `None`.
    pub platform: Option<Wanted>,
    pub transport: Transport,
    pub output: Output,
}

/// Pulls `reference` into the store under `dirs` and returns the image.
pub fn pull(dirs: &Dirs, reference: &str, opts: &PullOptions) -> Result<Image> {
    let reference: Reference = reference.parse()?;
    let store = Store::open(dirs)?;
    let client = Client::new(reference.domain(), &opts.transport)?;
    let out = Progress::new(opts.output);
    let what = reference.to_string();
    let repo = reference.path();
    let wanted = opts.platform.clone().unwrap_or_else(Wanted::host);

    let tag_or_digest = match (reference.tag(), reference.digest()) {
        (_, Some(d)) => d.to_string(),
        (Some(t), None) => t.to_string(),
        (None, None) => unreachable!("a reference has a tag or a digest"),
    };
    out.line(&format!(
        "{}: Pulling from {}",
        reference.tag().unwrap_or(&tag_or_digest),
        repo
    ));
    let (bytes, content_type, repo_digest) = client.manifest(repo, &tag_or_digest, &what)?;
    if let Some(expected) = reference.digest() {
        check_digest(&what, "the manifest", expected, &repo_digest)?;
    }
    let mut documents = vec![(repo_digest.clone(), bytes.clone())];
    let (manifest, manifest_digest) = match parse(&what, &bytes, content_type.as_deref())? {
        Document::Manifest(m) => (m, repo_digest.clone()),
        Document::Index(index) => {
            let entry = manifest::select(&index, &wanted).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: what.clone(),
                    wanted: wanted.to_string(),
                    available: manifest::platforms(&index),
                }
            })?;
            let expected = parse_digest(&what, &entry.digest)?;
            let (bytes, content_type, digest) = client.manifest(repo, &entry.digest, &what)?;
            check_digest(&what, "the platform manifest", &expected, &digest)?;
            documents.push((digest.clone(), bytes.clone()));
            match parse(&what, &bytes, content_type.as_deref())? {
                Document::Manifest(m) => (m, digest),
                Document::Index(_) => {
                    return Err(RegistryError::Malformed {
                        reference: what,
                        detail: "an index points at another index".into(),
                    }
                    .into());
                }
            }
        }
    };

    let config_bytes = fetch_config(&client, repo, &manifest, &what)?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("{what}: the image config is not valid JSON"))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| parse_digest(&what, d))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Malformed {
            reference: what,
            detail: format!(
                "the manifest lists {} layers but the config {}",
                manifest.layers.len(),
                diff_ids.len()
            ),
        }
        .into());
    }

    let mut jobs = Vec::new();
    let mut queued = HashSet::new();
    for (i, (layer, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
        if store.has_layer(diff_id) {
            out.layer(short(&layer.digest), "Already exists", layer.size, false);
        } else if queued.insert(diff_id.clone()) {
            let row = out.layer(short(&layer.digest), "Pulling fs layer", layer.size, true);
            jobs.push(Job {
                index: i,
                row,
                layer: layer.clone(),
                diff_id: diff_id.clone(),
            });
        }
    }
    let source = reference.name();
    let fetched = download_all(&store, &client, repo, &what, &source, jobs, &out);
    out.finish();
    let mut fetched = fetched?;

    let layers = manifest
        .layers
        .iter()
        .zip(&diff_ids)
        .enumerate()
        .map(|(i, (layer, diff_id))| PulledLayer {
            diff_id: diff_id.clone(),
            blob: layer_blob(layer, diff_id),
            unpacked_size: fetched.remove(&i).flatten(),
        })
        .collect();
    let committed = store.commit_pull(PullCommit {
        reference: &reference,
        repo_digest: &repo_digest,
        documents,
        manifest: manifest_digest,
        config: &config_bytes,
        layers,
    })?;
    out.line(&format!("Digest: {repo_digest}"));
    let status = if committed.changed {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    out.line(&format!("Status: {status} {}", reference.familiar()));
    Ok(committed.image)
}

fn parse(what: &str, bytes: &[u8], content_type: Option<&str>) -> Result<Document, RegistryError> {
    manifest::parse(bytes, content_type).map_err(|e| match e {
        DocumentError::Unsupported(media_type) => RegistryError::UnsupportedMediaType {
            reference: what.into(),
            media_type,
        },
        DocumentError::Malformed(detail) => RegistryError::Malformed {
            reference: what.into(),
            detail: format!("the manifest is not valid: {detail}"),
        },
    })
}

fn parse_digest(what: &str, s: &str) -> Result<Digest, RegistryError> {
    s.parse().map_err(|e| RegistryError::Malformed {
        reference: what.into(),
        detail: format!("{e}"),
    })
}

fn check_digest(
    what: &str,
    part: &str,
    expected: &Digest,
    actual: &Digest,
) -> Result<(), RegistryError> {
    if expected == actual {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        reference: what.into(),
        what: part.into(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// The config blob, checked against its digest.
fn fetch_config(client: &Client, repo: &str, manifest: &Manifest, what: &str) -> Result<Vec<u8>> {
    let expected = parse_digest(what, &manifest.config.digest)?;
    let mut bytes = Vec::new();
    client
        .blob(repo, &manifest.config.digest, what)?
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transfer {
            reference: what.into(),
            cause: e.to_string(),
        })?;
    check_digest(what, "the image config", &expected, &Digest::of(&bytes))?;
    Ok(bytes)
}

/// What the store records about a layer's blob.
fn layer_blob(layer: &Descriptor, diff_id: &Digest) -> LayerBlob {
    LayerBlob {
        digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.clone(),
        diff_id: diff_id.to_string(),
        sources: Vec::new(),
    }
}

/// One layer to download: its place in the manifest and on screen.
struct Job {
    index: usize,
    row: usize,
    layer: Descriptor,
    diff_id: Digest,
}

/// Downloads, unpacks and commits `jobs` with a few threads; stops handing
/// out new ones after the first failure, which it returns. Maps each job's
/// index to the unpacked size, or `None` when another pull fetched the layer
/// meanwhile.
fn download_all(
    store: &Store,
    client: &Client,
    repo: &str,
    what: &str,
    source: &str,
    mut jobs: Vec<Job>,
    out: &Progress,
) -> Result<HashMap<usize, Option<u64>>> {
    let workers = jobs.len().min(PARALLEL_DOWNLOADS);
    // Largest first: the biggest layer is the longest chain of work (its
    // tar stream is hashed on one core), so it must not start behind the
    // small ones when there are more layers than workers.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.layer.size));
    let queue = Mutex::new(jobs.into_iter());
    let failed = AtomicBool::new(false);
    let done = Mutex::new(HashMap::new());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = queue.lock().unwrap().next() else {
                        break;
                    };
                    match fetch_layer(store, client, repo, what, source, &job, out) {
                        Ok(size) => {
                            let state = match size {
                                Some(_) => "Pull complete",
                                None => "Already exists",
                            };
                            out.state(job.row, state);
                            done.lock().unwrap().insert(job.index, size);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            errors.lock().unwrap().push(e);
                        }
                    }
                }
            });
        }
    });
    match errors.into_inner().unwrap().into_iter().next() {
        Some(e) => Err(e),
        None => Ok(done.into_inner().unwrap()),
    }
}

/// One layer: claimed, streamed from the registry straight into the
/// unpacker (resumed where it stopped after a transient failure), checked
/// and committed. `None` when another pull held the claim and fetched it.
fn fetch_layer(
    store: &Store,
    client: &Client,
    repo: &str,
    what: &str,
    source: &str,
    job: &Job,
    out: &Progress,
) -> Result<Option<u64>> {
    let layer = &job.layer;
    let expected = parse_digest(what, &layer.digest)?;
    let waiting = || out.state(job.row, "Waiting for another pull of this layer");
    let Some(claim) = store.claim_layer(&job.diff_id, waiting)? else {
        return Ok(None);
    };
    let stream = Resuming::open(
        layer.size,
        |offset| client.blob_from(repo, &layer.digest, what, offset),
        |n| out.advance(job.row, n),
        |attempt| out.state(job.row, &format!("Retrying ({attempt}/{})", retry::RETRIES)),
        std::thread::sleep,
    )?;
    let staged = store
        .receive_layer(stream, &expected)
        .map_err(|e| match e {
            StoreError::Other(e) if e.is::<BlobMismatch>() => {
                let m = e.downcast_ref::<BlobMismatch>().unwrap();
                anyhow::Error::new(RegistryError::DigestMismatch {
                    reference: what.into(),
                    what: format!("layer {}", short(&layer.digest)),
                    expected: m.expected.to_string(),
                    actual: m.actual.to_string(),
                })
            }
            other => {
                anyhow::Error::new(other).context(format!("{what}: layer {}", short(&layer.digest)))
            }
        })?;
    check_digest(
        what,
        &format!("the uncompressed layer {}", short(&layer.digest)),
        &job.diff_id,
        &staged.diff_id,
    )?;
    let size = store.commit_layer(staged, &layer_blob(layer, &job.diff_id), source)?;
    drop(claim);
    Ok(Some(size))
}

/// `sha256:abcdef...` → `abcdef012345`, as Docker names layers in progress lines.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}
