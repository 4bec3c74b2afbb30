//! `diff`, `commit`, `build` and `history`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::Env;

/// A context folder in the test's home with `files` (path, content).
fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.home().join(name);
    for (path, text) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
    }
    dir
}

fn build(env: &Env, args: &[&str], ctx: &Path) -> crate::util::Output {
    let mut v: Vec<String> = vec!["build".into()];
    v.extend(args.iter().map(|s| s.to_string()));
    v.push(ctx.display().to_string());
    env.burrow(&v)
}

#[test]
fn diff_lists_changes_and_commit_makes_an_image_with_them() {
    let env = setup!(Env::new());
    env.ok([
        "run",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo hi > /etc/motd; rm /bin/ls; mkdir /data",
    ]);
    let diff = env.ok(["diff", "box"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["C /etc", "A /etc/motd", "C /bin", "D /bin/ls", "A /data"] {
        assert!(lines.contains(&want), "diff lacks {want:?}:\n{diff}");
    }
    assert!(
        !diff.contains("/etc/hosts"),
        "mount points are not changes:\n{diff}"
    );
    let id = env.ok(["commit", "-m", "snap", "-c", "ENV SNAP=1", "box", "snap:1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = env.ok([
        "run",
        "--rm",
        "snap:1",
        "sh",
        "-c",
        "cat /etc/motd; test -d /data && echo data; test -e /bin/ls || echo no-ls; echo $SNAP",
    ]);
    assert_eq!(out, "hi\ndata\nno-ls\n1\n");
    let history = env.ok(["history", "snap:1"]);
    assert!(
        history.lines().nth(1).unwrap_or_default().contains("snap"),
        "{history}"
    );
}

const EVERYTHING: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS base
ARG GREETING=hello
ENV APP=/app NAME="two words"
WORKDIR $APP
COPY hello.txt ./
COPY sub/ /app/sub/
ADD files.tar /opt/
RUN echo "$GREETING $NAME" > /app/run.txt && \
    rm /bin/ls
USER 0:0
LABEL version="1.0" \
      maintainer=me
EXPOSE 5000 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-c"]
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/hello.txt /app/run.txt /app/sub/s.txt /opt/d/t.txt; test -e /bin/ls || echo no-ls"]

FROM busybox AS final
COPY --from=base --chmod=600 /app/run.txt /copied.txt
CMD ["cat", "/copied.txt"]
"#;

fn everything_context(env: &Env) -> PathBuf {
    let ctx = context(
        env,
        "ctx",
        &[
            ("Dockerfile", EVERYTHING),
            ("hello.txt", "hello-file\n"),
            ("sub/s.txt", "sub-file\n"),
            ("x.log", "ignored\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let src = env.home().join("tarsrc/d");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("t.txt"), "from-tar\n").unwrap();
    let tar = fs::File::create(ctx.join("files.tar")).unwrap();
    let mut b = tar::Builder::new(tar);
    b.append_dir_all("d", &src).unwrap();
    b.finish().unwrap();
    ctx
}

#[test]
fn a_dockerfile_with_every_instruction_then_cache_and_target() {
    let env = setup!(Env::new());
    let ctx = everything_context(&env);
    let out = build(
        &env,
        &[
            "-t",
            "app:1",
            "--target",
            "base",
            "--build-arg",
            "GREETING=hey",
        ],
        &ctx,
    )
    .success();
    assert!(
        out.stdout.contains("Step 1/18 : FROM $BASE AS base"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains(" ---> Running in "),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("Successfully tagged app:1"),
        "{}",
        out.describe()
    );
    let run = env.ok(["run", "--rm", "app:1"]);
    assert_eq!(
        run,
        "hello-file\nhey two words\nsub-file\nfrom-tar\nno-ls\n"
    );
    let cfg = &env.inspect("app:1")["Config"];
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Labels"]["version"], "1.0");
    assert!(cfg["ExposedPorts"].to_string().contains("53/udp"), "{cfg}");
    assert!(cfg["Env"].to_string().contains("NAME=two words"), "{cfg}");

    // Everything again: every step from the cache, the same image.
    let again = build(
        &env,
        &[
            "-t",
            "app:1",
            "--target",
            "base",
            "--build-arg",
            "GREETING=hey",
        ],
        &ctx,
    )
    .success();
    assert_eq!(
        again.stdout.matches("Using cache").count(),
        16,
        "{}",
        again.describe()
    );
    assert!(!again.stdout.contains("Running in"), "{}", again.describe());
    let id = |o: &str| o.lines().last().unwrap_or_default().to_string();
    assert_eq!(id(&out.stdout), id(&again.stdout));

    // One context file changed: the steps before its COPY stay cached.
    fs::write(ctx.join("sub/s.txt"), "changed\n").unwrap();
    let changed = build(
        &env,
        &[
            "-t",
            "app:1",
            "--target",
            "base",
            "--build-arg",
            "GREETING=hey",
        ],
        &ctx,
    )
    .success();
    assert_eq!(
        changed.stdout.matches("Using cache").count(),
        3,
        "{}",
        changed.describe()
    );
    assert!(
        changed.stdout.contains("Running in"),
        "{}",
        changed.describe()
    );
    assert!(env.ok(["run", "--rm", "app:1"]).contains("changed"));

    // A .dockerignore'd file cannot be copied.
    let ignored = context(
        &env,
        "ign",
        &[
            ("Dockerfile", "FROM busybox\nCOPY x.log /\n"),
            ("x.log", ""),
            (".dockerignore", "*.log\n"),
        ],
    );
    let out = build(&env, &[], &ignored);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("x.log"), "{}", out.describe());
}

#[test]
fn multi_stage_copy_from_and_history() {
    let env = setup!(Env::new());
    let ctx = everything_context(&env);
    let out = build(&env, &["-q", "-t", "final:1"], &ctx).success();
    assert!(
        out.stdout.trim().starts_with("sha256:"),
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "-q prints only the id: {}",
        out.describe()
    );
    assert_eq!(env.ok(["run", "--rm", "final:1"]), "hello two words\n");
    let history = env.ok(["history", "final:1"]);
    let header = history.lines().next().unwrap_or_default();
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(col), "{history}");
    }
    assert!(history.contains("CMD [\"cat\""), "{history}");
    assert!(history.contains("<missing>"), "{history}");
}

#[test]
fn a_failing_run_exits_1_and_tags_nothing() {
    let env = setup!(Env::new());
    let ctx = context(
        &env,
        "fail",
        &[("Dockerfile", "FROM busybox\nRUN echo before\nRUN exit 3\n")],
    );
    let out = build(&env, &["-t", "broken:1"], &ctx).expect_code(1);
    assert!(
        out.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("before"), "{}", out.describe());
    assert!(!env.ok(["images"]).contains("broken"));
    assert_eq!(env.ok(["ps", "-aq"]), "", "build containers are removed");
}

#[test]
fn a_dockerfile_on_stdin_has_no_context() {
    let env = setup!(Env::new());
    let file =
        b"FROM busybox\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /who\nCMD [\"cat\", \"/who\"]\n";
    let out = env
        .burrow_with_stdin(
            ["build", "-t", "piped:1", "--build-arg", "WHO=stdin", "-"],
            file,
        )
        .success();
    assert!(
        out.stdout.contains("Successfully tagged piped:1"),
        "{}",
        out.describe()
    );
    assert_eq!(env.ok(["run", "--rm", "piped:1"]), "hi stdin\n");
    let copy = env.burrow_with_stdin(["build", "-"], b"FROM busybox\nCOPY a /\n");
    assert_ne!(copy.code, 0, "{}", copy.describe());
    assert!(copy.stderr.contains("context"), "{}", copy.describe());
}

#[test]
fn shell_is_recorded_and_runs_the_shell_form_in_later_stages() {
    let env = setup!(Env::new());
    let ctx = context(
        &env,
        "shell",
        &[(
            "Dockerfile",
            "FROM busybox AS base\n\
             RUN printf '#!/bin/sh\\necho \"via-myshell: $1\" >> /ran\\n' > /bin/myshell && chmod +x /bin/myshell\n\
             SHELL [\"/bin/myshell\"]\n\
             RUN first\n\
             FROM base\n\
             RUN second\n\
             CMD [\"cat\", \"/ran\"]\n",
        )],
    );
    build(&env, &["-t", "shelled:1"], &ctx).success();
    assert_eq!(
        env.ok(["run", "--rm", "shelled:1"]),
        "via-myshell: first\nvia-myshell: second\n"
    );
    let labels = &env.inspect("shelled:1")["Config"]["Labels"];
    assert_eq!(
        labels["org.burrow.shell"], r#"["/bin/myshell"]"#,
        "{labels}"
    );
    // A build FROM the image inherits its SHELL.
    let child = context(
        &env,
        "child",
        &[("Dockerfile", "FROM shelled:1\nRUN third\n")],
    );
    build(&env, &["-t", "child:1"], &child).success();
    assert!(
        env.ok(["run", "--rm", "child:1"])
            .ends_with("via-myshell: third\n")
    );
}

#[test]
fn images_hides_build_steps_unless_all() {
    let env = setup!(Env::new());
    let ctx = context(
        &env,
        "steps",
        &[(
            "Dockerfile",
            "FROM busybox\nENV A=1\nRUN echo one > /one\nRUN echo two > /two\n",
        )],
    );
    build(&env, &["-t", "stepped:1"], &ctx).success();
    let none = |out: &str| out.lines().filter(|l| l.starts_with("<none>")).count();
    let images = env.ok(["images"]);
    assert_eq!(none(&images), 0, "{images}");
    assert!(images.contains("stepped"), "{images}");
    let all = env.ok(["images", "-a"]);
    assert_eq!(none(&all), 2, "ENV and the first RUN are steps:\n{all}");
    // An untagged build's result is listed (as <none>), its steps are not;
    // here its result is a step of the build above, found in the cache.
    let prefix = context(
        &env,
        "prefix",
        &[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo one > /one\n")],
    );
    let id = build(&env, &["-q"], &prefix).success().stdout;
    let images = env.ok(["images", "-q", "--no-trunc"]);
    assert!(images.contains(id.trim()), "{images}");
    assert_eq!(none(&env.ok(["images"])), 1);
}

#[test]
fn add_fetches_a_url() {
    use std::io::{Read, Write};
    let env = setup!(Env::new());
    // A one-file web server on the host's loopback, for a bounded number of
    // requests (each ADD fetches once per build).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let body = "fetched over http\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dockerfile = format!(
        "FROM busybox\nADD http://127.0.0.1:{port}/files/hello.txt?x=1 /opt/\nADD http://127.0.0.1:{port}/other /opt/renamed\n"
    );
    let ctx = context(&env, "addurl", &[("Dockerfile", &dockerfile)]);
    build(&env, &["-q", "-t", "addurl"], &ctx).success();
    let out = env.ok([
        "run",
        "--rm",
        "--network",
        "none",
        "addurl",
        "sh",
        "-c",
        "cat /opt/hello.txt /opt/renamed; stat -c '%a' /opt/hello.txt",
    ]);
    assert_eq!(out, "fetched over http\nfetched over http\n600\n");
    // COPY refuses URLs.
    let bad = context(
        &env,
        "copyurl",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nCOPY http://127.0.0.1:{port}/x /x\n"),
        )],
    );
    let out = build(&env, &[], &bad);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("COPY does not take URLs"),
        "{}",
        out.describe()
    );
}

