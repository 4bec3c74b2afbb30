//! The registry settings of the user's configuration ([`crate::config`]):
//! `insecure_registries`, `hub_search_url`.

/// The configuration, or the defaults when it is missing. A malformed file
/// is reported as a warning: a pull should not fail over a setting it may
/// not need.
fn load() -> crate::config::Config {
    crate::config::load().unwrap_or_else(|e| {
        eprintln!("burrow: warning: {e:#}");
        crate::config::Config::default()
    })
}

/// The `insecure_registries` entries; empty when the file or key is missing.
pub fn insecure_registries() -> Vec<String> {
    load().insecure_registries
}

/// Where Docker Hub's search API is asked (`hub_search_url`).
pub fn hub_search_url() -> String {
    load()
        .hub_search_url
        .unwrap_or_else(|| "https://index.docker.io/v1/search".into())
}
