//! create, start, stop, restart, kill, rm, wait; names and ids; a dead
//! supervisor; many containers at once.

use std::collections::HashSet;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Env, eventually, process_alive, secs};

/// A command that runs until stopped and ignores SIGTERM (sleep inherits the ignore).
const IGNORES_TERM: &str = "trap '' TERM; echo ready; sleep 100";

fn pid_of(env: &Env, name: &str) -> i64 {
    env.inspect(name)["State"]["Pid"].as_i64().unwrap_or(0)
}

#[test]
fn run_detached_is_running_until_it_exits() {
    let env = setup!(Env::new());
    let id = env.run_detached(["--name", "sleeper", "busybox", "sleep", "100"]);
    let state = &env.inspect("sleeper")["State"];
    assert_eq!(state["Status"], "running", "{state}");
    assert_eq!(state["Running"], true, "{state}");
    let pid = state["Pid"].as_i64().unwrap_or(0);
    assert!(
        pid > 0 && process_alive(pid as i32),
        "State.Pid is the container's process on the host: {state}"
    );
    assert_eq!(
        env.inspect(&id)["Name"]
            .as_str()
            .map(|n| n.trim_start_matches('/')),
        Some("sleeper")
    );
}

#[test]
fn create_then_start_then_wait() {
    let env = setup!(Env::new());
    let out = env.ok([
        "create",
        "--name",
        "later",
        "busybox",
        "sh",
        "-c",
        "echo hi; exit 4",
    ]);
    assert!(
        crate::util::is_full_id(out.trim()),
        "create prints the id: {out}"
    );
    assert_eq!(env.status("later"), "created");
    assert_eq!(
        env.ok(["start", "later"]).trim(),
        "later",
        "start prints its argument"
    );
    assert_eq!(env.ok(["wait", "later"]).trim(), "4");
    assert_eq!(env.status("later"), "exited");
    assert_eq!(env.inspect("later")["State"]["ExitCode"], 4);
    assert_eq!(env.ok(["logs", "later"]), "hi\n");
}

#[test]
fn start_attach_returns_the_exit_code() {
    let env = setup!(Env::new());
    env.ok([
        "create",
        "--name",
        "att",
        "busybox",
        "sh",
        "-c",
        "echo attached; exit 3",
    ]);
    let out = env.burrow(["start", "-a", "att"]).expect_code(3);
    assert_eq!(out.stdout, "attached\n");
}

#[test]
fn stop_kills_after_the_grace_period() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "stubborn", "busybox", "sh", "-c", IGNORES_TERM]);
    eventually(secs(10), "the container to start", || {
        env.ok(["logs", "stubborn"]).contains("ready")
    });
    let start = Instant::now();
    assert_eq!(env.ok(["stop", "-t", "1", "stubborn"]).trim(), "stubborn");
    let took = start.elapsed();
    assert!(took >= secs(1) && took < secs(6), "stop -t 1 took {took:?}");
    let state = &env.inspect("stubborn")["State"];
    assert_eq!(state["Status"], "exited", "{state}");
    assert_eq!(state["Running"], false, "{state}");
    assert_eq!(state["ExitCode"], 137, "killed by SIGKILL: {state}");
    let ps = env.ok(["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("stubborn") && l.contains("Exited (137)")),
        "{ps}"
    );
}

#[test]
fn stop_of_a_process_that_obeys_sigterm_is_quick() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "polite", "busybox", "sleep", "100"]);
    let start = Instant::now();
    env.ok(["stop", "polite"]);
    assert!(
        start.elapsed() < secs(5),
        "stop waited {:?} for a process that obeys SIGTERM",
        start.elapsed()
    );
    assert_eq!(
        env.inspect("polite")["State"]["ExitCode"],
        143,
        "killed by SIGTERM"
    );
}

#[test]
fn a_stopped_container_starts_again() {
    let env = setup!(Env::new());
    env.run_detached([
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 100",
    ]);
    let first = pid_of(&env, "again");
    env.ok(["stop", "-t", "1", "again"]);
    env.ok(["start", "again"]);
    assert_eq!(env.status("again"), "running");
    assert_ne!(pid_of(&env, "again"), first);
    eventually(secs(10), "the second run's output", || {
        env.ok(["logs", "again"]) == "run\nrun\n"
    });
}