#[test]
fn onbuild_triggers_run_in_builds_from_the_image() {
    let env = setup!(Env::new());
    let base = context(
        &env,
        "onbase",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY marker /marker\nONBUILD RUN echo triggered > /triggered\n",
        )],
    );
    build(&env, &["-q", "-t", "onbase"], &base).success();
    // The base itself did not run its triggers.
    env.burrow([
        "run",
        "--rm",
        "--network",
        "none",
        "onbase",
        "test",
        "-e",
        "/triggered",
    ])
    .expect_code(1);
    let child = context(
        &env,
        "onchild",
        &[
            ("Dockerfile", "FROM onbase\nRUN cat /triggered /marker\n"),
            ("marker", "from the child's context\n"),
        ],
    );
    let out = build(&env, &["-t", "onchild"], &child).success();
    assert!(
        out.stdout.contains("Executing 2 build trigger"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("from the child's context"),
        "{}",
        out.describe()
    );
    // Triggers are consumed: a grandchild does not run them again.
    let grand = context(
        &env,
        "ongrand",
        &[("Dockerfile", "FROM onchild\nRUN true\n")],
    );
    let out = build(&env, &["-t", "ongrand"], &grand).success();
    assert!(!out.stdout.contains("build trigger"), "{}", out.describe());
}

