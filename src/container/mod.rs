//! The orchestrator: the only module that combines the store and the sandbox.
//!
//! `create` resolves the image, copies its layers into the container's folder
//! ([`rootfs`]), works out the command, environment, user and capabilities,
//! and writes the bundle: `config.json` (the OCI runtime spec, [`spec`]) and
//! `container.json` ([`record`]). `start` hands the bundle to the
//! [`supervisor`], which runs the sandbox. The lifecycle commands (`stop`,
//! `kill`, `rm`, `wait`) act on the recorded pids and wait on the records.
//!
//! Containers live in `containers/<id>/` under the data root: `config.json`,
//! `container.json`, `rootfs/`, `ctr.log`, and the `hosts`, `hostname` and
//! `resolv.conf` files bound into the container.

pub mod changes;
mod console;
mod exec;
mod lifecycle;
pub mod logs;
pub mod names;
pub mod options;
pub mod record;
pub mod rootfs;
pub mod spec;
pub mod supervisor;

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use crate::paths::Dirs;
use crate::sandbox::idmap::{self, HostIds};
use crate::store::{Image, Store, StoreError};
use options::{Network, ResolvedUser};
use record::{Record, RunConfig, Status};

pub use exec::{ExecRequest, exec};
pub use lifecycle::{
    parse_signal, remove, remove_files, remove_tree, signal, stop, stop_signal, wait_stopped,
};
pub use supervisor::{Attach, StartError};

/// What `run` and `create` were asked for, as the user typed it.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub image: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub volumes: Vec<String>,
    pub hostname: Option<String>,
    pub network: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub init: bool,
    pub interactive: bool,
    /// A pseudo-terminal for the command (`-t`).
    pub tty: bool,
    pub auto_remove: bool,
    /// `overlay`, `vfs`, or empty for the automatic choice.
    pub storage_driver: String,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: publish every port the image exposes on a free host port.
    pub publish_all: bool,
}

/// The caller's id maps on this host (range or single mode).
pub fn host_ids() -> HostIds {
    // Read once per process: /etc/subuid, /etc/subgid and the passwd entry
    // do not change under a running command, and several layers ask.
    static IDS: std::sync::OnceLock<HostIds> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        idmap::detect(uid.as_raw(), nix::unistd::getgid().as_raw(), &name)
    })
    .clone()
}

/// The image `name` names, pulled first when it is a reference the store
/// lacks, as `docker run` does (progress on stderr).
fn resolve_or_pull(dirs: &Dirs, name: &str) -> Result<Image> {
    let reference = match Store::open(dirs)?.resolve(name) {
        Err(StoreError::NotFound(n)) => match name.parse::<crate::image::Reference>() {
            Ok(reference) => reference,
            Err(_) => return Err(StoreError::NotFound(n).into()),
        },
        other => return Ok(other?),
    };
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    let opts = crate::registry::PullOptions {
        output: crate::registry::Output::Stderr,
        ..Default::default()
    };
    crate::registry::pull(dirs, name, &opts)
}

