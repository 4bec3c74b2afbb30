//! The registries to reach over plain HTTP, from the user's configuration
//! (`insecure_registries` in [`crate::config`]).

/// The `insecure_registries` entries; empty when the file or key is missing.
/// A malformed file is reported once, as a warning: a pull should not fail
/// over a setting it may not need.
pub fn insecure_registries() -> Vec<String> {
    match crate::config::load() {
        Ok(c) => c.insecure_registries,
        Err(e) => {
            eprintln!("burrow: warning: {e:#}");
            Vec::new()
        }
    }
}
