//! Bearer-token auth against a real `docker-registry` configured with
//! `auth: token:`, whose tokens come from the test token server
//! ([`crate::token_server`]). skopeo, a client no one here wrote, puts the
//! image there through the same token server, so the setup is checked
//! independently of burrow.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::registry::{LayoutDir, Registry, host_arch, run_ok, sha256, skip};
use crate::token_server::{Account, TokenServer};
use crate::util::{Env, busybox_tar};

const ME: Account = Account {
    user: "me",
    password: "s3cret",
    actions: &["pull", "push"],
};
const READER: Account = Account {
    user: "reader",
    password: "r3ad",
    actions: &["pull"],
};

/// An OCI layout: the busybox rootfs and `extra` small layers, each adding
/// `/layerN` holding `N` (with empty owner fields).
fn layered(extra: usize) -> Option<tempfile::TempDir> {
    let rootfs = match busybox_tar() {
        Ok(t) => fs::read(t).unwrap(),
        Err(reason) => return skip(&reason),
    };
    let layout = LayoutDir::new();
    let mut tars = vec![rootfs];
    for n in 0..extra {
        let mut b = tar::Builder::new(Vec::new());
        let body = n.to_string();
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        // No uid or gid: the fields stay empty, as in many layers made
        // with the tar crate; Docker's reader takes them for 0, so must burrow.
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("layer{n}"), body.as_bytes())
            .unwrap();
        tars.push(b.into_inner().unwrap());
    }
    let mut layers = Vec::new();
    for tar in &tars {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let blob = layout.put(&gz.finish().unwrap());
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": blob["digest"], "size": blob["size"],
        }));
    }
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    Some(layout.image(config, layers))
}

/// The token server and a registry that trusts it; `None` to skip.
fn start() -> Option<(TokenServer, Registry)> {
    let Some(tokens) = TokenServer::start(&[ME, READER]) else {
        return skip("openssl is not installed");
    };
    let reg = Registry::with_tokens(&tokens)?;
    Some((tokens, reg))
}

fn skopeo_push(reg: &Registry, layout: &Path, name: &str) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .args(["--dest-creds", "me:s3cret"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}", reg.name(name)));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "skopeo could not push through the token server:\n{}\nregistry log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
}

fn login(env: &Env, reg: &Registry, account: &Account) {
    let out = env
        .burrow_with_stdin(
            ["login", reg.host(), "-u", account.user, "--password-stdin"],
            format!("{}\n", account.password).as_bytes(),
        )
        .success();
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.describe());
}

#[test]
fn bearer_pull_and_push_as_a_logged_in_user() {
    let Some((tokens, reg)) = start() else {
        return;
    };
    let Some(layout) = layered(4) else {
        return;
    };
    skopeo_push(&reg, layout.path(), "team/app:1");
    let env = setup!(Env::empty());
    let reference = reg.name("team/app:1");

    // Anonymous: the token server hands out a token without access; the
    // registry refuses it.
    let out = env.burrow(["pull", &reference]).burrow_error();
    assert!(
        out.stderr.contains(&format!(
            "{reference}: unauthorized: authentication required"
        )) && out.stderr.contains(&format!("burrow login {}", reg.host())),
        "{}\nregistry log:\n{}",
        out.describe(),
        reg.log()
    );
    assert!(env.ok(["images", "-q"]).trim().is_empty());

    // A wrong password is refused by the token server at login.
    tokens.clear();
    let out = env
        .burrow_with_stdin(
            ["login", reg.host(), "-u", "me", "--password-stdin"],
            b"wrong\n",
        )
        .burrow_error();
    assert!(
        out.stderr.contains(&format!(
            "{}: unauthorized: incorrect username or password",
            reg.host()
        )) && !out.stderr.contains("access denied"),
        "{}",
        out.describe()
    );
    let asked = tokens.requests();
    assert!(
        asked
            .iter()
            .any(|r| r.user.as_deref() == Some("me") && r.status == 401),
        "{asked:?}"
    );
    assert!(!env.home().join(".config/burrow/auth.json").exists());

    login(&env, &reg, &ME);

    // One token serves the manifest, the config and all five layers.
    tokens.clear();
    let out = env.burrow(["pull", &reference]).success();
    assert!(
        out.stdout.contains("Downloaded newer image"),
        "{}",
        out.describe()
    );
    let asked = tokens.requests();
    assert_eq!(asked.len(), 1, "one token per scope, reused: {asked:?}");
    assert_eq!(asked[0].user.as_deref(), Some("me"));
    assert_eq!(asked[0].account.as_deref(), Some("me"));
    assert_eq!(asked[0].scopes, ["repository:team/app:pull"]);
    let out = env
        .burrow(["run", "--rm", &reference, "cat", "/layer0", "/layer3"])
        .success();
    assert_eq!(out.stdout, "03");

    // A token the registry finds expired is renewed once, and the pull
    // goes on.
    env.ok(["rmi", &reference]);
    tokens.clear();
    tokens.expire_next(1);
    let out = env.burrow(["pull", &reference]).success();
    assert!(
        out.stdout.contains("Downloaded newer image"),
        "{}",
        out.describe()
    );
    assert_eq!(tokens.requests().len(), 2, "{:?}", tokens.requests());

    // A push asks for push access, once, not per blob.
    let target = reg.name("team/copy:1");
    env.ok(["tag", &reference, &target]);
    tokens.clear();
    let out = env.burrow(["push", &target]).success();
    assert!(out.stdout.contains("digest: sha256:"), "{}", out.describe());
    let asked = tokens.requests();
    assert!(
        asked.iter().any(|r| r
            .scopes
            .iter()
            .any(|s| s == "repository:team/copy:pull,push")),
        "{asked:?}"
    );
    assert!(
        asked.len() <= 2,
        "a token per blob instead of one per scope: {asked:?}"
    );
    assert!(asked.iter().all(|r| r.status == 200), "{asked:?}");

    // skopeo reads what burrow pushed.
    let inspect = run_ok({
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--tls-verify=false", "--creds", "me:s3cret"])
            .arg(format!("docker://{target}"));
        c
    });
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(5), "{inspect}");
}

#[test]
fn bearer_push_without_push_access_is_refused() {
    let Some((tokens, reg)) = start() else {
        return;
    };
    let Some(layout) = layered(1) else {
        return;
    };
    skopeo_push(&reg, layout.path(), "team/app:1");
    let env = setup!(Env::empty());
    login(&env, &reg, &READER);
    let reference = reg.name("team/app:1");
    env.burrow(["pull", &reference]).success();
    let target = reg.name("team/app:2");
    env.ok(["tag", &reference, &target]);
    tokens.clear();
    let out = env.burrow(["push", &target]).burrow_error();
    // The scope is quoted as the registry's challenge gives it, whose action
    // order varies from one answer to the next.
    let refused = |actions: &str| {
        out.stderr.contains(&format!(
            "did not grant user \"reader\" repository:team/app:{actions}"
        ))
    };
    assert!(
        out.stderr.contains(&target)
            && out.stderr.contains("access denied")
            && (refused("pull,push") || refused("push,pull")),
        "{}",
        out.describe()
    );
    let asked = tokens.requests();
    assert!(
        asked.iter().any(|r| r
            .scopes
            .iter()
            .any(|s| s == "repository:team/app:pull,push")),
        "{asked:?}"
    );
}
