//! `search`: repository names matching a term.
//!
//! Registries other than Docker Hub are listed through `GET /v2/_catalog`
//! and filtered here (the API has no search). Docker Hub disables its
//! catalog, so `docker.io` goes through Hub's own search API
//! (`index.docker.io/v1/search`, or the mirror of it that `hub_search_url`
//! names in the configuration), as `docker search` does. The offline tests
//! put a server that answers as Hub does behind `hub_search_url`.

use anyhow::{Context, Result};
use serde::Deserialize;

use super::client::{self, Client, Transport};
use super::tls::Security;
use crate::image::DEFAULT_DOMAIN;

/// One row of `search`'s table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: bool,
}

/// Searches `REGISTRY/TERM` (or `TERM` on Docker Hub).
pub fn search(term: &str, limit: usize, transport: &Transport) -> Result<Vec<SearchResult>> {
    let (registry, needle) = split(term);
    if registry == DEFAULT_DOMAIN {
        return hub(needle, limit);
    }
    let client = Client::new(registry, transport)?;
    let mut out: Vec<SearchResult> = client
        .catalog()?
        .into_iter()
        .filter(|name| name.contains(needle))
        .map(|name| SearchResult {
            name: format!("{registry}/{name}"),
            description: String::new(),
            stars: 0,
            official: false,
        })
        .collect();
    out.truncate(limit);
    Ok(out)
}

/// `127.0.0.1:5000/team` → (`127.0.0.1:5000`, `team`); `nginx` → (`docker.io`, `nginx`).
fn split(term: &str) -> (&str, &str) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        // `127.0.0.1:5000` alone: everything on that registry.
        None if term.contains(':') || term == "localhost" => (term, ""),
        _ => (DEFAULT_DOMAIN, term),
    }
}

/// Docker Hub's search API (v1: `?q=TERM&n=LIMIT`, answered with
/// `{"results": [{"name", "description", "star_count", "is_official"}]}`).
fn hub(term: &str, limit: usize) -> Result<Vec<SearchResult>> {
    #[derive(Deserialize)]
    struct Page {
        results: Vec<Hit>,
    }
    #[derive(Deserialize)]
    struct Hit {
        name: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        star_count: u64,
        #[serde(default)]
        is_official: bool,
    }
    let url = super::config::hub_search_url();
    let host = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let answer = client::agent(host, Security::Verified)
        .get(&url)
        .query("q", term)
        .query("n", limit.to_string())
        .call()
        .with_context(|| format!("cannot reach Docker Hub's search API at {url}"))?;
    let status = answer.status();
    if !status.is_success() {
        anyhow::bail!("Docker Hub's search API at {url} answered {status}");
    }
    let page: Page = answer.into_body().read_json().with_context(|| {
        format!("Docker Hub's search API at {url} answered something unexpected")
    })?;
    Ok(page
        .results
        .into_iter()
        .take(limit)
        .map(|h| SearchResult {
            name: h.name,
            description: h.description.unwrap_or_default(),
            stars: h.star_count,
            official: h.is_official,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_registry_from_the_term() {
        assert_eq!(split("127.0.0.1:5000/team"), ("127.0.0.1:5000", "team"));
        assert_eq!(split("localhost/x"), ("localhost", "x"));
        assert_eq!(split("nginx"), ("docker.io", "nginx"));
        assert_eq!(split("user/app"), ("docker.io", "user/app"));
        assert_eq!(split("127.0.0.1:5000/"), ("127.0.0.1:5000", ""));
        assert_eq!(split("127.0.0.1:5000"), ("127.0.0.1:5000", ""));
    }
}