/// Creates a container and returns its record.
pub fn create(dirs: &Dirs, req: &CreateRequest) -> Result<Record> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let user_env = options::parse_env(&req.env, |k| std::env::var(k).ok())?;
    let binds = req
        .volumes
        .iter()
        .map(|v| options::parse_volume(v, &cwd))
        .collect::<Result<Vec<_>, _>>()?;
    let network = options::parse_network(&req.network)?;
    let user_spec = req.user.as_deref().map(options::parse_user).transpose()?;
    let caps = spec::capabilities(req.privileged, &req.cap_add, &req.cap_drop)?;
    if let Some(n) = &req.name {
        names::validate(n).map_err(|e| anyhow!(e))?;
    }
    // The flag (or BURROW_STORAGE_DRIVER), else config.toml, else automatic.
    let driver_name = match req.storage_driver.as_str() {
        "" => crate::config::load()?.storage_driver.unwrap_or_default(),
        name => name.to_string(),
    };
    let requested_driver = rootfs::Driver::parse(&driver_name)?;
    let image = resolve_or_pull(dirs, &req.image)?;
    let ports = published_ports(req, network, &image)?;
    let cfg = image.config.config().clone().unwrap_or_default();

    let command = command_line(req, &cfg)?;
    let workdir = req
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty());
    let workdir = workdir.unwrap_or_else(|| "/".into());
    if !workdir.starts_with('/') {
        bail!("the working directory \"{workdir}\" is invalid: it needs to be an absolute path");
    }
    let user_text = req
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let ids = host_ids();

    let id = names::new_id();
    let staging = dirs.tmp().join(format!("create-{id}"));
    fs::create_dir_all(dirs.tmp())?;
    let built = (|| -> Result<Record> {
        fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
        let (driver, _why) = rootfs::choose_in(requested_driver, &image.layers, Some(&staging))?;
        let root = rootfs::prepare(
            driver,
            &image.layers,
            &staging,
            &dirs.container(&id),
            req.auto_remove,
        )?;
        let user = resolve_user(&image.layers, user_spec.as_ref(), &user_text, &ids)?;
        let hostname = req.hostname.clone().unwrap_or_else(|| match network {
            Network::Host => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            Network::None | Network::Slirp { .. } => id[..12].to_string(),
        });
        let mut env = options::merge_env(cfg.env().as_deref().unwrap_or(&[]), &[]);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        env = options::merge_env(&env, &[format!("HOSTNAME={hostname}")]);
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        env = options::merge_env(&env, &user_env);
        let etc = write_etc_files(&staging, &hostname, network)?;
        let rec = Record {
            id: id.clone(),
            name: String::new(),
            image: req.image.clone(),
            image_id: image.id.clone(),
            created: crate::timefmt::now(),
            command,
            config: RunConfig {
                env,
                workdir,
                user: user_text,
                hostname,
                network: Some(network),
                binds,
                ports,
                exposed: cfg
                    .exposed_ports()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                auto_remove: req.auto_remove,
                cap_add: req.cap_add.clone(),
                cap_drop: req.cap_drop.clone(),
                privileged: req.privileged,
                init: req.init,
                storage_driver: Some(root.driver),
                layers: image.layers.clone(),
                interactive: req.interactive,
                tty: req.tty,
                stop_signal: image
                    .config
                    .config()
                    .as_ref()
                    .and_then(|c| c.stop_signal().clone())
                    .unwrap_or_default(),
                labels: cfg
                    .labels()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            },
            last: Default::default(),
        };
        let etc_refs: Vec<(&str, &Path)> = etc.iter().map(|(d, p)| (*d, p.as_path())).collect();
        let spec = spec::build(
            &rec,
            &spec::SpecInputs {
                rootfs: Path::new("rootfs"),
                user: &user,
                uid_map: &ids.uid_map,
                gid_map: &ids.gid_map,
                caps: &caps,
                etc_files: &etc_refs,
                root_overlay: root.overlay_options.as_deref(),
            },
        )?;
        // The bound files are named by their final path in the spec.
        let spec_text = serde_json::to_string_pretty(&spec)?.replace(
            &staging.display().to_string(),
            &dirs.container(&id).display().to_string(),
        );
        fs::write(staging.join("config.json"), spec_text)?;
        Ok(rec)
    })();
    let mut rec = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    };

    // Names are taken under the lock on the set, and the folder appears
    // complete, by rename, in the same critical section.
    let _all = record::lock_all(dirs)?;
    let existing = list_records(dirs)?;
    rec.name = match &req.name {
        Some(n) => {
            if let Some(other) = existing.iter().find(|r| &r.name == n) {
                let _ = remove_tree(&staging);
                bail!(
                    "the container name \"{n}\" is already in use by container {}; remove or rename that container to reuse the name",
                    &other.id[..12]
                );
            }
            n.clone()
        }
        None => names::generate(|n| existing.iter().any(|r| r.name == n)),
    };
    fs::write(
        staging.join("container.json"),
        serde_json::to_vec_pretty(&rec)?,
    )?;
    fs::rename(&staging, dirs.container(&id))
        .context("cannot move the new container into place")?;
    Ok(rec)
}

/// The `-p` mappings, and with `-P` one per port the image exposes, each on
/// a free host port.
fn published_ports(
    req: &CreateRequest,
    network: Network,
    image: &Image,
) -> Result<Vec<crate::net::PortMapping>> {
    let mut ports = Vec::new();
    for p in &req.publish {
        ports.extend(crate::net::parse_publish(p)?);
    }
    if req.publish_all {
        let exposed = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        for e in exposed {
            let spec = match e.split_once('/') {
                Some((port, proto)) => format!("{port}/{proto}"),
                None => format!("{e}/tcp"),
            };
            ports.extend(crate::net::parse_publish(&spec)?);
        }
    }
    if !ports.is_empty() && !matches!(network, Network::Slirp { .. }) {
        bail!(
            "publishing ports needs the slirp4netns network; with --network host the container's ports are the host's, with --network none there are none"
        );
    }
    Ok(ports)
}

/// Docker's rules: `--entrypoint` replaces the image's entrypoint and drops
/// its cmd; arguments replace the cmd.
fn command_line(req: &CreateRequest, cfg: &oci_spec::image::Config) -> Result<Vec<String>> {
    let (entrypoint, default_cmd) = match &req.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            cfg.entrypoint().clone().unwrap_or_default(),
            cfg.cmd().clone().unwrap_or_default(),
        ),
    };
    let cmd = if req.command.is_empty() {
        default_cmd
    } else {
        req.command.clone()
    };
    let full: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if full.is_empty() {
        bail!(
            "no command specified: the image \"{}\" has no CMD or ENTRYPOINT; give a command after the image name",
            req.image
        );
    }
    Ok(full)
}

