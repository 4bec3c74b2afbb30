//! `info`: how burrow runs on this host, and why something is unavailable.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use crate::container;
use crate::paths::Dirs;
use crate::sandbox::probe;

/// Show how burrow runs on this host and which kernel features it found
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  burrow info\n  burrow info --format json")]
pub struct InfoArgs {
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, a: &InfoArgs) -> Result<i32> {
    let ids = container::host_ids();
    let dirs = Dirs::resolve(root, runroot);
    let (data, runtime, dirs_error) = match &dirs {
        Ok(d) => (
            d.data.display().to_string(),
            d.runtime.display().to_string(),
            None,
        ),
        Err(e) => (String::new(), String::new(), Some(format!("{e:#}"))),
    };
    let (running, total) = match &dirs {
        Ok(d) => {
            let all = container::list(d).unwrap_or_default();
            let running = all.iter().filter(|(_, s)| s.word() == "running").count();
            (running, all.len())
        }
        Err(_) => (0, 0),
    };
    let features = probe::features();
    let ping = crate::net::probe_ping();
    let uname = nix::sys::utsname::uname()?;
    let kernel = uname.release().to_string_lossy().into_owned();
    let map_text = |m: &[crate::sandbox::idmap::IdMap]| {
        m.iter()
            .map(|m| format!("{}:{}:{}", m.container, m.host, m.size))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match a.format.as_str() {
        "text" => {
            println!("burrow {}", env!("CARGO_PKG_VERSION"));
            println!("Kernel: {kernel}");
            println!(
                "User: uid {} gid {}",
                nix::unistd::getuid(),
                nix::unistd::getgid()
            );
            println!("ID mapping: {ids}");
            println!("  uid map: {}", map_text(&ids.uid_map));
            println!("  gid map: {}", map_text(&ids.gid_map));
            let (driver, why) = container::rootfs::choose(configured_driver()?, &[])?;
            println!(
                "Storage driver: {} ({why}; vfs copies the image, always available)",
                driver.name()
            );
            println!("Data root: {data}");
            println!("Runtime root: {runtime}");
            if let Some(e) = &dirs_error {
                println!("  unusable: {e}");
            }
            println!(
                "Network: slirp4netns (the default: burrow's userspace network, 10.0.2.100/24 via 10.0.2.2), none or host"
            );
            println!("  ping: {}", ping.detail);
            println!("Containers: {total} ({running} running)");
            println!("Kernel features:");
            for f in &features {
                let mark = if f.available { "yes" } else { "no " };
                println!("  {mark}  {}: {}", f.name, f.detail);
            }
        }
        "json" => {
            let v = json!({
                "Version": env!("CARGO_PKG_VERSION"),
                "Kernel": kernel,
                "IdMapping": {
                    "Mode": if ids.is_range() { "range" } else { "single" },
                    "Reason": ids.single_reason,
                    "UidMap": map_text(&ids.uid_map),
                    "GidMap": map_text(&ids.gid_map),
                },
                "StorageDriver": container::rootfs::choose(configured_driver()?, &[])?.0.name(),
                "DataRoot": data,
                "RuntimeRoot": runtime,
                "Network": {
                    "Default": "slirp4netns",
                    "Ping": { "Available": ping.available, "Detail": ping.detail },
                },
                "Containers": total,
                "ContainersRunning": running,
                "Features": features,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        other => bail!("unknown format \"{other}\": use text or json"),
    }
    Ok(0)
}

/// The driver config.toml or BURROW_STORAGE_DRIVER asks for, if any.
fn configured_driver() -> Result<Option<container::rootfs::Driver>> {
    let name = match std::env::var("BURROW_STORAGE_DRIVER") {
        Ok(v) if !v.is_empty() => v,
        _ => crate::config::load()?.storage_driver.unwrap_or_default(),
    };
    container::rootfs::Driver::parse(&name)
}
