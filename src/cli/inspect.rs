//! `inspect`: Docker-shaped JSON for containers and images.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::container::options::Network;
use crate::container::{self, record::Record, record::Status};
use crate::net::{CONTAINER_IP, GATEWAY_IP, PortMapping};
use crate::paths::Dirs;
use crate::store::{Image, Store, docker_fields};

/// Show low-level details of containers or images as JSON
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow inspect web\n  burrow inspect --type image busybox\n  burrow inspect -f '{{.State.Pid}}' web\n  burrow inspect -f '{{range $p, $b := .NetworkSettings.Ports}}{{$p}} {{end}}' web\n  burrow inspect -f '{{json .Config.Env}}' web"
)]
pub struct InspectArgs {
    /// What to inspect: container, image, or any (containers first)
    #[arg(long = "type", default_value = "any")]
    pub kind: String,
    /// Print each object through this Go template instead of as JSON
    /// (e.g. '{{.State.Pid}}', '{{json .Config}}')
    #[arg(short, long)]
    pub format: Option<String>,
    /// Container or image names or ids
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn run(dirs: &Dirs, a: InspectArgs) -> Result<i32> {
    if !["any", "container", "image"].contains(&a.kind.as_str()) {
        bail!("unknown --type \"{}\": use container or image", a.kind);
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        let found = match a.kind.as_str() {
            "container" => container_json(dirs, name).ok(),
            "image" => image_json(dirs, name).ok(),
            _ => container_json(dirs, name)
                .or_else(|_| image_json(dirs, name))
                .ok(),
        };
        match found {
            Some(v) => out.push(v),
            None => missing.push(name.clone()),
        }
    }
    match &a.format {
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
        Some(format) => {
            let template = super::format::template(format, "{{.Id}}")?;
            for object in &out {
                println!("{}", template.render(object).context("bad --format")?);
            }
        }
    }
    if !missing.is_empty() {
        bail!("no such object: {}", missing.join(", "));
    }
    Ok(0)
}

fn container_json(dirs: &Dirs, name: &str) -> Result<Value> {
    let mut rec = container::find(dirs, name)?;
    let status = container::record::status(dirs, &mut rec)?;
    Ok(container_value(dirs, &rec, &status))
}

/// Docker's `NetworkSettings`: the addresses on burrow's network, and the
/// published ports as bound while the container runs (exposed ones it did
/// not publish with no bindings).
fn network_settings(dirs: &Dirs, r: &Record, s: &Status) -> Value {
    let slirp = matches!(r.config.network, Some(Network::Slirp { .. }) | None);
    let bound = match s {
        Status::Running { .. } => container::record::load_runtime(dirs, &r.id)
            .map(|rt| rt.ports)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let (ip, gateway, prefix) = if slirp {
        (CONTAINER_IP.to_string(), GATEWAY_IP.to_string(), 24)
    } else {
        (String::new(), String::new(), 0)
    };
    let mut ports = port_map(&bound, |p| Some(p.host_port));
    if let (Value::Object(map), Status::Running { .. }) = (&mut ports, s) {
        // Exposed, not published: Docker lists them with no bindings.
        for (port, protocol) in crate::net::unpublished(&r.config.exposed, &bound) {
            map.insert(format!("{port}/{protocol}"), Value::Null);
        }
    }
    json!({
        "Ports": ports,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
    })
}

/// `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`, as Docker keys
/// ports; `host_port` gives the port to show (none: `""`, as for `-P`).
fn port_map(ports: &[PortMapping], host_port: impl Fn(&PortMapping) -> Option<u16>) -> Value {
    let mut map = serde_json::Map::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = json!({
            "HostIp": p.host_ip.to_string(),
            "HostPort": host_port(p).map(|n| n.to_string()).unwrap_or_default(),
        });
        match map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(list) => list.push(entry),
            _ => unreachable!("every entry is a list"),
        }
    }
    Value::Object(map)
}

fn container_value(dirs: &Dirs, r: &Record, s: &Status) -> Value {
    let (pid, supervisor) = match s {
        Status::Running {
            pid,
            supervisor_pid,
            ..
        } => (*pid, *supervisor_pid),
        _ => (0, 0),
    };
    let c = &r.config;
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.command.first(),
        "Args": r.command.get(1..).unwrap_or(&[]),
        "State": {
            "Status": s.word(),
            "Running": matches!(s, Status::Running { .. }),
            "Paused": false,
            "Restarting": false,
            "Dead": false,
            "Pid": pid,
            "ExitCode": r.last.exit_code.unwrap_or(0),
            "Error": r.last.error,
            "StartedAt": r.last.started_at,
            "FinishedAt": r.last.finished_at,
            "BurrowSupervisorPid": supervisor,
        },
        "Image": format!("sha256:{}", r.image_id),
        "Name": format!("/{}", r.name),
        "LogPath": container::logs::path(dirs, &r.id),
        "Driver": c.storage_driver.map(|d| d.name()),
        "Platform": "linux",
        "Mounts": c.binds.iter().map(|b| json!({
            "Type": "bind",
            "Source": b.source,
            "Destination": b.destination,
            "Mode": if b.readonly { "ro" } else { "rw" },
            "RW": !b.readonly,
        })).collect::<Vec<_>>(),
        "Config": {
            "Hostname": c.hostname,
            "User": c.user,
            "Env": c.env,
            "Cmd": r.command,
            "Image": r.image,
            "WorkingDir": c.workdir,
            "Labels": c.labels,
            "StopSignal": container::stop_signal(r).as_str(),
            "OpenStdin": c.interactive,
            "Tty": c.tty,
        },
        "NetworkSettings": network_settings(dirs, r, s),
        "HostConfig": {
            "PortBindings": port_map(&c.ports, |p| (p.host_port != 0).then_some(p.host_port)),
            "Binds": c.binds.iter().map(|b| format!("{}:{}{}", b.source.display(), b.destination, if b.readonly { ":ro" } else { "" })).collect::<Vec<_>>(),
            "NetworkMode": c.network,
            "AutoRemove": c.auto_remove,
            "CapAdd": c.cap_add,
            "CapDrop": c.cap_drop,
            "Privileged": c.privileged,
            "Init": c.init,
        },
        "GraphDriver": {
            "Name": c.storage_driver.map(|d| d.name()),
            "Data": {
                "MergedDir": dirs.container(&r.id).join("rootfs"),
                "UpperDir": dirs.container(&r.id).join("upper"),
            },
        },
    })
}

fn image_json(dirs: &Dirs, name: &str) -> Result<Value> {
    let store = Store::open(dirs)?;
    let img = store.resolve(name)?;
    let digests = store.repo_digests()?.remove(&img.id).unwrap_or_default();
    Ok(image_value(&img, &digests))
}

fn image_value(img: &Image, repo_digests: &[String]) -> Value {
    let cfg = &img.config;
    // The OCI config, with Docker's Healthcheck, OnBuild and Shell fields as
    // `docker image inspect` shows them.
    let mut full = serde_json::to_value(cfg).unwrap_or_default();
    docker_fields(&mut full);
    json!({
        "Id": format!("sha256:{}", img.id),
        "RepoTags": img.repo_tags,
        "RepoDigests": repo_digests,
        "Created": img.created,
        "Author": cfg.author(),
        "Size": img.size,
        "Architecture": cfg.architecture().to_string(),
        "Os": cfg.os().to_string(),
        "Config": full.get("config"),
        "RootFS": cfg.rootfs(),
        "History": cfg.history(),
    })
}
