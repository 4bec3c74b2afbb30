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

#[test]
fn ps_images_and_inspect_take_go_templates() {
    let env = setup!(Env::new());
    // No container yet: the table is its header alone, as Docker's.
    assert_eq!(
        env.ok(["ps", "--format", "table {{.Names}}\\t{{.Ports}}"]),
        "NAMES     PORTS\n"
    );
    let id = env.run_detached(["--name", "tpl", "-e", "A=1", "busybox", "sleep", "100"]);

    assert_eq!(
        env.ok(["ps", "--format", "{{.Names}}|{{.State}}"]),
        "tpl|running\n"
    );
    // As from a shell: a literal \t separates the columns of a table.
    let table = env.ok(["ps", "--format", "table {{.ID}}\\t{{.Names}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].trim_end().ends_with("NAMES"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].trim_end().ends_with("tpl"),
        "{table}"
    );

    let images = env.ok(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let table = env.ok(["images", "--format", "table {{.Repository}}\\t{{.ID}}"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("REPOSITORY") && header.trim_end().ends_with("IMAGE ID"),
        "{table}"
    );

    let pid = env.ok(["inspect", "-f", "{{.State.Pid}}", "tpl"]);
    assert_eq!(pid.trim(), env.inspect("tpl")["State"]["Pid"].to_string());
    let found = env.ok([
        "inspect",
        "--format",
        "{{range .Config.Env}}{{if eq . \"A=1\"}}found{{end}}{{end}}",
        "tpl",
    ]);
    assert_eq!(found.trim(), "found");
    let cmd = env.ok(["inspect", "-f", "{{json .Config.Cmd}}", "tpl"]);
    assert_eq!(cmd.trim(), r#"["sleep","100"]"#);
    let image = env.ok(["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    assert!(image.starts_with("sha256:"), "{image}");

    let bad = env.burrow(["ps", "--format", "{{.Names"]).burrow_error();
    assert!(bad.stderr.contains("bad --format"), "{}", bad.describe());
    let bad = env
        .burrow(["inspect", "-f", "{{nosuch .Name}}", "tpl"])
        .burrow_error();
    assert!(
        bad.stderr.contains("\"nosuch\" not defined"),
        "{}",
        bad.describe()
    );
}
