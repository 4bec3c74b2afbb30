//! `exec`: a command in a running container, built from the container's own
//! spec with the user's overrides and handed to the sandbox to run inside the
//! container's namespaces.

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;

use super::console::RawMode;
use super::record::{self, Record, Status};
use super::{host_ids, options, resolve_user};
use crate::paths::Dirs;
use crate::sandbox::idmap::HostIds;

/// What `exec` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// A pseudo-terminal for the command (`-t`).
    pub tty: bool,
    /// With `tty`: send this process's standard input to it (`-i`).
    pub interactive: bool,
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
    // The container's terminal (`run -t`) is its first command's; a command
    // run here gets one of its own with -t, else uses the caller's streams.
    process.terminal = req.tty;
    process.terminal_size = crate::sandbox::user_terminal_size();
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
    // The user's keys reach the command's terminal as typed (restored
    // when this goes, after the command's last output).
    let _raw = match req.tty && req.interactive {
        true => RawMode::enter()?,
        false => None,
    };
    Ok(crate::sandbox::exec_in(
        Pid::from_raw(pid),
        &process,
        req.interactive,
    )?)
}
