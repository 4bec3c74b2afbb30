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
pub mod logs;
pub mod names;
pub mod options;
pub mod record;
pub mod rootfs;
pub mod spec;
pub mod supervisor;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::paths::Dirs;
use crate::sandbox::idmap::{self, HostIds};
use crate::store::{Image, Store, StoreError};
use options::{Network, ResolvedUser};
use record::{Record, RunConfig, Status};

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
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    idmap::detect(uid.as_raw(), nix::unistd::getgid().as_raw(), &name)
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
        let (driver, _why) = rootfs::choose(requested_driver, &image.layers)?;
        let root = rootfs::prepare(driver, &image.layers, &staging, &dirs.container(&id))?;
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
                auto_remove: req.auto_remove,
                cap_add: req.cap_add.clone(),
                cap_drop: req.cap_drop.clone(),
                privileged: req.privileged,
                init: req.init,
                storage_driver: Some(root.driver),
                layers: image.layers.clone(),
                interactive: req.interactive,
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
    if let Status::Running { .. } = record::status(dirs, &mut current)? {
        bail!("container {} is already running", current.name);
    }
    supervisor::start(dirs, &rec.id, attach, current.config.interactive, lock)
}

/// The signal `stop` sends first: the image's StopSignal, else SIGTERM.
pub fn stop_signal(rec: &Record) -> Signal {
    parse_signal(&rec.config.stop_signal).unwrap_or(Signal::SIGTERM)
}

/// Parses `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow!("invalid signal: {s}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| anyhow!("invalid signal: {s}"))
}

/// Sends a signal to a running container's first process (the init, which
/// forwards it to the command).
pub fn signal(dirs: &Dirs, rec: &Record, sig: Signal) -> Result<()> {
    let mut r = rec.clone();
    match record::status(dirs, &mut r)? {
        Status::Running { pid, .. } if pid > 0 => kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("cannot signal container {}", rec.name)),
        _ => bail!("container {} is not running", rec.name),
    }
}

/// Stops a container: its stop signal, then SIGKILL after `timeout`.
/// Stopping a stopped container is not an error, as in Docker.
pub fn stop(dirs: &Dirs, rec: &Record, timeout: Duration) -> Result<()> {
    if signal(dirs, rec, stop_signal(rec)).is_err() {
        return Ok(());
    }
    if wait_stopped(dirs, rec, timeout)? {
        return Ok(());
    }
    let _ = signal(dirs, rec, Signal::SIGKILL);
    if wait_stopped(dirs, rec, Duration::from_secs(10))? {
        return Ok(());
    }
    bail!(
        "container {} did not stop within 10 seconds of SIGKILL",
        rec.name
    )
}

