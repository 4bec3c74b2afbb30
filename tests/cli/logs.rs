//! `logs`: everything, --tail, -t, -f, and the two streams.

use std::time::Instant;

use crate::util::{Env, eventually, secs};

const FIVE_LINES: &str = "for i in 1 2 3 4 5; do echo line$i; done";

#[test]
fn logs_prints_what_the_container_printed() {
    let env = setup!(Env::new());
    env.ok(["run", "--name", "five", "busybox", "sh", "-c", FIVE_LINES]);
    assert_eq!(
        env.ok(["logs", "five"]),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(env.ok(["logs", "--tail", "2", "five"]), "line4\nline5\n");
    assert_eq!(env.ok(["logs", "-n", "1", "five"]), "line5\n");
    assert_eq!(env.ok(["logs", "--tail", "0", "five"]), "");
    assert_eq!(env.ok(["logs", "--tail", "all", "five"]).lines().count(), 5);
}

#[test]
fn logs_keeps_stdout_and_stderr_apart() {
    let env = setup!(Env::new());
    env.ok([
        "run",
        "--name",
        "both",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let out = env.burrow(["logs", "both"]).success();
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert_eq!(out.stderr, "err\n", "{}", out.describe());
}

#[test]
fn logs_timestamps_prefix_each_line() {
    let env = setup!(Env::new());
    env.ok([
        "run",
        "--name",
        "stamped",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b",
    ]);
    let out = env.ok(["logs", "-t", "stamped"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, text) in lines.iter().zip(["a", "b"]) {
        let (stamp, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{out}"));
        assert_eq!(rest, text, "{out}");
        // RFC 3339 with nanoseconds, as Docker: 2024-05-01T12:34:56.123456789Z
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
            "{out}"
        );
        assert!(stamp.ends_with('Z') || stamp.contains('+'), "{out}");
    }
}

#[test]
fn logs_follow_ends_when_the_container_exits() {
    let env = setup!(Env::new());
    env.run_detached([
        "--name",
        "slow",
        "busybox",
        "sh",
        "-c",
        "echo first; sleep 1; echo second",
    ]);
    let start = Instant::now();
    let mut follow = env.spawn(["logs", "-f", "slow"]);
    follow.wait_for_stdout("first", secs(10));
    let out = follow.finish(secs(15)).success();
    assert_eq!(out.stdout, "first\nsecond\n");
    assert!(start.elapsed() < secs(10));
}

#[test]
fn logs_follow_of_an_exited_container_returns_at_once() {
    let env = setup!(Env::new());
    env.ok(["run", "--name", "over", "busybox", "echo", "done"]);
    let out = env.spawn(["logs", "-f", "over"]).finish(secs(5)).success();
    assert_eq!(out.stdout, "done\n");
}

#[test]
fn logs_of_a_detached_container_grow() {
    let env = setup!(Env::new());
    env.run_detached([
        "--name",
        "ticker",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; pwd; sleep 100",
    ]);
    eventually(secs(10), "the greeting in the logs", || {
        env.ok(["logs", "ticker"]) == "hi\n/tmp\n"
    });
}