fn resolve_user(
    layers: &[std::path::PathBuf],
    spec: Option<&options::UserSpec>,
    text: &str,
    ids: &HostIds,
) -> Result<ResolvedUser> {
    let parsed;
    let spec = match spec {
        Some(s) => s,
        None if text.is_empty() => &options::UserSpec {
            user: options::IdOrName::Id(0),
            group: None,
        },
        None => {
            parsed = options::parse_user(text)?;
            &parsed
        }
    };
    let read = |p: &str| rootfs::read_image_file(layers, Path::new(p)).unwrap_or_default();
    let user = options::resolve_user(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| anyhow!(e))?;
    let unmapped = |what: &str, id: u32| match &ids.single_reason {
        Some(why) => anyhow!(
            "{what} {id} is not mapped in the container's user namespace: only id 0 is available because {why}"
        ),
        None => anyhow!(
            "{what} {id} is not mapped in the container's user namespace: it is beyond the subordinate ids in /etc/subuid and /etc/subgid"
        ),
    };
    if !idmap::is_mapped(&ids.uid_map, user.uid) {
        return Err(unmapped("uid", user.uid));
    }
    for gid in std::iter::once(user.gid).chain(user.additional_gids.iter().copied()) {
        if !idmap::is_mapped(&ids.gid_map, gid) {
            return Err(unmapped("gid", gid));
        }
    }
    Ok(user)
}

/// Writes `hosts`, `hostname` and `resolv.conf` for the container; returns
/// (container path, host file) pairs to bind.
fn write_etc_files(
    dir: &Path,
    hostname: &str,
    network: Network,
) -> Result<Vec<(&'static str, std::path::PathBuf)>> {
    let hosts = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::Slirp { .. } => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
            spec::slirp_tap().address
        ),
        Network::None => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    };
    // The userspace network answers DNS itself and forwards to the host's
    // resolvers, which may sit on the host's loopback.
    let resolv = match network {
        Network::Slirp { .. } => format!("nameserver {}\n", spec::SLIRP_DNS),
        _ => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let files = [
        ("/etc/hosts", "hosts", hosts),
        ("/etc/hostname", "hostname", format!("{hostname}\n")),
        ("/etc/resolv.conf", "resolv.conf", resolv),
    ];
    let mut out = Vec::new();
    for (dest, name, text) in files {
        let p = dir.join(name);
        fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        out.push((dest, p));
    }
    Ok(out)
}

/// Every container record, newest first; folders without a record (debris
/// of an interrupted create) are skipped.
pub fn list_records(dirs: &Dirs) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dirs.containers()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context("cannot list containers"),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 64
            && record::is_container_dir(&entry.path())
            && let Ok(r) = record::load_record(dirs, &name)
        {
            out.push(r);
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created));
    Ok(out)
}

/// Every container with its status.
pub fn list(dirs: &Dirs) -> Result<Vec<(Record, Status)>> {
    list_records(dirs)?
        .into_iter()
        .map(|mut r| {
            let s = record::status(dirs, &mut r)?;
            Ok((r, s))
        })
        .collect()
}

/// Finds a container by name, full id or unique id prefix.
pub fn find(dirs: &Dirs, key: &str) -> Result<Record> {
    let all = list_records(dirs)?;
    if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
        return Ok(r.clone());
    }
    let matches: Vec<&Record> = all
        .iter()
        .filter(|r| !key.is_empty() && r.id.starts_with(key))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no such container: {key}"),
        _ => bail!(
            "container id prefix \"{key}\" is ambiguous: it matches {} containers; give more characters",
            matches.len()
        ),
    }
}

/// Images used by containers, as (container name, image id) pairs, for `rmi`.
pub fn images_in_use(dirs: &Dirs) -> Result<Vec<(String, String)>> {
    Ok(list_records(dirs)?
        .into_iter()
        .map(|r| (r.name, r.image_id))
        .collect())
}

/// Starts a created or exited container.
pub fn start(dirs: &Dirs, rec: &Record, attach: Attach) -> Result<Option<i32>> {
    let lock = record::lock(dirs, &rec.id)?;
    let mut current = record::load_record(dirs, &rec.id)?;
    if let Status::Running { .. } = record::status_locked(dirs, &mut current)? {
        bail!("container {} is already running", current.name);
    }
    supervisor::start(dirs, &rec.id, attach, current.config.interactive, lock)
}

/// The image a container was made from, if it still exists.
pub fn image_of(dirs: &Dirs, rec: &Record) -> Option<Image> {
    Store::open(dirs).ok()?.resolve(&rec.image_id).ok()
}
