//! `start`, `stop`, `restart`, `kill`, `rm`, `wait`.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::container::{self, Attach};
use crate::paths::Dirs;

/// Start stopped containers
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Stop running containers: the stop signal, then SIGKILL after a grace period
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Restart containers
#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Send a signal to running containers
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal name or number
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    pub signal: String,
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Remove containers
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Wait for containers to stop and print their exit codes
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Container names or ids (a unique id prefix is enough)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn start(dirs: &Dirs, a: StartArgs) -> Result<i32> {
    if a.attach && a.containers.len() > 1 {
        bail!("you cannot start and attach to more than one container at once");
    }
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        let attach = if a.attach {
            Attach::Foreground { log: true }
        } else {
            Attach::Detached
        };
        match container::start(dirs, &rec, attach)? {
            Some(code) => Ok(Some(code)),
            None => {
                println!("{name}");
                Ok(None)
            }
        }
    })
}

pub fn stop(dirs: &Dirs, a: StopArgs) -> Result<i32> {
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        container::stop(dirs, &rec, Duration::from_secs(a.time))?;
        println!("{name}");
        Ok(None)
    })
}

pub fn restart(dirs: &Dirs, a: RestartArgs) -> Result<i32> {
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        container::stop(dirs, &rec, Duration::from_secs(a.time))?;
        container::start(dirs, &rec, Attach::Detached)?;
        println!("{name}");
        Ok(None)
    })
}

pub fn kill(dirs: &Dirs, a: KillArgs) -> Result<i32> {
    let sig = container::parse_signal(&a.signal)?;
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        container::signal(dirs, &rec, sig)?;
        println!("{name}");
        Ok(None)
    })
}

pub fn rm(dirs: &Dirs, a: RmArgs) -> Result<i32> {
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        container::remove(dirs, &rec, a.force)?;
        println!("{name}");
        Ok(None)
    })
}

pub fn wait(dirs: &Dirs, a: WaitArgs) -> Result<i32> {
    each(&a.containers, |name| {
        let rec = container::find(dirs, name)?;
        container::wait_stopped(dirs, &rec, Duration::MAX)?;
        let code = container::record::load_record(dirs, &rec.id)
            .ok()
            .and_then(|r| r.last.exit_code)
            .unwrap_or(0);
        println!("{code}");
        Ok(None)
    })
}

/// Applies `f` to every named container as Docker does: an error for one is
/// printed and the others still run; the exit code is 125 if any failed, or
/// the attached container's own code.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<Option<i32>>) -> Result<i32> {
    let mut failed = None;
    let mut code = 0;
    for name in names {
        match f(name) {
            Ok(Some(c)) => code = c,
            Ok(None) => {}
            Err(e) => {
                if names.len() == 1 {
                    return Err(e);
                }
                eprintln!("burrow: {e:#}");
                failed = Some(super::EXIT_BURROW);
            }
        }
    }
    Ok(failed.unwrap_or(code))
}
