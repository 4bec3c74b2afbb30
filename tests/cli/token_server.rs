//! A Docker-style token server for the Bearer-auth tests, written here so
//! the registry's side of the handshake is real: `docker-registry` runs with
//! `auth: token:` and checks every JWT this server signs against the
//! certificate in its `rootcertbundle`.
//!
//! Theory of operation. [`TokenServer::start`] makes an RSA key and a
//! self-signed certificate with the `openssl` CLI, then serves HTTP on a
//! free 127.0.0.1 port from a thread. `GET /token?service=S&scope=S...`
//! checks the Basic credentials (none is anonymous), grants of each asked
//! scope only the actions the account may have, and answers
//! `{"token","access_token","expires_in","issued_at"}`. The token is a
//! compact JWS: header `{"typ":"JWT","alg":"RS256","x5c":[CERT]}` (the
//! registry verifies the chain from the leaf in `x5c` to its root bundle),
//! claims `iss`, `aud` (the service), `sub`, `exp`, `nbf`, `iat`, `jti`
//! and `access`, signed by `openssl dgst -sha256 -sign` (RS256 is
//! RSASSA-PKCS1-v1_5 with SHA-256, what `dgst -sign` makes with an RSA
//! key). Every request is recorded, so tests can count them and read the
//! scopes a client asked for.
//!
//! A wrong password gets 401. Anonymous callers get a token with no access
//! at all, as Docker Hub does for a private repository: the registry then
//! refuses the request itself.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The `service` and `issuer` the registry is configured with.
pub(crate) const SERVICE: &str = "burrow-test-registry";
pub(crate) const ISSUER: &str = "burrow-test-token-server";

/// An account and the actions it may have on any repository.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub user: &'static str,
    pub password: &'static str,
    pub actions: &'static [&'static str],
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub(crate) struct TokenRequest {
    /// The Basic user, `None` for anonymous.
    pub user: Option<String>,
    /// The `account` parameter.
    pub account: Option<String>,
    /// The `scope` parameters, in order.
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

struct State {
    accounts: Vec<Account>,
    key: PathBuf,
    /// The certificate's DER, base64 (standard alphabet), for `x5c`.
    cert_der: String,
    requests: Mutex<Vec<TokenRequest>>,
    serial: AtomicUsize,
    /// How many of the next tokens to sign already expired.
    stale: AtomicUsize,
    stop: AtomicBool,
}

/// A running token server; stopped on drop.
pub(crate) struct TokenServer {
    state: Arc<State>,
    addr: String,
    dir: tempfile::TempDir,
    thread: Option<thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Makes the key and certificate and starts serving; `None` (the
    /// caller skips) without `openssl`.
    pub(crate) fn start(accounts: &[Account]) -> Option<TokenServer> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=burrow test token server"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        assert!(
            made.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        // The PEM body is the DER in base64; x5c wants it on one line.
        let pem = fs::read_to_string(&cert).unwrap();
        let cert_der: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            accounts: accounts.to_vec(),
            key,
            cert_der,
            requests: Mutex::new(Vec::new()),
            serial: AtomicUsize::new(0),
            stale: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let serving = state.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(&serving, conn);
                }
            }
        });
        Some(TokenServer {
            state,
            addr,
            dir,
            thread: Some(thread),
        })
    }

    /// The `auth:` section of the registry's config.
    pub(crate) fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.addr,
            self.cert_path().display()
        )
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Signs the next `n` tokens already expired (while still announcing
    /// `expires_in: 300`), as a token that expires mid-pull looks to the
    /// registry.
    pub(crate) fn expire_next(&self, n: usize) {
        self.state.stale.store(n, Ordering::SeqCst);
    }

    /// Forgets the requests so far.
    pub(crate) fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one HTTP/1.1 request and closes the connection.
fn serve(state: &State, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let (status, body, user) = answer(state, path, &params, &scopes, authorization.as_deref());
    let account = params
        .iter()
        .find(|(k, _)| k == "account")
        .map(|(_, v)| v.clone());
    state.requests.lock().unwrap().push(TokenRequest {
        user,
        account,
        scopes,
        status,
    });
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// The status, body and authenticated user for one token request.
fn answer(
    state: &State,
    path: &str,
    params: &[(String, String)],
    scopes: &[String],
    authorization: Option<&str>,
) -> (u16, String, Option<String>) {
    let error = |status: u16, message: &str| {
        let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]});
        (status, body.to_string())
    };
    if path != "/token" {
        let (s, b) = error(404, "no such endpoint");
        return (s, b, None);
    }
    if !params.iter().any(|(k, v)| k == "service" && v == SERVICE) {
        let (s, b) = error(400, "unknown or missing service");
        return (s, b, None);
    }
    let account = match authorization {
        None => None,
        Some(value) => {
            let Some((user, password)) = basic_credentials(value) else {
                let (s, b) = error(400, "malformed Authorization header");
                return (s, b, None);
            };
            match state
                .accounts
                .iter()
                .find(|a| a.user == user && a.password == password)
            {
                Some(a) => Some(a.clone()),
                None => {
                    let (s, b) = error(401, "incorrect username or password");
                    return (s, b, Some(user));
                }
            }
        }
    };
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|scope| grant(account.as_ref(), scope))
        .collect();
    let user = account.as_ref().map(|a| a.user.to_string());
    let token = sign(state, user.as_deref().unwrap_or(""), access);
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
    (200, body.to_string(), user)
}

/// `repository:NAME:ACTIONS` → the `access` entry the account may have.
fn grant(account: Option<&Account>, scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let allowed = account.map_or(&[][..], |a| a.actions);
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|a| allowed.contains(a) || allowed.contains(&"*"))
        .collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
}

/// A compact RS256 JWS with the certificate in `x5c`.
fn sign(state: &State, subject: &str, access: Vec<serde_json::Value>) -> String {
    let stale = state
        .stale
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let now = if stale { unix_now() - 600 } else { unix_now() };
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [state.cert_der]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("t{}", state.serial.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = openssl_sign(&state.key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn openssl_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?;
    let text = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
