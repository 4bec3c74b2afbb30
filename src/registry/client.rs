//! The HTTP side of the distribution API: one [`Client`] per registry.
//!
//! The client pings `GET /v2/` once to learn how the registry authenticates
//! (see [`super::auth`]), then sends every request with the matching
//! `Authorization` header: the stored credentials for Basic, a token fetched
//! once per scope (`repository:NAME:pull` or `...:pull,push`) for Bearer,
//! and reused by every request of that scope (every blob of a pull) until
//! it nears its `expires_in`. A token the registry refuses anyway (it
//! expired early, or was revoked) is traded for a new one and the request
//! sent once more; a second refusal is the answer.
//! Registries are reached over HTTPS with rustls, verified against the
//! system's CA store; insecure ones (loopback by default, as Docker allows)
//! over HTTPS unverified or plain HTTP, whichever the server speaks (see
//! [`super::tls`]).
//!
//! Every failure becomes a [`RegistryError`] naming what was asked for; the
//! registry's own error code (`MANIFEST_UNKNOWN`, `DENIED`...) is kept.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::http::{self, Method, StatusCode};

use super::RegistryError;
use super::auth::{self, Challenge, Credentials, Token};
use super::tls::{self, Security};
use crate::image::{DEFAULT_DOMAIN, Digest};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// `Some(true)`: verified HTTPS even on loopback; `Some(false)`: HTTPS
    /// unverified or plain HTTP even off loopback (`--tls-verify=false`).
    pub tls_verify: Option<bool>,
}

/// An HTTP agent for `registry` (its `certs.d` CAs included) with burrow's
/// timeouts; answers of every status come back as answers, not errors.
pub(super) fn agent(registry: &str, security: Security) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .user_agent(concat!("burrow/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls::config(registry, security))
        .build()
        .new_agent()
}

/// A request body. Only borrows, so a refused request can be sent again.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a File),
}

type Response = http::Response<ureq::Body>;

/// A client for one registry. Shared between download threads.
pub struct Client {
    agent: ureq::Agent,
    /// As references spell it: `127.0.0.1:5000`, `docker.io`.
    registry: String,
    /// `127.0.0.1:5000`, `registry-1.docker.io`.
    host: String,
    security: Security,
    /// `http://127.0.0.1:5000`, `https://registry-1.docker.io`: decided at
    /// the first request (see [`Client::base`]).
    base: OnceLock<String>,
    creds: Option<Credentials>,
    /// `None` until the first ping; then what `/v2/` asked for.
    challenge: Mutex<Option<Option<Challenge>>>,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, Token>>,
}

impl Client {
    /// A client for `registry`, with its stored credentials if any.
    pub fn new(registry: &str, transport: &Transport) -> Result<Client, RegistryError> {
        let creds = auth::lookup(registry).map_err(|e| RegistryError::Credentials {
            registry: registry.into(),
            cause: e.to_string(),
        })?;
        Ok(Client::with_credentials(registry, transport, creds))
    }

