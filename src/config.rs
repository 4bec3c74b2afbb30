//! The user's settings: `$XDG_CONFIG_HOME/burrow/config.toml` (default
//! `~/.config/burrow/config.toml`). Every key is optional:
//!
//! ```toml
//! # overlay, fuse or vfs; the --storage-driver flag and
//! # BURROW_STORAGE_DRIVER take precedence
//! storage_driver = "fuse"
//! # registries reached over plain HTTP (loopback ones always are)
//! insecure_registries = ["registry.lan:5000"]
//! # where `search TERM` asks for Docker Hub's results (a mirror of Hub's
//! # v1 search API; default https://index.docker.io/v1/search)
//! hub_search_url = "https://hub-mirror.lan/v1/search"
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub storage_driver: Option<String>,
    pub insecure_registries: Vec<String>,
    pub hub_search_url: Option<String>,
}

/// burrow's configuration folder, if `XDG_CONFIG_HOME` or `HOME` names one.
pub fn dir() -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    env("XDG_CONFIG_HOME")
        .map(|d| d.join("burrow"))
        .or_else(|| env("HOME").map(|h| h.join(".config/burrow")))
}

/// Reads the configuration; a missing file is the defaults, a malformed one
/// an error that names the file and the problem.
pub fn load() -> Result<Config> {
    let Some(path) = dir().map(|d| d.join("config.toml")) else {
        return Ok(Config::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            parse(&text).with_context(|| format!("invalid configuration in {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Parses the file; errors are one line naming the line number.
fn parse(text: &str) -> Result<Config> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(n) => anyhow::anyhow!("line {n}: {}", e.message()),
            None => anyhow::anyhow!("{}", e.message()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_optional_and_unknown_ones_refused() {
        assert_eq!(parse("").unwrap(), Config::default());
        let c = parse("# lab\nstorage_driver = \"fuse\"\ninsecure_registries = [\n  \"a:5000\", # x\n  'b',\n]\n").unwrap();
        assert_eq!(c.storage_driver.as_deref(), Some("fuse"));
        assert_eq!(c.insecure_registries, ["a:5000", "b"]);
        assert!(parse("storage-driver = \"x\"").is_err());
        assert!(parse("insecure_registries = 5").is_err());
    }
}
