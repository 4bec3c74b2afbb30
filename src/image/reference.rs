//! `Reference`: an image name as Docker normalises it.
//!
//! `busybox` means `docker.io/library/busybox:latest`; `user/app:1` lives on
//! Docker Hub under `user/`; a first component with a `.` or `:` or equal to
//! `localhost` is a registry host (`127.0.0.1:5000/team/app:1.2`). A reference
//! may carry a tag, a `@sha256:` digest, or both; with neither it gets `latest`.
//!
//! The grammar follows the distribution project's reference rules: lowercase
//! path components joined by `.`, `_`, `__` or runs of `-`; tags of at most 128
//! word characters, dots and dashes; names of at most 255 characters.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::digest::{Digest, DigestError, is_sha256_hex};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    #[error("invalid reference format: the image name is empty")]
    Empty,
    #[error("invalid reference \"{0}\": repository name must be lowercase")]
    Uppercase(String),
    #[error(
        "invalid repository name \"{0}\": a 64-character hex string is an image id, not a name"
    )]
    HexName(String),
    #[error("invalid reference \"{input}\": \"{domain}\" is not a valid registry host[:port]")]
    Domain { input: String, domain: String },
    #[error(
        "invalid reference \"{input}\": path component \"{component}\" may use only lowercase letters, digits and the separators . _ __ -"
    )]
    Path { input: String, component: String },
    #[error(
        "invalid reference \"{input}\": tag \"{tag}\" must be 1-128 letters, digits, _ . or -, not starting with . or -"
    )]
    Tag { input: String, tag: String },
    #[error("invalid reference \"{0}\": the repository name is longer than 255 characters")]
    TooLong(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A normalised image reference. Fields are only reachable through accessors,
/// so a `Reference` always satisfies the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Registry host, with port if any: `docker.io`, `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry: `library/busybox`, `team/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag; `None` only when the reference names a digest without a tag.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Repository name as Docker prints it: `busybox`, `user/app`,
    /// `127.0.0.1:5000/team/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The short form with tag and digest: `busybox:latest`, `user/app:1`.
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_name())
    }

    /// A copy of this reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        let input = format!("{}:{tag}", self.name());
        check_tag(&input, tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_sha256_hex(input) {
            return Err(ReferenceError::HexName(input.to_string()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (input, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            check_tag(input, tag)?;
        }
        let (domain, path) = split_domain(name);
        check_domain(input, &domain)?;
        check_path(input, &path)?;
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(input.to_string()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

/// Splits `name:tag`. A `:` before the last `/` belongs to a registry port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// Separates the registry host from the path and applies Docker Hub's
/// defaults: no host means `docker.io`, and a one-component Hub path lives
/// under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        return (domain, format!("{OFFICIAL_NAMESPACE}/{path}"));
    }
    (domain, path)
}

/// Docker's rule: a first component is a host if it has a dot or a port, is
/// `localhost`, or has uppercase letters (which a path never may).
fn looks_like_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag {
            input: input.to_string(),
            tag: tag.to_string(),
        })
    }
}

fn check_domain(input: &str, domain: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Domain {
        input: input.to_string(),
        domain: domain.to_string(),
    };
    let (host, port) = split_port(domain).ok_or_else(bad)?;
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        host.split('.').all(is_host_label)
    };
    if host_ok { Ok(()) } else { Err(bad()) }
}

/// `host[:port]`, where host may be a bracketed IPv6 address.
fn split_port(domain: &str) -> Option<(&str, Option<&str>)> {
    if domain.starts_with('[') {
        let end = domain.find(']')? + 1;
        let port = match &domain[end..] {
            "" => None,
            rest => Some(rest.strip_prefix(':')?),
        };
        return Some((&domain[..end], port));
    }
    Some(match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    })
}

/// A DNS label: alphanumerics, dashes inside only.
fn is_host_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

fn check_path(input: &str, path: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(input.to_string()));
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(ReferenceError::Path {
                input: input.to_string(),
                component: component.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by exactly one separator: `.`, `_`, `__` or `-+`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn official_image_gets_library_and_latest() {
        let r = parse("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(
            parse("docker.io/library/busybox:1.36").familiar(),
            "busybox:1.36"
        );
        assert_eq!(
            parse("index.docker.io/busybox").familiar(),
            "busybox:latest"
        );
    }

    #[test]
    fn user_repositories_stay_on_docker_hub() {
        let r = parse("user/app:1");
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "user/app");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.familiar(), "user/app:1");
        assert_eq!(
            parse("docker.io/library/a/b").familiar(),
            "library/a/b:latest"
        );
    }

    #[test]
    fn registry_with_port_is_kept_in_full() {
        let r = parse("127.0.0.1:5000/team/app:1.2");
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("1.2"));
        assert_eq!(r.familiar(), "127.0.0.1:5000/team/app:1.2");
        assert_eq!(parse("localhost/app").familiar(), "localhost/app:latest");
        assert_eq!(parse("localhost:5000/app").tag(), Some("latest"));
        assert_eq!(parse("[::1]:5000/app:x").domain(), "[::1]:5000");
    }

    #[test]
    fn digests_with_and_without_tags() {
        let r = parse(&format!("busybox@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.familiar(), format!("busybox@sha256:{HEX}"));
        let both = parse(&format!("quay.io/a/b:v1@sha256:{HEX}"));
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(both.to_string(), format!("quay.io/a/b:v1@sha256:{HEX}"));
    }

    #[test]
    fn separators_in_paths() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "my-app.v2_x"] {
            parse(ok);
        }
        for bad in ["a..b", "a___b", "-a", "a-", "a/", "/a", "a//b", "a_.b"] {
            assert!(
                bad.parse::<Reference>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert!(matches!(
            "Busybox".parse::<Reference>(),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            "user/App".parse::<Reference>(),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            HEX.parse::<Reference>(),
            Err(ReferenceError::HexName(_))
        ));
        assert!(matches!(
            "a:b:c".parse::<Reference>(),
            Err(ReferenceError::Path { .. })
        ));
        assert!(matches!(
            "a:.x".parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            "a:".parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            "a@sha256:12".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            "host:x/app".parse::<Reference>(),
            Err(ReferenceError::Domain { .. })
        ));
        assert!(matches!(
            "-h.io/app".parse::<Reference>(),
            Err(ReferenceError::Domain { .. })
        ));
        let long = format!("a/{}", "b".repeat(260));
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::TooLong(_))
        ));
        let tag = "t".repeat(129);
        assert!(matches!(
            format!("a:{tag}").parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
    }

    #[test]
    fn with_tag_replaces_tag_and_drops_digest() {
        let r = parse(&format!("busybox@sha256:{HEX}"))
            .with_tag("1")
            .unwrap();
        assert_eq!(r.familiar(), "busybox:1");
        assert!(parse("busybox").with_tag("-bad").is_err());
    }
}
