//! `exec`: a command inside a running container's namespaces, with its
//! environment, and Docker's exit codes.

use crate::util::*;

#[test]
fn exec_joins_the_container() {
    let env = setup!(Env::subuid());
    env.run_detached([
        "--name",
        "ex",
        "-e",
        "GREETING=hi",
        "--hostname",
        "box",
        "busybox",
        "sleep",
        "100",
    ]);
    let out = env.ok([
        "exec", "ex", "sh", "-c",
        "echo $GREETING; hostname; id -u; ps -o pid,comm | grep -c sleep; grep CapEff /proc/self/status",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["hi", "box", "0", "1"], "{out}");
    assert!(out.contains("00000000a80425fb"), "{out}");
    // Overrides: user, working folder, environment.
    let out = env.ok([
        "exec",
        "-u",
        "user",
        "-w",
        "/tmp",
        "-e",
        "X=1",
        "ex",
        "sh",
        "-c",
        "id -u; pwd; echo $X",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000", "/tmp", "1"],
        "{out}"
    );
    // Files written by exec are the container's.
    env.ok(["exec", "ex", "sh", "-c", "echo from-exec > /tmp/note"]);
    assert_eq!(env.ok(["exec", "ex", "cat", "/tmp/note"]), "from-exec\n");
    // Exit codes: the command's, 127 not found, 125 for burrow's errors.
    env.burrow(["exec", "ex", "sh", "-c", "exit 4"])
        .expect_code(4);
    let out = env.burrow(["exec", "ex", "nosuch"]).expect_code(127);
    assert!(
        out.stderr.contains("executable file not found"),
        "{}",
        out.describe()
    );
    env.burrow(["exec", "nothere", "true"]).burrow_error();
    env.ok(["stop", "-t", "0", "ex"]);
    let out = env.burrow(["exec", "ex", "true"]).burrow_error();
    assert!(out.stderr.contains("is not running"), "{}", out.describe());
}
