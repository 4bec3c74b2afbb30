//! Authentication: the `WWW-Authenticate` challenge and the credentials file.
//!
//! A registry says how to authenticate in its 401 answer to `GET /v2/`:
//! `Basic realm="..."` (send the user and password with every request) or
//! `Bearer realm="https://auth/token",service="registry"` (trade them, or
//! nothing for anonymous access, for a token scoped to one repository and
//! the actions `pull` or `pull,push`). The parsing here is pure.
//!
//! Credentials live in `~/.config/burrow/auth.json` (or
//! `$XDG_CONFIG_HOME/burrow/auth.json`), in the format of Docker's
//! `~/.docker/config.json`: `{"auths":{"HOST":{"auth":"base64(user:pass)"}}}`.
//! burrow writes only its own file and reads Docker's as a fallback.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::paths::write_atomic;

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value. `None` for schemes burrow does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        }),
        _ => None,
    }
}

/// What a registry's 401 to a request with a token says: the scope it
/// wanted and why the token fell short (`insufficient_scope` when it lacks
/// an action, `invalid_token` when it expired or is not trusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// Reads a 401's `WWW-Authenticate: Bearer ...,scope="...",error="..."`.
pub fn parse_refusal(header: &str) -> Refusal {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Refusal::default();
    }
    let mut params = parse_params(rest);
    Refusal {
        scope: params.remove("scope"),
        error: params.remove("error"),
    }
}

/// A bearer token and when to fetch a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The `Authorization` header value: `Bearer ...`.
    pub header: String,
    pub renew_at: Instant,
}

/// The token server's answer: `{"token"|"access_token", "expires_in"}`.
/// Without `expires_in` a token lives 60 s (the distribution spec's
/// minimum). It is renewed when 90% of its life is gone, so a request never
/// carries one that expires on the way.
pub fn parse_token(body: &[u8], now: Instant) -> Result<Token, String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("an answer without a token")?;
    let life = answer.expires_in.unwrap_or(60).max(1);
    Ok(Token {
        header: format!("Bearer {token}"),
        renew_at: now + Duration::from_millis(life * 900),
    })
}

/// `key="value", key=value` pairs; keys lowercased, quotes and `\` escapes removed.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// A user name and password (or identity token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// The `Authorization` value for Basic auth.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.user, self.password))
        )
    }

    fn decode(auth: &str) -> Option<Credentials> {
        let bytes = STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }
}

/// The on-disk format shared with Docker. Unknown keys (credsStore, ...) are kept.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Where burrow keeps credentials: `$XDG_CONFIG_HOME/burrow` or `~/.config/burrow`.
pub fn config_dir() -> Option<PathBuf> {
    crate::config::dir()
}

fn docker_config() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The keys a registry may be filed under: Docker files Docker Hub under its
/// old v1 URL, and some tools write `https://host`.
fn keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}")];
    if registry == crate::image::DEFAULT_DOMAIN {
        keys.insert(0, "https://index.docker.io/v1/".into());
        keys.push("index.docker.io".into());
        keys.push("registry-1.docker.io".into());
    }
    keys
}

fn load(path: &Path) -> io::Result<AuthFile> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(e) => Err(e),
    }
}

/// The stored credentials for `registry`: burrow's file first, then Docker's.
pub fn lookup(registry: &str) -> io::Result<Option<Credentials>> {
    let files = [config_dir().map(|d| d.join("auth.json")), docker_config()];
    for path in files.into_iter().flatten() {
        let file = load(&path)?;
        for key in keys(registry) {
            if let Some(creds) = file
                .auths
                .get(&key)
                .and_then(|e| e.auth.as_deref())
                .and_then(Credentials::decode)
            {
                return Ok(Some(creds));
            }
        }
    }
    Ok(None)
}

/// Records credentials for `registry` in burrow's file (mode 0600).
pub fn store(registry: &str, creds: &Credentials) -> io::Result<PathBuf> {
    let dir =
        config_dir().ok_or_else(|| io::Error::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    fs::create_dir_all(&dir)?;
    let path = dir.join("auth.json");
    let mut file = load(&path)?;
    let encoded = STANDARD.encode(format!("{}:{}", creds.user, creds.password));
    let key = keys(registry).remove(0);
    file.auths.entry(key).or_default().auth = Some(encoded);
    save(&path, &file)?;
    Ok(path)
}

/// Forgets `registry`'s credentials. Returns whether there were any.
pub fn remove(registry: &str) -> io::Result<bool> {
    let Some(path) = config_dir().map(|d| d.join("auth.json")) else {
        return Ok(false);
    };
    let mut file = load(&path)?;
    let mut found = false;
    for key in keys(registry) {
        found |= file.auths.remove(&key).is_some();
    }
    if found {
        save(&path, &file)?;
    }
    Ok(found)
}

fn save(path: &Path, file: &AuthFile) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    write_atomic(path, &json)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"bearer  service=reg, realm="http://127.0.0.1:9/t\"x""#),
            Some(Challenge::Bearer {
                realm: r#"http://127.0.0.1:9/t"x"#.into(),
                service: Some("reg".into()),
            })
        );
        // A bearer challenge without a realm cannot be followed.
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn a_refusal_names_the_scope_and_the_reason() {
        assert_eq!(
            parse_refusal(
                r#"Bearer realm="http://a/token",service="reg",scope="repository:team/app:pull,push",error="insufficient_scope""#
            ),
            Refusal {
                scope: Some("repository:team/app:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(parse_refusal(r#"Basic realm="x""#), Refusal::default());
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let now = Instant::now();
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.header, "Bearer abc");
        assert_eq!(t.renew_at, now + Duration::from_secs(270));
        // access_token (OAuth's name) and the 60 s default.
        let t = parse_token(br#"{"access_token":"x"}"#, now).unwrap();
        assert_eq!(t.header, "Bearer x");
        assert_eq!(t.renew_at, now + Duration::from_secs(54));
        assert!(parse_token(br#"{"token":""}"#, now).is_err());
        assert!(parse_token(b"<html>", now).is_err());
    }

    #[test]
    fn credentials_round_trip_through_base64() {
        let c = Credentials {
            user: "me".into(),
            password: "p:w".into(),
        };
        assert_eq!(c.basic(), "Basic bWU6cDp3");
        assert_eq!(Credentials::decode("bWU6cDp3"), Some(c));
        assert_eq!(Credentials::decode("!!"), None);
    }

    #[test]
    fn docker_hub_has_its_legacy_key_first() {
        assert_eq!(keys("docker.io")[0], "https://index.docker.io/v1/");
        assert_eq!(keys("127.0.0.1:5000")[0], "127.0.0.1:5000");
    }

    #[test]
    fn the_file_keeps_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        fs::write(
            &path,
            r#"{"credsStore":"desktop","auths":{"a:1":{"auth":"bWU6cDp3","email":"x"}}}"#,
        )
        .unwrap();
        let mut f = load(&path).unwrap();
        f.auths.insert("b:2".into(), AuthEntry::default());
        save(&path, &f).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("credsStore") && text.contains("email"),
            "{text}"
        );
    }
}
