//! Registries over HTTPS: a real `docker-registry` with a certificate from a
//! CA the test makes with the `openssl` CLI. Loopback registries are
//! insecure by default (HTTPS unchecked, else plain HTTP, as Docker does);
//! `--tls-verify=true` checks the certificate against the system's store
//! and `~/.config/burrow/certs.d/HOST:PORT/`, the rootless way to trust a
//! private CA.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::registry::{Registry, have};
use crate::util::{Env, must_run};

/// A CA and a server certificate for 127.0.0.1 signed by it, in a folder
/// every user can read (the test user copies the CA from it).
struct Certificates(PathBuf);

impl Certificates {
    fn make() -> Option<Certificates> {
        if !have("openssl") {
            assert!(
                !must_run(),
                "openssl is not installed (apt-get install openssl)"
            );
            eprintln!("skipped: openssl is not installed (apt-get install openssl)");
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "burrow-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=burrow test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(Certificates(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn https_registries_are_verified_when_asked_and_trusted_through_certs_d() {
    let Some(certs) = Certificates::make() else {
        return;
    };
    let Some(reg) = Registry::with_tls(certs.path()) else {
        return;
    };
    let env = setup!(Env::new());
    let name = reg.name("tls/bb:1");
    env.ok(["tag", "busybox", &name]);

    // On loopback, as in Docker: HTTPS without checking the certificate.
    env.ok(["push", &name]);
    env.ok(["rmi", &name]);

    // Checked: the test CA is in no store yet.
    let out = env
        .burrow(["pull", "--tls-verify=true", &name])
        .burrow_error();
    assert!(
        out.stderr
            .contains(&format!("TLS with registry {}", reg.host()))
            && out.stderr.contains("certs.d"),
        "{}",
        out.describe()
    );
    let left = env.burrow(["image", "inspect", &name]);
    assert_ne!(
        left.code,
        0,
        "a refused pull left an image: {}",
        left.describe()
    );

    // Trusted through the system store's variables, as OpenSSL reads them.
    let ca = certs.path().join("ca.crt");
    env.burrow_with_env(
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
        ["pull", "--tls-verify=true", &name],
    )
    .success();
    env.ok(["rmi", &name]);

    // Trusted for this registry only, by a file the user owns.
    let ca_dir = env.home().join(".config/burrow/certs.d").join(reg.host());
    env.host("mkdir", ["-p".as_ref(), ca_dir.as_os_str()])
        .success();
    env.host(
        "cp",
        [certs.path().join("ca.crt").as_os_str(), ca_dir.as_os_str()],
    )
    .success();
    env.ok(["pull", "--tls-verify=true", &name]);
    let out = env.ok(["run", "--rm", &name, "echo", "verified"]);
    assert_eq!(out.trim(), "verified");
}

#[test]
fn a_plain_http_registry_is_named_as_such_when_tls_is_required() {
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let env = setup!(Env::new());
    let name = reg.name("plain/bb:1");
    env.ok(["tag", "busybox", &name]);
    // Loopback without the flag falls back to plain HTTP.
    env.ok(["push", &name]);
    let out = env
        .burrow(["pull", "--tls-verify=true", &name])
        .burrow_error();
    assert!(
        out.stderr.contains("does not speak TLS") && out.stderr.contains("--tls-verify=false"),
        "{}",
        out.describe()
    );
}
