//! `ps` in its forms.

use crate::util::Env;

#[test]
fn ps_lists_running_containers_and_ps_a_all() {
    let env = setup!(Env::new());
    let running = env.run_detached(["--name", "up", "busybox", "sleep", "100"]);
    env.burrow(["run", "--name", "finished", "busybox", "sh", "-c", "exit 2"])
        .expect_code(2);
    env.ok(["create", "--name", "fresh", "busybox", "true"]);

    let ps = env.ok(["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("CONTAINER ID"), "{ps}");
    for col in ["IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"] {
        assert!(header.contains(col), "header lacks {col}: {ps}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "ps shows only running containers: {ps}");
    assert!(
        rows[0].starts_with(&running[..12]),
        "rows start with the short id: {ps}"
    );
    assert!(
        rows[0].contains("Up ") && rows[0].trim_end().ends_with("up"),
        "{ps}"
    );

    let all = env.ok(["ps", "-a"]);
    let row = |name: &str| {
        all.lines()
            .find(|l| l.trim_end().ends_with(name))
            .unwrap_or_else(|| panic!("{all}"))
    };
    assert!(row("finished").contains("Exited (2)"), "{all}");
    assert!(row("fresh").contains("Created"), "{all}");
    assert!(row("up").contains("Up "), "{all}");
}

#[test]
fn ps_quiet_prints_ids() {
    let env = setup!(Env::new());
    let id = env.run_detached(["busybox", "sleep", "100"]);
    env.ok(["create", "busybox", "true"]);
    assert_eq!(env.ok(["ps", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(env.ok(["ps", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(env.ok(["ps", "-aq"]).lines().count(), 2);
}

#[test]
fn ps_format_json_prints_one_object_per_line() {
    let env = setup!(Env::new());
    let id = env.run_detached(["--name", "j1", "busybox", "sleep", "100"]);
    env.ok(["run", "--name", "j2", "busybox", "true"]);
    let out = env.ok(["ps", "-a", "--format", "json"]);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs.len(), 2, "{out}");
    let j1 = objs
        .iter()
        .find(|o| o["Names"] == "j1")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        j1["ID"].as_str().is_some_and(|i| id.starts_with(i)),
        "{out}"
    );
    assert!(
        j1["Image"].as_str().is_some_and(|i| i.contains("busybox")),
        "{out}"
    );
    assert!(
        j1["Command"].as_str().is_some_and(|c| c.contains("sleep")),
        "{out}"
    );
    assert_eq!(j1["State"], "running", "{out}");
    assert!(
        j1["Status"].as_str().is_some_and(|s| s.starts_with("Up")),
        "{out}"
    );
    let j2 = objs
        .iter()
        .find(|o| o["Names"] == "j2")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(j2["State"], "exited", "{out}");
    assert!(
        j2["Status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Exited (0)")),
        "{out}"
    );
}

#[test]
fn ps_of_an_empty_store_prints_only_the_header() {
    let env = setup!(Env::empty());
    let out = env.ok(["ps", "-a"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(env.ok(["ps", "-aq"]), "");
}
