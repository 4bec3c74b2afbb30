//! `run` in the foreground: exit codes, environment, working directory,
//! users, standard input, signals.

use nix::sys::signal::Signal;

use crate::util::{Env, secs};

#[test]
fn exit_codes_are_the_commands_own() {
    let env = setup!(Env::new());
    env.burrow(["run", "--rm", "busybox", "true"]).success();
    env.burrow(["run", "--rm", "busybox", "sh", "-c", "exit 3"])
        .expect_code(3);
    env.burrow(["run", "--rm", "busybox", "false"])
        .expect_code(1);
}

#[test]
fn a_command_that_is_not_executable_exits_126() {
    let env = setup!(Env::new());
    let out = env
        .burrow(["run", "--rm", "busybox", "/etc/passwd"])
        .expect_code(126);
    assert!(!out.stderr.is_empty(), "{}", out.describe());
}

#[test]
fn a_command_that_is_not_found_exits_127() {
    let env = setup!(Env::new());
    let out = env
        .burrow(["run", "--rm", "busybox", "no-such-command"])
        .expect_code(127);
    assert!(out.stderr.contains("no-such-command"), "{}", out.describe());
    env.burrow(["run", "--rm", "busybox", "/no/such/path"])
        .expect_code(127);
}

#[test]
fn an_image_without_a_command_needs_one() {
    // `import` sets no CMD, as docker import: run without a command is an error.
    let env = setup!(Env::new());
    env.burrow(["run", "--rm", "busybox"]).burrow_error();
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let env = setup!(Env::new());
    let out = env
        .burrow([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ])
        .success();
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
}

#[test]
fn environment_and_working_directory() {
    let env = setup!(Env::new());
    let out = env.ok([
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-e",
        "EMPTY=",
        "-e",
        "LOGNAME",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; echo \"[$EMPTY]\"; echo $LOGNAME; pwd; echo $HOME; echo $PATH",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["hi", "[]", env.user.name.as_str(), "/tmp", "/root"],
        "{out}"
    );
    assert!(
        lines[5].split(':').any(|p| p == "/bin"),
        "PATH has /bin: {out}"
    );
}

#[test]
fn a_missing_working_directory_is_created() {
    let env = setup!(Env::new());
    assert_eq!(
        env.ok(["run", "--rm", "-w", "/new/dir", "busybox", "pwd"]),
        "/new/dir\n"
    );
}

#[test]
fn hostname_defaults_to_the_short_id() {
    let env = setup!(Env::new());
    let id = env.run_detached([
        "busybox",
        "sh",
        "-c",
        "hostname; echo $HOSTNAME; cat /etc/hostname",
    ]);
    env.ok(["wait", &id]);
    let short = &id[..12];
    assert_eq!(
        env.ok(["logs", &id]),
        format!("{short}\n{short}\n{short}\n")
    );
}

#[test]
fn entrypoint_replaces_the_command_head() {
    let env = setup!(Env::new());
    assert_eq!(
        env.ok([
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "busybox",
            "hello",
            "world"
        ]),
        "hello world\n"
    );
}

#[test]
fn invalid_options_fail_with_125() {
    let env = setup!(Env::new());
    let dir = env.dir.to_str().unwrap().to_string();
    for args in [
        vec!["-e", "=novalue"],
        vec!["-v", &format!("{dir}:relative/path")],
        vec!["--user", "nosuchuser"],
        vec!["--network", "bogus"],
        vec!["--cap-add", "NOT_A_CAP"],
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(&args);
        full.extend(["busybox", "true"]);
        env.burrow(&full).burrow_error();
    }
    assert_eq!(
        env.ok(["ps", "-aq"]),
        "",
        "failed runs leave no container behind"
    );
}

#[test]
fn interactive_passes_standard_input() {
    let env = setup!(Env::new());
    let out = env.burrow_with_stdin(
        ["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo end"],
        b"hello\nworld\n",
    );
    assert_eq!(out.success().stdout, "hello\nworld\nend\n");
    // Without -i the container's stdin is empty, and cat ends at once.
    let out = env.burrow_with_stdin(["run", "--rm", "busybox", "cat"], b"ignored\n");
    assert_eq!(out.success().stdout, "");
}

#[test]
fn sigint_is_forwarded_to_a_foreground_container() {
    let env = setup!(Env::new());
    let mut run = env.spawn([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.1; done",
    ]);
    run.wait_for_stdout("ready", secs(15));
    run.signal(Signal::SIGINT);
    let out = run.finish(secs(10)).expect_code(7);
    assert!(out.stdout.contains("got-int"), "{}", out.describe());
}

#[test]
fn each_container_gets_its_own_root_filesystem() {
    let env = setup!(Env::new());
    env.ok([
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "echo x > /written; mkdir /etc/new",
    ]);
    let out = env.burrow(["run", "--rm", "busybox", "test", "-e", "/written"]);
    assert_eq!(
        out.code,
        1,
        "another container must not see the first one's files\n{}",
        out.describe()
    );
    // ...but the same container keeps them across a restart.
    let out = env.burrow(["start", "-a", "writer"]);
    assert_ne!(
        out.code, 0,
        "mkdir /etc/new fails the second time: the file system persisted"
    );
}

#[test]
fn user_by_name_and_id() {
    let env = setup!(Env::subuid());
    let id = env.ok(["run", "--rm", "--user", "user", "busybox", "id"]);
    assert!(id.starts_with("uid=1000(user) gid=1000(user)"), "{id}");
    let out = env.ok([
        "run",
        "--rm",
        "--user",
        "1000:1000",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "id; hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("uid=1000(user) gid=1000(user)"),
        "{out}"
    );
    assert_eq!(lines[1], "box", "{out}");
    let out = env.ok(["run", "--rm", "--user", "4242:4343", "busybox", "id"]);
    assert!(
        out.starts_with("uid=4242 gid=4343"),
        "a numeric id needs no passwd entry: {out}"
    );
    // The user's home directory is HOME.
    assert_eq!(
        env.ok([
            "run",
            "--rm",
            "--user",
            "user",
            "busybox",
            "sh",
            "-c",
            "echo $HOME"
        ]),
        "/home/user\n"
    );
}
