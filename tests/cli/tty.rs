//! `run -t`: the command's own pseudo-terminal, made in the container.

use crate::util::{Env, eventually, secs};

#[test]
fn run_t_gives_the_command_a_terminal_of_its_own() {
    let env = setup!(Env::new());
    // No terminal here: the container's still is one, 24 by 80, and its
    // output has a terminal's line ends.
    let out = env.ok([
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "tty; stty size; test -t 0 && echo in-is-tty",
    ]);
    assert_eq!(out, "/dev/pts/0\r\n24 80\r\nin-is-tty\r\n");

    // In the background its output goes to the log, and inspect says so.
    env.run_detached([
        "--name",
        "bg",
        "-t",
        "busybox",
        "sh",
        "-c",
        "tty; sleep 100",
    ]);
    eventually(secs(10), "the terminal's output in the log", || {
        env.ok(["logs", "bg"]).contains("/dev/pts/0")
    });
    assert_eq!(
        env.ok(["inspect", "-f", "{{.Config.Tty}}", "bg"]).trim(),
        "true"
    );
    // exec into it uses the caller's streams, unless -t gives the command a
    // terminal of its own (the container's first one is taken: pts/1).
    assert_eq!(
        env.ok(["exec", "bg", "sh", "-c", "test -t 0 || echo not-a-tty"]),
        "not-a-tty\n"
    );
    assert_eq!(
        env.ok(["exec", "-t", "bg", "sh", "-c", "tty; stty size"]),
        "/dev/pts/1\r\n24 80\r\n"
    );
    // A background process keeping that terminal open does not hold exec up.
    let started = std::time::Instant::now();
    env.burrow(["exec", "-t", "bg", "sh", "-c", "sleep 30 & exit 4"])
        .expect_code(4);
    assert!(
        started.elapsed() < secs(20),
        "exec -t waited for a background process"
    );
}

#[test]
fn run_it_on_a_terminal_takes_its_size_and_keys_and_restores_it() {
    let env = setup!(Env::new());
    let (out, code, restored) = env.burrow_on_terminal(
        [
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "stty size; echo ready; read line; echo got:$line",
        ],
        (30, 100),
        "ready",
        b"hello\r",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("30 100\r\n"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
    assert!(restored, "the terminal was left in raw mode: {out}");

    // Ctrl-C is a byte for the container's terminal, which makes it the
    // command's SIGINT there.
    let (out, code, restored) = env.burrow_on_terminal(
        [
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 100",
        ],
        (24, 80),
        "ready",
        b"\x03",
    );
    assert_eq!(code, 130, "{out}");
    assert!(restored, "{out}");
}

#[test]
fn exec_it_on_a_terminal_takes_its_size_and_keys() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "box", "busybox", "sleep", "100"]);
    let (out, code, restored) = env.burrow_on_terminal(
        [
            "exec",
            "-it",
            "box",
            "sh",
            "-c",
            "tty; stty size; echo ready; read line; echo got:$line; exit 3",
        ],
        (40, 120),
        "ready",
        b"hello\r",
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("/dev/pts/0\r\n40 120\r\n"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
    assert!(restored, "the terminal was left in raw mode: {out}");
}