#[test]
fn restart_runs_the_command_anew() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "rs", "busybox", "sleep", "100"]);
    let first = pid_of(&env, "rs");
    let start = Instant::now();
    assert_eq!(env.ok(["restart", "-t", "1", "rs"]).trim(), "rs");
    assert!(start.elapsed() < secs(6));
    assert_eq!(env.status("rs"), "running");
    let second = pid_of(&env, "rs");
    assert!(
        second > 0 && second != first,
        "restart gives a new process ({first} then {second})"
    );
    // restart starts an exited container too.
    env.ok(["stop", "-t", "1", "rs"]);
    env.ok(["restart", "rs"]);
    assert_eq!(env.status("rs"), "running");
}

#[test]
fn kill_sends_the_signal_given() {
    let env = setup!(Env::new());
    env.run_detached([
        "--name",
        "trapper",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-hup; exit 0' HUP; echo ready; while :; do sleep 0.1; done",
    ]);
    eventually(secs(10), "the trap to be set", || {
        env.ok(["logs", "trapper"]).contains("ready")
    });
    assert_eq!(env.ok(["kill", "-s", "HUP", "trapper"]).trim(), "trapper");
    assert_eq!(env.ok(["wait", "trapper"]).trim(), "0");
    assert!(env.ok(["logs", "trapper"]).contains("got-hup"));
}

#[test]
fn kill_defaults_to_sigkill() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "victim", "busybox", "sh", "-c", IGNORES_TERM]);
    env.ok(["kill", "victim"]);
    assert_eq!(env.ok(["wait", "victim"]).trim(), "137");
    let out = env.burrow(["kill", "victim"]).burrow_error();
    assert!(out.stderr.contains("not running"), "{}", out.describe());
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "busy", "busybox", "sleep", "100"]);
    let pid = pid_of(&env, "busy") as i32;
    env.burrow(["rm", "busy"]).burrow_error();
    assert_eq!(env.status("busy"), "running");
    assert_eq!(env.ok(["rm", "-f", "busy"]).trim(), "busy");
    assert!(!env.ok(["ps", "-a"]).contains("busy"));
    eventually(secs(5), "the container's process to end", || {
        !process_alive(pid)
    });
    env.burrow(["inspect", "busy"]).burrow_error();
}

#[test]
fn rm_removes_an_exited_container_and_its_name() {
    let env = setup!(Env::new());
    env.ok(["run", "--name", "done", "busybox", "true"]);
    env.ok(["rm", "done"]);
    assert!(!env.ok(["ps", "-a"]).contains("done"));
    // The name is free again.
    env.ok(["run", "--name", "done", "busybox", "true"]);
}

#[test]
fn commands_on_a_missing_container_fail_with_125() {
    let env = setup!(Env::new());
    for cmd in [
        "start", "stop", "restart", "kill", "rm", "wait", "logs", "inspect",
    ] {
        let out = env.burrow([cmd, "nosuchcontainer"]).burrow_error();
        assert!(
            out.stderr.contains("nosuchcontainer"),
            "{cmd}: {}",
            out.describe()
        );
    }
}

#[test]
fn run_rm_removes_the_container_when_it_exits() {
    let env = setup!(Env::new());
    env.ok(["run", "--rm", "--name", "gone", "busybox", "true"]);
    assert!(!env.ok(["ps", "-a"]).contains("gone"));
    env.run_detached([
        "--rm",
        "--name",
        "gone-too",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    eventually(secs(10), "the detached --rm container to vanish", || {
        !env.ok(["ps", "-a"]).contains("gone-too")
    });
}

#[test]
fn wait_prints_the_exit_code_when_the_container_ends() {
    let env = setup!(Env::new());
    let id = env.run_detached(["busybox", "sh", "-c", "sleep 0.3; exit 5"]);
    assert_eq!(env.ok(["wait", &id]).trim(), "5");
}

#[test]
fn names_must_be_unique() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "taken", "busybox", "sleep", "100"]);
    let out = env
        .burrow(["run", "-d", "--name", "taken", "busybox", "true"])
        .burrow_error();
    assert!(out.stderr.contains("taken"), "{}", out.describe());
    env.burrow(["create", "--name", "taken", "busybox", "true"])
        .burrow_error();
}