    pub fn with_credentials(
        registry: &str,
        transport: &Transport,
        creds: Option<Credentials>,
    ) -> Client {
        let host = if registry == DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            registry
        };
        let listed = super::config::insecure_registries()
            .iter()
            .any(|r| r == registry);
        let security = Security::choose(transport.tls_verify, listed, is_loopback(host));
        let agent = agent(registry, security);
        Client {
            agent,
            registry: registry.to_string(),
            host: host.to_string(),
            security,
            base: OnceLock::new(),
            creds,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Checks that the registry answers and that our credentials are good.
    pub fn login(&self) -> Result<(), RegistryError> {
        match self.challenge()? {
            None => Ok(()),
            Some(Challenge::Basic) => {
                let basic = self.creds.as_ref().map(Credentials::basic);
                let url = self.url("/v2/");
                let resp = self.raw(Method::GET, &url, basic.as_deref(), &[], Body::Empty)?;
                match resp.status() {
                    s if s.is_success() => Ok(()),
                    StatusCode::UNAUTHORIZED => Err(self.unauthorized(&self.registry, "")),
                    _ => Err(status_error(&self.registry, resp)),
                }
            }
            Some(Challenge::Bearer { realm, service }) => {
                self.fetch_token(&realm, service.as_deref(), None).map(drop)
            }
        }
    }

    /// `GET /v2/NAME/manifests/REF`: the body, its Content-Type and its digest.
    pub fn manifest(
        &self,
        repo: &str,
        reference: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.request(
            Method::GET,
            &url,
            &pull_scope(repo),
            &[("Accept", super::manifest::ACCEPT)],
            Body::Empty,
            what,
        )?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::ManifestUnknown {
                    reference: what.into(),
                });
            }
            _ => return Err(status_error(what, resp)),
        }
        let content_type = header(&resp, "content-type");
        let bytes = resp
            .into_body()
            .with_config()
            .limit(8 << 20)
            .read_to_vec()
            .map_err(|e| RegistryError::Transfer {
                reference: what.into(),
                cause: e.to_string(),
            })?;
        let digest = Digest::of(&bytes);
        Ok((bytes, content_type, digest))
    }

    /// `GET /v2/NAME/blobs/DIGEST` as a stream; the caller verifies the digest.
    pub fn blob(
        &self,
        repo: &str,
        digest: &str,
        what: &str,
    ) -> Result<impl Read + Send + 'static, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.request(Method::GET, &url, &pull_scope(repo), &[], Body::Empty, what)?;
        match resp.status() {
            s if s.is_success() => Ok(resp.into_body().into_reader()),
            StatusCode::NOT_FOUND => Err(RegistryError::BlobUnknown {
                reference: what.into(),
                digest: digest.into(),
            }),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `GET /v2/NAME/blobs/DIGEST` from byte `offset` on (a `Range`
    /// request); returns the stream and the offset it really starts at: 0
    /// when the registry ignored the range.
    pub fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        what: &str,
        offset: u64,
    ) -> Result<super::retry::Opened, RegistryError> {
        if offset == 0 {
            let body = self.blob(repo, digest, what)?;
            return Ok((Box::new(body), 0));
        }
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let resp = self.request(
            Method::GET,
            &url,
            &pull_scope(repo),
            &[("Range", &range)],
            Body::Empty,
            what,
        )?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => Ok((Box::new(resp.into_body().into_reader()), offset)),
            s if s.is_success() => Ok((Box::new(resp.into_body().into_reader()), 0)),
            StatusCode::NOT_FOUND => Err(RegistryError::BlobUnknown {
                reference: what.into(),
                digest: digest.into(),
            }),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `HEAD /v2/NAME/blobs/DIGEST`: whether the repository has the blob.
    pub fn has_blob(&self, repo: &str, digest: &Digest, what: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.request(
            Method::HEAD,
            &url,
            &push_scope(repo),
            &[],
            Body::Empty,
            what,
        )?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(what, resp)),
        }
    }

    /// Asks the registry to link a blob it holds under `from` into `repo`.
    /// `Ok(None)`: mounted. `Ok(Some(location))`: it opened an upload instead.
    pub fn mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
        what: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
        ));
        // The token must cover pulling from the source repository too.
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let resp = self.request(Method::POST, &url, &scope, &[], Body::Empty, what)?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&resp, what)?)),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `POST /v2/NAME/blobs/uploads/`: opens an upload, returns its location.
    pub fn start_upload(&self, repo: &str, what: &str) -> Result<String, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.request(
            Method::POST,
            &url,
            &push_scope(repo),
            &[],
            Body::Empty,
            what,
        )?;
        match resp.status() {
            StatusCode::ACCEPTED => self.location(&resp, what),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `PUT LOCATION?digest=D` with the whole blob: a monolithic upload.
    pub fn finish_upload(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        body: Body<'_>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let resp = self.request(
            Method::PUT,
            &url,
            &push_scope(repo),
            &[("Content-Type", "application/octet-stream")],
            body,
            what,
        )?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `PUT /v2/NAME/manifests/TAG`.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let resp = self.request(
            Method::PUT,
            &url,
            &push_scope(repo),
            &[("Content-Type", media_type)],
            Body::Bytes(bytes),
            what,
        )?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            _ => Err(status_error(what, resp)),
        }
    }

    /// `GET /v2/_catalog`: every repository name (first page of 1000).
    pub fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let url = self.url("/v2/_catalog?n=1000");
        let what = self.registry.clone();
        let resp = self.request(
            Method::GET,
            &url,
            "registry:catalog:*",
            &[],
            Body::Empty,
            &what,
        )?;
        if !resp.status().is_success() {
            return Err(status_error(&what, resp));
        }
        let catalog: Catalog =
            resp.into_body()
                .read_json()
                .map_err(|e| RegistryError::Transfer {
                    reference: what.clone(),
                    cause: e.to_string(),
                })?;
        Ok(catalog.repositories)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The scheme and host. Verified registries are HTTPS. An insecure one is
    /// asked over HTTPS once: if that fails at all (no TLS there, or nothing
    /// on port 443 for a registry named without a port), plain HTTP is used,
    /// and a registry down on both reports that on the real request.
    fn base(&self) -> &str {
        self.base.get_or_init(|| {
            let https = format!("https://{}", self.host);
            if self.security == Security::Verified {
                return https;
            }
            match self.agent.get(format!("{https}/v2/")).call() {
                Ok(_) => https,
                Err(_) => format!("http://{}", self.host),
            }
        })
    }

    /// Resolves an upload `Location`, which may be relative to the registry.
    fn location(&self, resp: &Response, what: &str) -> Result<String, RegistryError> {
        let loc = header(resp, "location").ok_or_else(|| RegistryError::Malformed {
            reference: what.into(),
            detail: "an upload answer without a Location header".into(),
        })?;
        Ok(if loc.starts_with('/') {
            self.url(&loc)
        } else {
            loc
        })
    }

    /// Sends a request with the authorization `scope` needs; a 401 is an error.
    fn request(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let authorization = self.authorization(scope, what, false)?;
        let mut resp = self.raw(method.clone(), url, authorization.as_deref(), headers, body)?;
        if resp.status() == StatusCode::UNAUTHORIZED && authorization.is_some() && self.is_bearer()
        {
            // The token may have expired on the way or been revoked: one
            // fresh token, one more try.
            rewind(body, what)?;
            let fresh = self.authorization(scope, what, true)?;
            resp = self.raw(method, url, fresh.as_deref(), headers, body)?;
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            let refusal =
                auth::parse_refusal(&header(&resp, "www-authenticate").unwrap_or_default());
            let detail = error_detail(resp);
            return Err(self.refused(what, scope, &refusal, &detail));
        }
        if resp.status() == StatusCode::FORBIDDEN {
            let detail = error_detail(resp);
            return Err(RegistryError::Unauthorized {
                reference: what.into(),
                registry: self.registry.clone(),
                detail: format!("access denied: {detail}"),
            });
        }
        Ok(resp)
    }

    fn is_bearer(&self) -> bool {
        matches!(
            self.challenge.lock().unwrap().as_ref(),
            Some(Some(Challenge::Bearer { .. }))
        )
    }

    /// The error for a request the registry refused. With Bearer auth and
    /// credentials the token server accepted, the user is known and lacks
    /// the access: logging in again would not help.
    fn refused(
        &self,
        what: &str,
        scope: &str,
        refusal: &auth::Refusal,
        detail: &str,
    ) -> RegistryError {
        match (&self.creds, refusal.error.as_deref()) {
            (Some(creds), Some("insufficient_scope")) if self.is_bearer() => {
                RegistryError::Denied {
                    reference: what.into(),
                    detail: format!(
                        "the token server did not grant user \"{}\" {}",
                        creds.user,
                        refusal.scope.as_deref().unwrap_or(scope)
                    ),
                }
            }
            _ => self.unauthorized(what, detail),
        }
    }

    /// A refusal of our credentials (or of none). `detail`, the server's
    /// own words, is added when it says more than the reason does.
    fn unauthorized(&self, what: &str, detail: &str) -> RegistryError {
        let reason = match &self.creds {
            None => "authentication required",
            Some(_) if detail.is_empty() => "incorrect username or password",
            Some(_) => "incorrect username or password, or access denied",
        };
        self.unauthorized_because(what, reason, detail)
    }

    fn unauthorized_because(&self, what: &str, reason: &str, detail: &str) -> RegistryError {
        let words = detail.strip_prefix("unauthorized: ").unwrap_or(detail);
        let detail = if words.is_empty() || reason.contains(words) {
            reason.to_string()
        } else {
            format!("{reason} ({detail})")
        };
        RegistryError::Unauthorized {
            reference: what.into(),
            registry: self.registry.clone(),
            detail,
        }
    }

    fn raw(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, RegistryError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let invalid = |e: http::Error| RegistryError::Malformed {
            reference: url.into(),
            detail: e.to_string(),
        };
        let result = match body {
            Body::Empty => self.agent.run(builder.body(()).map_err(invalid)?),
            Body::Bytes(b) => self.agent.run(builder.body(b).map_err(invalid)?),
            Body::File(f) => self.agent.run(builder.body(f).map_err(invalid)?),
        };
        result.map_err(|e| {
            if tls::is_tls_failure(&e) && url.starts_with("https:") {
                RegistryError::Tls {
                    hint: tls::hint(&self.registry, &e),
                    registry: self.registry.clone(),
                    cause: e.to_string(),
                }
            } else {
                RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    cause: e.to_string(),
                }
            }
        })
    }

    /// What `GET /v2/` asked for, learnt once.
    fn challenge(&self) -> Result<Option<Challenge>, RegistryError> {
        if let Some(c) = self.challenge.lock().unwrap().clone() {
            return Ok(c);
        }
        let resp = self.raw(Method::GET, &self.url("/v2/"), None, &[], Body::Empty)?;
        let challenge = match resp.status() {
            s if s.is_success() => None,
            StatusCode::UNAUTHORIZED => {
                let header = header(&resp, "www-authenticate").unwrap_or_default();
                Some(
                    auth::parse_challenge(&header).ok_or_else(|| RegistryError::Malformed {
                        reference: self.registry.clone(),
                        detail: format!("unsupported authentication challenge \"{header}\""),
                    })?,
                )
            }
            _ => {
                return Err(RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    cause: format!(
                        "GET /v2/ answered HTTP {}; is this a container registry?",
                        resp.status().as_u16()
                    ),
                });
            }
        };
        *self.challenge.lock().unwrap() = Some(challenge.clone());
        Ok(challenge)
    }

    /// The `Authorization` header for `scope`: a cached token while it is
    /// fresh (and `renew` is false), else a new one.
    fn authorization(
        &self,
        scope: &str,
        what: &str,
        renew: bool,
    ) -> Result<Option<String>, RegistryError> {
        match self.challenge()? {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.creds.as_ref().map(Credentials::basic)),
            Some(Challenge::Bearer { realm, service }) => {
                if !renew
                    && let Some(t) = self.tokens.lock().unwrap().get(scope)
                    && Instant::now() < t.renew_at
                {
                    return Ok(Some(t.header.clone()));
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), Some(scope))
                    .map_err(|e| with_reference(e, what))?;
                let value = token.header.clone();
                self.tokens.lock().unwrap().insert(scope.to_string(), token);
                Ok(Some(value))
            }
        }
    }

    /// Trades the credentials (or nothing) for a token at the realm.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Token, RegistryError> {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        // Docker names the account too; some token servers want it.
        if let Some(c) = &self.creds {
            query.push(format!("account={}", encode(&c.user)));
        }
        for s in scope.into_iter().flat_map(|s| s.split(' ')) {
            query.push(format!("scope={}", encode(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() {
            realm.to_string()
        } else {
            format!("{realm}{sep}{}", query.join("&"))
        };
        let basic = self.creds.as_ref().map(Credentials::basic);
        let resp = self.raw(Method::GET, &url, basic.as_deref(), &[], Body::Empty)?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                // The token server judges the credentials alone.
                let reason = match &self.creds {
                    Some(_) => "incorrect username or password",
                    None => "authentication required",
                };
                let detail = error_detail(resp);
                return Err(self.unauthorized_because(&self.registry, reason, &detail));
            }
            _ => return Err(status_error(&self.registry, resp)),
        }
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| RegistryError::Transfer {
                reference: self.registry.clone(),
                cause: format!("reading the token: {e}"),
            })?;
        auth::parse_token(&body, Instant::now()).map_err(|e| RegistryError::Malformed {
            reference: self.registry.clone(),
            detail: format!("the token server at {realm} answered: {e}"),
        })
    }
}