/// Polls until the container is not running; `false` on timeout.
pub fn wait_stopped(dirs: &Dirs, rec: &Record, timeout: Duration) -> Result<bool> {
    // `None`: wait forever (Duration::MAX does not fit in an Instant).
    let deadline = Instant::now().checked_add(timeout);
    let mut r = rec.clone();
    loop {
        match record::status(dirs, &mut r) {
            Ok(Status::Running { .. }) => {}
            Ok(_) => return Ok(true),
            // Removed meanwhile (an --rm container): it has stopped.
            Err(_) if !dirs.container(&rec.id).exists() => return Ok(true),
            Err(e) => return Err(e),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a container; a running one only with `force` (killed first).
pub fn remove(dirs: &Dirs, rec: &Record, force: bool) -> Result<()> {
    let mut r = rec.clone();
    if let Status::Running { .. } = record::status(dirs, &mut r)? {
        if !force {
            bail!(
                "cannot remove container {}: it is running; stop it first or force removal with: burrow rm -f {}",
                rec.name,
                rec.name
            );
        }
        let _ = signal(dirs, rec, Signal::SIGKILL);
        if !wait_stopped(dirs, rec, Duration::from_secs(10))? {
            bail!("container {} did not stop after SIGKILL", rec.name);
        }
    }
    let _all = record::lock_all(dirs)?;
    remove_files(dirs, &rec.id)
}

/// Deletes a container's folders. Files its users created belong to
/// subordinate ids the caller cannot delete directly; those are removed as
/// root of a user namespace with the same maps.
pub fn remove_files(dirs: &Dirs, id: &str) -> Result<()> {
    record::clear_runtime(dirs, id);
    let dir = dirs.container(id);
    if !dir.exists() {
        return Ok(());
    }
    // Move it aside first: a half-deleted container is never listed.
    let doomed = dirs.tmp().join(format!("rm-{id}"));
    fs::create_dir_all(dirs.tmp())?;
    fs::rename(&dir, &doomed).with_context(|| format!("cannot remove {}", dir.display()))?;
    remove_tree(&doomed)
}

/// Removes a tree, falling back to a user namespace with the subordinate
/// ranges for files owned by container users.
pub fn remove_tree(path: &Path) -> Result<()> {
    make_writable(path);
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let ids = host_ids();
    let code = crate::sandbox::as_namespace_root(
        nix::sched::CloneFlags::empty(),
        &ids.uid_map,
        &ids.gid_map,
        || {
            make_writable(path);
            i32::from(fs::remove_dir_all(path).is_err())
        },
    )?;
    if code != 0 || path.exists() {
        bail!(
            "cannot remove {}: files in it belong to ids burrow cannot map",
            path.display()
        );
    }
    Ok(())
}

/// Adds owner write permission to folders so their entries can be removed
/// (a container may leave read-only folders behind).
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

/// The image a container was made from, if it still exists.
pub fn image_of(dirs: &Dirs, rec: &Record) -> Option<Image> {
    Store::open(dirs).ok()?.resolve(&rec.image_id).ok()
}

/// What `exec` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// Runs a command in a running container, with the container's environment,
/// capabilities and user unless overridden, and returns its exit code.
pub fn exec(dirs: &Dirs, rec: &Record, req: &ExecRequest) -> Result<i32> {
    let mut current = rec.clone();
    let pid = match record::status(dirs, &mut current)? {
        Status::Running { pid, .. } if pid > 0 => pid,
        _ => bail!("container {} is not running", rec.name),
    };
    if req.command.is_empty() {
        bail!("no command given: burrow exec CONTAINER COMMAND [ARG...]");
    }
    let spec_path = dirs.container(&rec.id).join("config.json");
    let spec = oci_spec::runtime::Spec::load(&spec_path)
        .with_context(|| format!("cannot read the runtime spec {}", spec_path.display()))?;
    let plan = crate::sandbox::Plan::from_spec(&spec, &dirs.container(&rec.id))?;
    let mut process = plan.process.clone();
    process.args = req.command.clone();
    let extra = options::parse_env(&req.env, |k| std::env::var(k).ok())?;
    process.env = options::merge_env(&process.env, &extra);
    if let Some(w) = &req.workdir {
        if !w.starts_with('/') {
            bail!("the working directory \"{w}\" is invalid: it needs to be an absolute path");
        }
        process.cwd = w.into();
    }
    if let Some(u) = &req.user {
        let spec = options::parse_user(u)?;
        let ids = HostIds {
            uid_map: plan.uid_map.clone(),
            gid_map: plan.gid_map.clone(),
            single_reason: host_ids().single_reason,
        };
        let user = resolve_user(&rec.config.layers, Some(&spec), u, &ids)?;
        process.uid = user.uid;
        process.gid = user.gid;
        process.additional_gids = user.additional_gids;
        if user.uid != 0 {
            // As Docker: a non-root user keeps only the bounding set.
            process.effective.clear();
            process.permitted.clear();
        }
    }
    Ok(crate::sandbox::exec_in(Pid::from_raw(pid), &process)?)
}
