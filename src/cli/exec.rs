//! `exec`.

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use clap::Args;

use crate::container::{self, ExecRequest};
use crate::paths::Dirs;

/// Run a command in a running container
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow exec web ps\n  burrow exec -e DEBUG=1 -w /tmp -u user web sh -c 'id; pwd'"
)]
pub struct ExecArgs {
    /// Keep standard input open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal (with -i, this terminal's input
    /// reaches it, and the terminal is put in raw mode while it runs)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: UID[:GID] or NAME[:GROUP]
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Container name or id
    pub container: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(dirs: &Dirs, a: ExecArgs) -> Result<i32> {
    let rec = container::find(dirs, &a.container)?;
    if !a.interactive {
        let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
        nix::unistd::dup2_stdin(null.as_fd())?;
    }
    let req = ExecRequest {
        tty: a.tty,
        interactive: a.interactive,
        command: a.command,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
    };
    match container::exec(dirs, &rec, &req) {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast::<crate::sandbox::SandboxError>() {
            Ok(crate::sandbox::SandboxError::Start { code, message }) => {
                Err(container::StartError { code, message }.into())
            }
            Ok(other) => Err(other.into()),
            Err(e) => Err(e),
        },
    }
}