#[test]
fn healthcheck_shell_and_onbuild_are_in_dockers_config_fields() {
    let env = setup!(Env::new());
    let ctx = context(
        &env,
        "health",
        &[(
            "Dockerfile",
            "FROM busybox\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK --interval=5s --retries=3 CMD true\nONBUILD RUN echo hi\n",
        )],
    );
    let id = build(&env, &["-q", "-t", "health"], &ctx).success().stdout;
    let hex = id.trim().trim_start_matches("sha256:");
    let blob = env.data_dir().join("images/blobs/sha256").join(hex);
    let config: serde_json::Value = serde_json::from_slice(&fs::read(&blob).unwrap()).unwrap();
    let c = &config["config"];
    assert_eq!(
        c["Shell"],
        serde_json::json!(["/bin/sh", "-ec"]),
        "{config}"
    );
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo hi"]), "{config}");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"]),
        "{config}"
    );
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64, "{config}");
    assert_eq!(c["Healthcheck"]["Retries"], 3, "{config}");
    // `image inspect` shows them as `docker image inspect` does.
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "inspect", "health"])).unwrap();
    let shown = &shown[0]["Config"];
    for key in ["Shell", "OnBuild", "Healthcheck"] {
        assert_eq!(shown[key], c[key], "{key} in {shown}");
    }
}

