//! The distribution client: pull, push, login and search against OCI registries.
//!
//! Layers of this module, from the wire up:
//! - [`client`] speaks HTTP to one registry: the `/v2/` ping, the
//!   authentication dance ([`auth`]: anonymous, Basic, Bearer tokens per scope),
//!   manifests, streamed blobs, uploads, the catalog;
//! - [`manifest`] is pure data: the four manifest media types, layer media
//!   types, platform selection in an index;
//! - [`pull`] and [`push`] are linear recipes over a client and the
//!   [`crate::store::Store`]; [`search`] lists repositories;
//! - [`retry`] retries and resumes blob downloads, [`progress`] shows them.
//!
//! Every failure is a [`RegistryError`] that names the reference and the
//! cause. Nothing a pull writes is visible before the whole image is in the
//! store (see `store::distribution`).

mod auth;
mod client;
mod config;
pub mod manifest;
mod progress;
mod pull;
mod push;
mod retry;
mod search;
mod tls;

use thiserror::Error;

pub use auth::Credentials;
pub use client::{Client, Transport, is_loopback};
pub use manifest::Wanted;
pub use pull::{Output, PullOptions, pull};
pub use push::{PushOptions, push};
pub use search::{SearchResult, search};

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("manifest for {reference} not found: manifest unknown")]
    ManifestUnknown { reference: String },
    #[error("{reference}: blob {digest} unknown to the registry")]
    BlobUnknown { reference: String, digest: String },
    #[error("{reference}: unauthorized: {detail}; log in with: burrow login {registry}")]
    Unauthorized {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("{reference}: access denied: {detail}")]
    Denied { reference: String, detail: String },
    #[error("cannot reach registry {registry}: {cause}")]
    Unreachable { registry: String, cause: String },
    #[error("TLS with registry {registry} failed: {cause}; {hint}")]
    Tls {
        registry: String,
        cause: String,
        hint: String,
    },
    #[error("{reference}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: unsupported media type \"{media_type}\"")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error(
        "{reference}: no image for platform {wanted} (the registry has: {available}); choose one with --platform"
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{reference}: the registry answered HTTP {status}: {detail}")]
    Status {
        reference: String,
        status: u16,
        detail: String,
    },
    #[error("{reference}: invalid answer from the registry: {detail}")]
    Malformed { reference: String, detail: String },
    #[error("{reference}: transfer failed: {cause}")]
    Transfer { reference: String, cause: String },
    #[error("cannot read the credentials for {registry}: {cause}")]
    Credentials { registry: String, cause: String },
}

/// Records credentials after checking them against the registry's `/v2/`.
pub fn login(
    registry: &str,
    creds: Credentials,
    transport: &Transport,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    Client::with_credentials(registry, transport, Some(creds.clone())).login()?;
    auth::store(registry, &creds).context("cannot save the credentials")
}

/// Forgets a registry's credentials; false when there were none.
pub fn logout(registry: &str) -> anyhow::Result<bool> {
    use anyhow::Context;
    auth::remove(registry).context("cannot update the credentials file")
}
