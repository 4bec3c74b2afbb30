//! `push`: an image in the store out to a registry.
//!
//! The recipe: find each layer's compressed blob (the one it was pulled as,
//! or a deterministic gzip of its folder made now and kept, so the next push
//! reuses it); for each blob, skip it when the repository has it (`HEAD`),
//! else try a cross-repository mount from a repository of the same registry
//! known to hold it, else upload it whole (`POST` then `PUT`); then the
//! config, then the manifest under the tag.
//!
//! A packed layer's tar stream is not byte-for-byte the tarball the layer
//! was imported from, so its digest (the diff_id the config must list) may
//! differ; the pushed config then lists the new diff_ids, and the image on
//! the registry has another id than the local one, as with `docker push` of
//! an imported image after a `docker load` with a different tar layout.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::client::{Body, Client, Transport};
use super::manifest::{self, Document, Manifest};
use super::pull::Output;
use crate::image::{Digest, Reference};
use crate::paths::Dirs;
use crate::store::{LayerBlob, Store};

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub transport: Transport,
    pub output: Output,
}

/// Pushes the image `reference` names to its registry; returns the manifest digest.
pub fn push(dirs: &Dirs, reference: &str, opts: &PushOptions) -> Result<Digest> {
    let parsed: Reference = reference.parse()?;
    let Some(tag) = parsed.tag().map(str::to_string) else {
        return Err(anyhow!(
            "cannot push \"{reference}\": push a tag (NAME:TAG), not a digest"
        ));
    };
    let say = |line: String| {
        if opts.output != Output::Quiet {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    };
    let store = Store::open(dirs)?;
    let image = store.resolve(&parsed.familiar())?;
    let client = Client::new(parsed.domain(), &opts.transport)?;
    let what = parsed.to_string();
    let repo = parsed.path();
    say(format!("The push refers to repository [{}]", parsed.name()));

    let diff_ids = image
        .config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>())
        .collect::<Result<Vec<_>, _>>()
        .context("the image config lists an invalid diff_id")?;
    let blobs = diff_ids
        .iter()
        .map(|d| store.layer_blob(d).map_err(anyhow::Error::from))
        .collect::<Result<Vec<LayerBlob>>>()?;
    let config = pushed_config(&store.config_bytes(&image.id)?, &diff_ids, &blobs)?;
    let config_digest = Digest::of(&config);

    for blob in &blobs {
        let digest: Digest = blob.digest.parse()?;
        let path = store
            .blob_file(&digest)
            .ok_or_else(|| anyhow!("the store lost layer blob {digest}"))?;
        let status = upload(&client, repo, &digest, &path, &blob.sources, &what)?;
        say(format!("{}: {status}", &digest.hex()[..12]));
    }
    let config_path = store
        .blob_file(&config_digest)
        .filter(|_| config_digest.hex() == image.id);
    match config_path {
        Some(path) => {
            upload(&client, repo, &config_digest, &path, &[], &what)?;
        }
        None => upload_bytes(&client, repo, &config_digest, &config, &what)?,
    }

    let (media_type, bytes) = match reusable_manifest(&store, &image.id, &config_digest, &blobs)? {
        Some(found) => found,
        None => new_manifest(&config_digest, config.len() as u64, &blobs)?,
    };
    client.put_manifest(repo, &tag, &media_type, &bytes, &what)?;
    let digest = Digest::of(&bytes);
    store.record_push(&parsed, &image.id, &digest, &diff_ids)?;
    say(format!("{tag}: digest: {digest} size: {}", bytes.len()));
    Ok(digest)
}

/// The config to push: the stored one, or a copy listing the packed layers'
/// diff_ids when they differ from the local ones.
fn pushed_config(stored: &[u8], local: &[Digest], blobs: &[LayerBlob]) -> Result<Vec<u8>> {
    let same = local
        .iter()
        .zip(blobs)
        .all(|(d, b)| d.to_string() == b.diff_id);
    if same {
        return Ok(stored.to_vec());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(stored).context("cannot parse the image config")?;
    let ids: Vec<serde_json::Value> = blobs.iter().map(|b| b.diff_id.clone().into()).collect();
    value["rootfs"]["diff_ids"] = ids.into();
    serde_json::to_vec(&value).context("cannot encode the image config")
}

/// The manifest the image was pulled with, when it still describes exactly
/// what is pushed (same config, same blobs): the pushed digest then equals
/// the pulled one.
fn reusable_manifest(
    store: &Store,
    id: &str,
    config: &Digest,
    blobs: &[LayerBlob],
) -> Result<Option<(String, Vec<u8>)>> {
    let Some(bytes) = store.pulled_manifest(id)? else {
        return Ok(None);
    };
    let Ok(Document::Manifest(m)) = manifest::parse(&bytes, None) else {
        return Ok(None);
    };
    let same = m.config.digest == config.to_string()
        && m.layers.len() == blobs.len()
        && m.layers
            .iter()
            .zip(blobs)
            .all(|(l, b)| l.digest == b.digest);
    let media_type = m
        .media_type
        .clone()
        .unwrap_or_else(|| manifest::OCI_MANIFEST.into());
    Ok(same.then_some((media_type, bytes)))
}

/// A fresh OCI manifest for the config and blobs.
fn new_manifest(
    config: &Digest,
    config_size: u64,
    blobs: &[LayerBlob],
) -> Result<(String, Vec<u8>)> {
    let m = Manifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.into()),
        config: manifest::Descriptor {
            media_type: manifest::OCI_CONFIG.into(),
            digest: config.to_string(),
            size: config_size,
            platform: None,
        },
        layers: blobs
            .iter()
            .map(|b| manifest::Descriptor {
                media_type: b.media_type.clone(),
                digest: b.digest.clone(),
                size: b.size,
                platform: None,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&m).context("cannot encode the manifest")?;
    Ok((manifest::OCI_MANIFEST.into(), bytes))
}

/// Gets one blob into `repo`: already there, mounted, or uploaded. Returns
/// the progress word Docker prints.
fn upload(
    client: &Client,
    repo: &str,
    digest: &Digest,
    path: &Path,
    sources: &[String],
    what: &str,
) -> Result<String> {
    if client.has_blob(repo, digest, what)? {
        return Ok("Layer already exists".into());
    }
    let prefix = format!("{}/", client.registry());
    let mut location = None;
    for from in sources.iter().filter_map(|s| s.strip_prefix(&prefix)) {
        if from == repo {
            continue;
        }
        match client.mount(repo, digest, from, what)? {
            None => return Ok(format!("Mounted from {from}")),
            // The registry opened an upload instead; use it.
            Some(loc) => {
                location = Some(loc);
                break;
            }
        }
    }
    let location = match location {
        Some(l) => l,
        None => client.start_upload(repo, what)?,
    };
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    client.finish_upload(repo, &location, digest, Body::File(&file), what)?;
    Ok("Pushed".into())
}

/// Uploads a small blob held in memory (a rewritten config).
fn upload_bytes(
    client: &Client,
    repo: &str,
    digest: &Digest,
    bytes: &[u8],
    what: &str,
) -> Result<()> {
    if client.has_blob(repo, digest, what)? {
        return Ok(());
    }
    let location = client.start_upload(repo, what)?;
    client.finish_upload(repo, &location, digest, Body::Bytes(bytes), what)?;
    Ok(())
}