#[test]
fn from_platform_takes_that_platform_from_the_registry() {
    use crate::registry::{Layout, Registry};
    let Some(reg) = Registry::start(&[]) else {
        return;
    };
    let Some(layout) = Layout::busybox(&["amd64", "arm64"]) else {
        return;
    };
    reg.skopeo_push(layout.path(), "multi:1", None);
    let env = setup!(Env::empty());
    let base = reg.name("multi:1");
    let arch = |image: &str| {
        let out = env.ok(["image", "inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Architecture"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // A foreign platform is pulled for that platform; config steps need no
    // emulation.
    let ctx = context(
        &env,
        "plat-arm",
        &[(
            "Dockerfile",
            &format!("FROM --platform=linux/arm64 {base}\nLABEL built=yes\n"),
        )],
    );
    build(&env, &["-q", "-t", "onarm"], &ctx).success();
    assert_eq!(arch("onarm"), "arm64");
    // $BUILDPLATFORM is the host's.
    let ctx = context(
        &env,
        "plat-host",
        &[(
            "Dockerfile",
            &format!("FROM --platform=$BUILDPLATFORM {base}\nLABEL built=yes\n"),
        )],
    );
    build(&env, &["-q", "--pull", "-t", "onhost"], &ctx).success();
    assert_ne!(arch("onhost"), "arm64");
    let bad = context(
        &env,
        "plat-bad",
        &[("Dockerfile", &format!("FROM --platform=linux {base}\n"))],
    );
    let out = build(&env, &[], &bad);
    assert!(
        out.stderr.contains("invalid platform"),
        "{}",
        out.describe()
    );
}

#[test]
fn builds_are_reproducible_under_source_date_epoch() {
    let env = setup!(Env::new());
    let ctx = context(
        &env,
        "repro",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a /a\nRUN mkdir /made && date > /made/now && touch /made/x\n",
            ),
            ("a", "content\n"),
        ],
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let out = env
                .burrow_with_env(&epoch, ["build", "-q", "--no-cache", ctx.to_str().unwrap()])
                .success();
            out.stdout.trim().to_string()
        })
        .collect();
    let layers = |id: &str| {
        let out = env.ok(["image", "inspect", id]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["RootFS"]["diff_ids"].clone()
    };
    // `date` writes a different time into /made/now each run, so that layer
    // differs; the COPY layer and every earlier one must not.
    let (first, second) = (layers(&ids[0]), layers(&ids[1]));
    let (first, second) = (first.as_array().unwrap(), second.as_array().unwrap());
    assert_eq!(first.len(), second.len());
    assert_eq!(
        first[..first.len() - 1],
        second[..second.len() - 1],
        "COPY layers differ"
    );
    // Without the date, the RUN layer is identical too.
    let ctx2 = context(
        &env,
        "repro2",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /made && touch /made/x && echo same > /made/y\n",
        )],
    );
    let ids2: Vec<String> = (0..2)
        .map(|_| {
            env.burrow_with_env(
                &epoch,
                ["build", "-q", "--no-cache", ctx2.to_str().unwrap()],
            )
            .success()
            .stdout
            .trim()
            .to_string()
        })
        .collect();
    assert_eq!(
        layers(&ids2[0]),
        layers(&ids2[1]),
        "RUN layers differ under SOURCE_DATE_EPOCH"
    );
    assert_eq!(
        ids2[0], ids2[1],
        "the same inputs must give the same image id"
    );
}
