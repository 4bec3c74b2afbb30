//! `port`: the published ports of a running container, as `docker port`.

use anyhow::{Result, bail};
use clap::Args;

use crate::container::{self, record};
use crate::net::Protocol;
use crate::paths::Dirs;

/// List a container's published ports, or the host address of one port
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  burrow port web\n  burrow port web 80/tcp")]
pub struct PortArgs {
    /// Container name or id
    pub container: String,
    /// PORT[/PROTOCOL] inside the container
    pub port: Option<String>,
}

pub fn run(dirs: &Dirs, a: PortArgs) -> Result<i32> {
    let mut rec = container::find(dirs, &a.container)?;
    if !matches!(
        record::status(dirs, &mut rec)?,
        record::Status::Running { .. }
    ) {
        bail!("container {} is not running", rec.name);
    }
    let ports = record::load_runtime(dirs, &rec.id)
        .map(|rt| rt.ports)
        .unwrap_or_default();
    let wanted = a.port.as_deref().map(parse_port).transpose()?;
    let mut found = false;
    for p in &ports {
        let host = match p.host_ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        match wanted {
            Some((port, proto)) if p.container_port == port && p.protocol == proto => {
                println!("{host}:{}", p.host_port);
                found = true;
            }
            Some(_) => {}
            None => println!(
                "{}/{} -> {host}:{}",
                p.container_port, p.protocol, p.host_port
            ),
        }
    }
    if let (Some(_), false) = (&wanted, found) {
        bail!(
            "no public port \"{}\" published for {}",
            a.port.unwrap_or_default(),
            rec.name
        );
    }
    Ok(0)
}

fn parse_port(s: &str) -> Result<(u16, Protocol)> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("invalid protocol \"{other}\": use tcp or udp"),
    };
    match port.parse() {
        Ok(p) => Ok((p, proto)),
        Err(_) => bail!("invalid port \"{port}\""),
    }
}