#[test]
fn generated_names_are_adjective_noun_and_unique() {
    let env = setup!(Env::new());
    let mut names = HashSet::new();
    for _ in 0..4 {
        let id = env.ok(["create", "busybox", "true"]).trim().to_string();
        let name = env.inspect(&id)["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let parts: Vec<&str> = name.split('_').collect();
        assert!(
            parts.len() == 2
                && parts[0].chars().all(|c| c.is_ascii_lowercase())
                && !parts[0].is_empty()
                && parts[1]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && !parts[1].is_empty(),
            "name {name:?} is not adjective_noun"
        );
        assert!(names.insert(name.clone()), "name {name} given twice");
    }
}

#[test]
fn containers_are_found_by_id_prefix() {
    let env = setup!(Env::new());
    let id = env.run_detached(["--name", "prefixed", "busybox", "sleep", "100"]);
    for prefix in [&id[..12], &id[..5], id.as_str()] {
        assert_eq!(env.inspect(prefix)["Id"], id.as_str(), "prefix {prefix}");
    }
    env.ok(["stop", "-t", "1", &id[..8]]);
    env.ok(["rm", &id[..8]]);
}

#[test]
fn inspect_shows_the_configuration() {
    let env = setup!(Env::new());
    let id = env.run_detached([
        "--name",
        "configured",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "--hostname",
        "inspected",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; pwd; sleep 100",
    ]);
    let v = env.inspect("configured");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(
        v["Name"].as_str().map(|n| n.trim_start_matches('/')),
        Some("configured")
    );
    let config = &v["Config"];
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e == "GREETING=hi")),
        "{config}"
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["sh", "-c", "echo $GREETING; pwd; sleep 100"]),
        "{config}"
    );
    assert_eq!(config["WorkingDir"], "/tmp", "{config}");
    assert_eq!(config["Hostname"], "inspected", "{config}");
    assert!(
        config["Image"]
            .as_str()
            .is_some_and(|i| i.contains("busybox")),
        "{config}"
    );
    eventually(secs(10), "the container's output", || {
        env.ok(["logs", "configured"]) == "hi\n/tmp\n"
    });
    assert!(
        v["Created"].as_str().is_some_and(|c| c.contains('T')),
        "Created is RFC 3339: {v}"
    );
    assert!(
        v["State"]["StartedAt"]
            .as_str()
            .is_some_and(|c| c.contains('T')),
        "{v}"
    );
}

#[test]
fn a_dead_supervisor_never_leaves_a_running_container() {
    let env = setup!(Env::new());
    env.run_detached(["--name", "orphan", "busybox", "sleep", "100"]);
    let state = env.inspect("orphan")["State"].clone();
    let supervisor = state["BurrowSupervisorPid"].as_i64().unwrap_or(0) as i32;
    let pid = state["Pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        supervisor > 0 && process_alive(supervisor),
        "State.BurrowSupervisorPid: {state}"
    );
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    eventually(secs(10), "ps -a to show the container exited", || {
        let ps = env.ok(["ps", "-a"]);
        ps.lines()
            .any(|l| l.contains("orphan") && l.contains("Exited"))
    });
    assert_eq!(env.status("orphan"), "exited");
    eventually(
        secs(10),
        "the container's processes to die with their supervisor",
        || !process_alive(pid),
    );
    // Killed again, and started before any other command noticed: start
    // records the dead supervisor's exit itself (under the lock it holds).
    env.ok(["start", "orphan"]);
    let supervisor = env.inspect("orphan")["State"]["BurrowSupervisorPid"]
        .as_i64()
        .unwrap_or(0) as i32;
    assert!(supervisor > 0 && process_alive(supervisor));
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    eventually(secs(10), "the supervisor to be gone", || {
        !process_alive(supervisor)
    });
    env.ok(["start", "orphan"]);
    assert_eq!(env.status("orphan"), "running");
    env.ok(["rm", "-f", "orphan"]);
}

#[test]
fn parallel_runs_all_succeed() {
    let env = setup!(Env::new());
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    env.run_detached(["--name", &format!("par{i}"), "busybox", "sleep", "100"])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        10,
        "ids are unique"
    );
    let running = env.ok(["ps", "-q", "--no-trunc"]);
    assert_eq!(
        running.lines().collect::<HashSet<_>>(),
        ids.iter().map(String::as_str).collect()
    );
    // Generated names stay unique under concurrency too.
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let env = &env;
                s.spawn(move || {
                    let id = env.ok(["create", "busybox", "true"]).trim().to_string();
                    env.inspect(&id)["Name"].as_str().unwrap_or("").to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 6, "{names:?}");
}