/// Puts the name of what was asked for into a token error.
fn with_reference(e: RegistryError, what: &str) -> RegistryError {
    match e {
        RegistryError::Unauthorized {
            registry, detail, ..
        } => RegistryError::Unauthorized {
            reference: what.into(),
            registry,
            detail,
        },
        other => other,
    }
}

/// Sets a file body back to its start before it is sent again.
fn rewind(body: Body<'_>, what: &str) -> Result<(), RegistryError> {
    if let Body::File(mut f) = body {
        f.seek(SeekFrom::Start(0))
            .map_err(|e| RegistryError::Transfer {
                reference: what.into(),
                cause: format!("cannot rewind the upload: {e}"),
            })?;
    }
    Ok(())
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Loopback hosts, where Docker allows plain HTTP: 127.0.0.0/8, ::1, localhost.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The registry's `{"errors":[{"code","message"}]}` as one line, or the status.
fn error_detail(resp: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let status = resp.status();
    let text = resp
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    if let Ok(errors) = serde_json::from_str::<Errors>(&text) {
        let parts: Vec<String> = errors
            .errors
            .iter()
            .map(|e| {
                let code = e
                    .code
                    .as_deref()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .replace('_', " ");
                match e.message.as_deref() {
                    Some(m) if !m.is_empty() && m != code => format!("{code}: {m}"),
                    _ => code,
                }
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() || line.len() > 200 {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {line}", status.as_u16())
    }
}

fn status_error(what: &str, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    RegistryError::Status {
        reference: what.into(),
        status,
        detail: error_detail(resp),
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_speak_plain_http() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("repository:team/app:pull,push"),
            "repository%3Ateam%2Fapp%3Apull%2Cpush"
        );
    }
}
