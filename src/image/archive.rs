//! Image archives as pure data: the two tarball layouts `save` writes and
//! `load` reads.
//!
//! - **docker-archive** (`docker save`, `podman save`): a `manifest.json`
//!   listing, per image, its config file (`<hex>.json`), its tags
//!   (`RepoTags`, familiar forms) and its layer files, bottom first. Layer
//!   files are plain tarballs whose sha256 is the config's diff_id; older
//!   Docker writes them as `<id>/layer.tar`, sometimes as symlinks to one
//!   another, newer Docker as `blobs/sha256/<hex>`, skopeo as `<hex>.tar`.
//! - **oci-archive** (`skopeo copy ... oci-archive:`, `podman save --format
//!   oci-archive`): an OCI image layout in a tarball: `oci-layout`,
//!   `index.json` pointing at manifests (names in annotations), and every
//!   blob under `blobs/sha256/`, each checked against its digest.
//!
//! This module only names and parses; reading and writing the tarballs is
//! `store::archive`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Digest, Reference};

/// The OCI annotation naming an image in an index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker put the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Which layout an archive has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Docker,
    Oci,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "docker-archive" | "docker" => Ok(Format::Docker),
            "oci-archive" | "oci" => Ok(Format::Oci),
            other => Err(format!(
                "unknown archive format \"{other}\"; use docker-archive or oci-archive"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Docker => "docker-archive",
            Format::Oci => "oci-archive",
        })
    }
}

/// One image of a docker-archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    /// Path of the config inside the archive.
    pub config: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer tarballs, bottom first.
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// An OCI descriptor, with the fields archives use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `index.json`, or an image index blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An OCI (or Docker v2 schema 2) image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The archive path of a blob: `blobs/sha256/<hex>`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The name an index entry gives its image, if it gives a full one.
///
/// `io.containerd.image.name` holds a full reference. `ref.name` holds
/// whatever the writer chose: a full reference (podman, burrow) or only a
/// tag (`skopeo copy ... oci:DIR:latest`, Docker); a bare tag names no
/// repository, so the image is loaded untagged, as Docker does.
pub fn oci_name(annotations: &BTreeMap<String, String>) -> Option<Reference> {
    if let Some(r) = annotations
        .get(CONTAINERD_NAME)
        .and_then(|n| n.parse::<Reference>().ok())
    {
        return Some(r);
    }
    let name = annotations.get(REF_NAME)?;
    if !name.contains(['/', ':']) {
        return None;
    }
    name.parse().ok()
}

/// Resolves `target`, a path inside the archive possibly relative to the
/// folder of `link` (a symlink entry), to a normalised archive path; `None`
/// when it climbs out of the archive.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link.split('/').filter(|p| !p.is_empty()).collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// An archive path, normalised: no leading `./` or `/`, no empty parts.
/// `None` when it climbs out.
pub fn normalise(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("docker-archive".parse(), Ok(Format::Docker));
        assert_eq!("oci-archive".parse(), Ok(Format::Oci));
        assert!("tar".parse::<Format>().is_err());
        assert_eq!(Format::Oci.to_string(), "oci-archive");
    }

    #[test]
    fn docker_manifest_reads_docker_and_podman_output() {
        let text = r#"[{"Config":"abc.json","RepoTags":null,"Layers":["x/layer.tar"]},
                       {"Config":"def.json","RepoTags":["busybox:latest"],"Layers":[]}]"#;
        let entries: Vec<DockerEntry> = serde_json::from_str(text).unwrap();
        assert!(entries[0].repo_tags.is_empty());
        assert_eq!(entries[1].repo_tags, ["busybox:latest"]);
        let back = serde_json::to_string(&entries[1]).unwrap();
        assert_eq!(
            back,
            r#"{"Config":"def.json","RepoTags":["busybox:latest"],"Layers":[]}"#
        );
    }

    #[test]
    fn names_come_from_full_references_only() {
        let ann = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            oci_name(&ann(REF_NAME, "docker.io/library/busybox:1")).map(|r| r.familiar()),
            Some("busybox:1".into())
        );
        assert_eq!(
            oci_name(&ann(REF_NAME, "busybox:latest")).map(|r| r.familiar()),
            Some("busybox:latest".into())
        );
        assert_eq!(oci_name(&ann(REF_NAME, "latest")), None);
        assert_eq!(
            oci_name(&ann(CONTAINERD_NAME, "127.0.0.1:5000/a/b:2")).map(|r| r.familiar()),
            Some("127.0.0.1:5000/a/b:2".into())
        );
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        assert_eq!(
            resolve_link("abc/layer.tar", "../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_link("abc/layer.tar", "../../x"), None);
        assert_eq!(
            resolve_link("a", "/blobs/sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalise("./blobs//x").as_deref(), Some("blobs/x"));
        assert_eq!(normalise("../x"), None);
    }
}
