//! `start`, `stop`, `restart`, `kill`, `rm`, `wait`.

use anyhow::Result;
use clap::Args;

use crate::paths::Dirs;

/// Start stopped containers
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Stop running containers: the stop signal, then SIGKILL after a grace period
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Restart containers
#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Send a signal to running containers
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal name or number
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Remove containers
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Wait for containers to stop and print their exit codes
#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn start(_d: &Dirs, _a: StartArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
pub fn stop(_d: &Dirs, _a: StopArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
pub fn restart(_d: &Dirs, _a: RestartArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
pub fn kill(_d: &Dirs, _a: KillArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
pub fn rm(_d: &Dirs, _a: RmArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
pub fn wait(_d: &Dirs, _a: WaitArgs) -> Result<i32> {
    anyhow::bail!("being written")
}
