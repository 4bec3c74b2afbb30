//! Manifests, indexes and media types as pure data, and platform selection.
//!
//! A registry answers a manifest request with one of four documents: an OCI
//! image manifest or a Docker v2 schema 2 manifest (a config and layers), or an
//! OCI index or a Docker manifest list (one manifest per platform). The two
//! families share one JSON shape, so one set of types reads both; the media
//! type decides which it is and is checked against the lists below, so an
//! unknown kind of layer is refused before anything is downloaded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Everything a manifest request may return, for the `Accept` header.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A pointer to content: what it is, its address and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A platform as indexes list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An OCI index or a Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Why a manifest response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    /// A media type burrow does not read (schema 1, an artifact, a foreign layer).
    Unsupported(String),
    /// The body is not the JSON its media type promises.
    Malformed(String),
}

/// Parses a manifest response. The body's own `mediaType` wins over the
/// `Content-Type` header (some registries send `application/json`).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Document, DocumentError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(e.to_string()))?;
    let header = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let media_type = match (probe.media_type, header) {
        (Some(m), _) => m,
        // An OCI document may omit mediaType; its shape tells.
        (None, _) if probe.schema_version == Some(2) && probe.manifests.is_some() => {
            OCI_INDEX.to_string()
        }
        (None, Some(h)) if h != "application/json" => h,
        (None, _) if probe.schema_version == Some(2) => OCI_MANIFEST.to_string(),
        (None, _) => "unknown (schema 1?)".to_string(),
    };
    let malformed = |e: serde_json::Error| DocumentError::Malformed(e.to_string());
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest = serde_json::from_slice(bytes).map_err(malformed)?;
            check_manifest(&m)?;
            Ok(Document::Manifest(m))
        }
        OCI_INDEX | DOCKER_LIST => Ok(Document::Index(
            serde_json::from_slice(bytes).map_err(malformed)?,
        )),
        other => Err(DocumentError::Unsupported(other.to_string())),
    }
}

/// Refuses configs and layers of a kind burrow cannot unpack.
fn check_manifest(m: &Manifest) -> Result<(), DocumentError> {
    if !matches!(m.config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
        return Err(DocumentError::Unsupported(m.config.media_type.clone()));
    }
    for layer in &m.layers {
        if !is_layer(&layer.media_type) {
            return Err(DocumentError::Unsupported(layer.media_type.clone()));
        }
    }
    Ok(())
}

/// Layer media types burrow unpacks (the store detects the compression itself).
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP
    )
}

/// The platform the user wants: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Wanted {
    /// The host: linux and its CPU in Go's spelling (amd64, arm64...).
    pub fn host() -> Wanted {
        let architecture = crate::store::host_arch().to_string();
        let variant = match architecture.as_str() {
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        Wanted {
            os: "linux".into(),
            architecture,
            variant,
        }
    }

    fn matches(&self, p: &Platform) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        let Some(want) = &self.variant else {
            return true;
        };
        // arm64 images usually omit their only variant, v8.
        match p.variant.as_deref() {
            Some(v) => v == want,
            None => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl FromStr for Wanted {
    type Err = String;

    fn from_str(s: &str) -> Result<Wanted, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad =
            || format!("invalid platform \"{s}\": expected os/arch[/variant], e.g. linux/arm64");
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Wanted {
                os: os.to_string(),
                architecture: normalise_arch(arch),
                variant: None,
            }),
            [os, arch, variant] => Ok(Wanted {
                os: os.to_string(),
                architecture: normalise_arch(arch),
                variant: Some(variant.to_string()),
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Accepts the kernel's names for the common CPUs too.
fn normalise_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string()
}

/// The index entry for `wanted`: the first that matches, as Docker picks.
pub fn select<'a>(index: &'a Index, wanted: &Wanted) -> Option<&'a Descriptor> {
    index
        .manifests
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
}

/// The platforms an index offers, for the "no matching platform" message.
pub fn platforms(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> serde_json::Value {
        let mut p = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": D, "size": 1, "platform": p})
    }

    fn index(entries: Vec<serde_json::Value>) -> Index {
        let doc =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        match parse(doc.to_string().as_bytes(), None).unwrap() {
            Document::Index(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_manifests_by_their_media_type() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": D, "size": 2},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": D, "size": 3}],
        });
        let Document::Manifest(m) = parse(m.to_string().as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(m.layers[0].size, 3);

        // No mediaType in the body: the header decides.
        let bare = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": OCI_CONFIG, "digest": D, "size": 2},
            "layers": [{"mediaType": OCI_LAYER_ZSTD, "digest": D, "size": 3}],
        });
        let parsed = parse(bare.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert!(matches!(parsed, Document::Manifest(_)));
        let parsed = parse(bare.to_string().as_bytes(), Some("application/json")).unwrap();
        assert!(matches!(parsed, Document::Manifest(_)));
    }

    #[test]
    fn refuses_unknown_media_types() {
        let v1 = serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []});
        assert!(matches!(
            parse(
                v1.to_string().as_bytes(),
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Err(DocumentError::Unsupported(_))
        ));
        let foreign = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": D, "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": D, "size": 3}],
        });
        let err = parse(foreign.to_string().as_bytes(), None).unwrap_err();
        assert_eq!(
            err,
            DocumentError::Unsupported(
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into()
            )
        );
        assert!(matches!(
            parse(b"not json", None),
            Err(DocumentError::Malformed(_))
        ));
    }

    #[test]
    fn selects_the_wanted_platform() {
        let i = index(vec![
            entry("linux", "arm", Some("v6")),
            entry("linux", "arm", Some("v7")),
            entry("linux", "arm64", None),
            entry("linux", "amd64", None),
            entry("unknown", "unknown", None),
        ]);
        let pick = |s: &str| {
            let w: Wanted = s.parse().unwrap();
            select(&i, &w).map(|d| d.platform.clone().unwrap())
        };
        assert_eq!(pick("linux/amd64").unwrap().architecture, "amd64");
        assert_eq!(pick("linux/x86_64").unwrap().architecture, "amd64");
        assert_eq!(pick("linux/arm/v7").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick("linux/arm").unwrap().variant.as_deref(), Some("v6"));
        assert_eq!(pick("linux/arm64/v8").unwrap().architecture, "arm64");
        assert!(pick("linux/s390x").is_none());
        assert!(pick("windows/amd64").is_none());
        assert_eq!(
            platforms(&i),
            "linux/arm/v6, linux/arm/v7, linux/arm64, linux/amd64, unknown/unknown"
        );
    }

    #[test]
    fn platform_strings() {
        assert!("linux".parse::<Wanted>().is_err());
        assert!("linux//v7".parse::<Wanted>().is_err());
        assert!("a/b/c/d".parse::<Wanted>().is_err());
        let w: Wanted = "linux/arm/v7".parse().unwrap();
        assert_eq!(w.to_string(), "linux/arm/v7");
        assert_eq!(Wanted::host().os, "linux");
    }
}
