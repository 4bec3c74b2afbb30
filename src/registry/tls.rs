//! How a registry is reached: HTTPS verified against the system's CA store,
//! or, for registries the user calls insecure (and loopback ones, as Docker
//! does), HTTPS without verification when the server speaks TLS and plain
//! HTTP when it does not.
//!
//! Trusted roots are the distribution's bundle (or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`, read as OpenSSL and Go read them), plus per-registry CA
//! files in `~/.config/burrow/certs.d/HOST[:PORT]/*.crt`, the rootless
//! counterpart of Docker's `/etc/docker/certs.d`: a user without root can
//! trust a company registry's CA without touching the system. When no bundle
//! is found the Mozilla roots built into burrow are used.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The bundles distributions keep, most common first.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL 7+
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, macOS-like layouts
];

/// What the user asked for, per registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// HTTPS only, the certificate checked.
    Verified,
    /// HTTPS without checking the certificate, else plain HTTP.
    Insecure,
}

impl Security {
    /// `--tls-verify` wins; then an `insecure_registries` entry; then the
    /// host: loopback registries are insecure by default, as in Docker.
    pub fn choose(tls_verify: Option<bool>, listed_insecure: bool, loopback: bool) -> Security {
        match tls_verify {
            Some(true) => Security::Verified,
            Some(false) => Security::Insecure,
            None if listed_insecure || loopback => Security::Insecure,
            None => Security::Verified,
        }
    }
}

/// The TLS settings for a client of `registry`.
pub fn config(registry: &str, security: Security) -> TlsConfig {
    let builder = TlsConfig::builder();
    match security {
        Security::Insecure => builder.disable_verification(true).build(),
        Security::Verified => builder.root_certs(roots_for(registry)).build(),
    }
}

/// The system roots plus the registry's own CA files, if it has any.
fn roots_for(registry: &str) -> RootCerts {
    let extra = crate::config::dir()
        .map(|d| read_dir_certs(&d.join("certs.d").join(registry)))
        .unwrap_or_default();
    match (system_roots(), extra.is_empty()) {
        (None, true) => RootCerts::WebPki,
        (Some(system), true) => RootCerts::Specific(system.clone()),
        (system, false) => {
            let mut all = system.map(|s| s.to_vec()).unwrap_or_default();
            all.extend(extra);
            RootCerts::Specific(Arc::new(all))
        }
    }
}

/// The system's roots, read once per process; `None` when no bundle exists.
fn system_roots() -> Option<&'static Arc<Vec<Certificate<'static>>>> {
    static ROOTS: OnceLock<Option<Arc<Vec<Certificate<'static>>>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let certs = load_system_roots();
            (!certs.is_empty()).then(|| Arc::new(certs))
        })
        .as_ref()
}

fn load_system_roots() -> Vec<Certificate<'static>> {
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dir = std::env::var_os("SSL_CERT_DIR").map(PathBuf::from);
    if file.is_some() || dir.is_some() {
        // Set by the user: exactly what they name, as OpenSSL does.
        let mut certs = file.map(|f| read_pem_file(&f)).unwrap_or_default();
        if let Some(d) = dir {
            certs.extend(read_dir_certs(&d));
        }
        return certs;
    }
    SYSTEM_BUNDLES
        .iter()
        .map(|b| read_pem_file(Path::new(b)))
        .find(|c| !c.is_empty())
        .unwrap_or_default()
}

/// Every certificate in the `.crt`/`.pem` files of `dir` (and the hashed
/// `NNNNNNNN.0` links OpenSSL's layout uses).
fn read_dir_certs(dir: &Path) -> Vec<Certificate<'static>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".crt") || name.ends_with(".pem") || is_hashed_name(name)
        })
        .collect();
    paths.sort();
    paths.iter().flat_map(|p| read_pem_file(p)).collect()
}

fn is_hashed_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(hash, n)| {
        hash.len() == 8
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The certificates in a PEM file; unreadable files and other PEM items
/// (keys, CRLs) count for nothing.
fn read_pem_file(path: &Path) -> Vec<Certificate<'static>> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    ureq::tls::parse_pem(&bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// Whether a transport error is the TLS layer failing (a bad or untrusted
/// certificate, or a server that does not speak TLS), as opposed to the
/// connection itself.
pub fn is_tls_failure(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// What to do about a TLS failure: a server that answered in plain HTTP
/// needs the registry marked insecure; an untrusted certificate needs its CA.
pub fn hint(registry: &str, e: &ureq::Error) -> String {
    let text = e.to_string();
    let insecure = format!(
        "--tls-verify=false, or \"{registry}\" in insecure_registries in ~/.config/burrow/config.toml"
    );
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("it does not speak TLS; to use plain HTTP: {insecure}")
    } else {
        format!(
            "if it uses a private CA, put the CA certificate in \
             ~/.config/burrow/certs.d/{registry}/ca.crt (or the system's CA store); \
             to skip verification: {insecure}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_list_then_loopback() {
        use Security::*;
        assert_eq!(Security::choose(Some(true), true, true), Verified);
        assert_eq!(Security::choose(Some(false), false, false), Insecure);
        assert_eq!(Security::choose(None, true, false), Insecure);
        assert_eq!(Security::choose(None, false, true), Insecure);
        assert_eq!(Security::choose(None, false, false), Verified);
    }

    #[test]
    fn openssl_hashed_names_are_recognised() {
        assert!(is_hashed_name("5ad8a5d6.0"));
        assert!(is_hashed_name("5ad8a5d6.12"));
        assert!(!is_hashed_name("README"));
        assert!(!is_hashed_name("ca.key"));
        assert!(!is_hashed_name("5ad8a5d6.r0"));
    }

    #[test]
    fn pem_files_give_their_certificates_only() {
        let dir = std::env::temp_dir().join(format!("burrow-tls-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.crt");
        // Not a real certificate: parsing PEM does not look inside the DER.
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        fs::write(&file, pem).unwrap();
        fs::write(dir.join("notes.txt"), pem).unwrap();
        assert_eq!(read_pem_file(&file).len(), 1);
        assert_eq!(read_dir_certs(&dir).len(), 1, "only .crt/.pem/hashed files");
        assert!(read_pem_file(&dir.join("missing.crt")).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
