//! `ps`.

use std::fmt::Display;
use std::net::IpAddr;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::format::{self, Format};
use super::table;
use crate::container::{self, record::Record, record::Status};
use crate::net::{PortMapping, Protocol, unpublished};
use crate::paths::Dirs;
use crate::timefmt;

/// Column titles of `--format 'table ...'` where Docker's differ from the
/// field's name in capitals.
const TITLES: &[(&str, &str)] = &[("ID", "CONTAINER ID"), ("RunningFor", "CREATED")];

/// List containers
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow ps\n  burrow ps -a\n  burrow ps -aq\n  burrow ps -a --format json\n  burrow ps --format '{{.Names}}: {{.Status}}'\n  burrow ps --format 'table {{.Names}}\\t{{.Ports}}'"
)]
pub struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Only show ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table, json (one object per line), or a Go template
    /// such as '{{.Names}}' or 'table {{.ID}}\t{{.Ports}}' (fields: ID, Image,
    /// Command, CreatedAt, RunningFor, Status, State, ExitCode, Ports, Names,
    /// Labels)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
}

/// The STATUS column, as Docker words it.
pub fn status_text(s: &Status) -> String {
    match s {
        Status::Created => "Created".into(),
        Status::Running { started_at, .. } => format!("Up {}", human_since(started_at)),
        Status::Exited { code, finished_at } => {
            format!("Exited ({code}) {} ago", human_since(finished_at))
        }
    }
}

fn human_since(stamp: &str) -> String {
    timefmt::parse_rfc3339(stamp)
        .map(|t| timefmt::human_duration(timefmt::since(t)))
        .unwrap_or_default()
}

/// The PORTS column of a running container: its bound ports, and the
/// image's exposed ports it did not publish.
pub fn ports_text(dirs: &Dirs, r: &Record, s: &Status) -> String {
    if !matches!(s, Status::Running { .. }) {
        return String::new();
    }
    let bound = container::record::load_runtime(dirs, &r.id)
        .map(|rt| rt.ports)
        .unwrap_or_default();
    ports_column(&bound, &unpublished(&r.config.exposed, &bound))
}

/// One entry of the PORTS column: a published port, or (`ip` none) one
/// only exposed.
struct Shown {
    port: u16,
    ip: Option<IpAddr>,
    host_port: u16,
    protocol: Protocol,
}

/// Ports as Docker's PORTS column words them: sorted by container port,
/// then address; a run of consecutive ports published under their own
/// numbers on one address and protocol becomes one range
/// (`0.0.0.0:9000-9002->9000-9002/tcp`), as does a run of exposed ones
/// (`9000-9002/tcp`); ports published under other numbers follow the
/// ranges one by one (`0.0.0.0:8080->80/tcp`).
pub fn ports_column(bound: &[PortMapping], exposed: &[(u16, Protocol)]) -> String {
    let mut entries: Vec<Shown> = bound
        .iter()
        .map(|p| Shown {
            port: p.container_port,
            ip: Some(p.host_ip),
            host_port: p.host_port,
            protocol: p.protocol,
        })
        .chain(exposed.iter().map(|&(port, protocol)| Shown {
            port,
            ip: None,
            host_port: 0,
            protocol,
        }))
        .collect();
    // Docker compares addresses and protocols as text ("" < "0.0.0.0" < "::").
    entries.sort_by_cached_key(|e| {
        let ip = e.ip.map(|ip| ip.to_string()).unwrap_or_default();
        (e.port, ip, e.host_port, e.protocol.to_string())
    });
    let mut shown = Vec::new();
    let mut renumbered = Vec::new();
    // Open ranges, one per address and protocol, in the order first seen.
    let mut ranges: Vec<(Option<IpAddr>, Protocol, u16, u16)> = Vec::new();
    for e in entries {
        let port = e.port;
        if let Some(ip) = e.ip
            && e.host_port != port
        {
            renumbered.push(mapping_text(ip, &e.host_port, &port, e.protocol));
            continue;
        }
        let open = ranges.iter_mut().find(|r| r.0 == e.ip && r.1 == e.protocol);
        match open {
            Some(r) if r.3.checked_add(1) == Some(port) => r.3 = port,
            Some(r) => {
                shown.push(range_text(r));
                (r.2, r.3) = (port, port);
            }
            None => ranges.push((e.ip, e.protocol, port, port)),
        }
    }
    shown.extend(ranges.iter().map(range_text));
    shown.extend(renumbered);
    shown.join(", ")
}

fn range_text(&(ip, protocol, first, last): &(Option<IpAddr>, Protocol, u16, u16)) -> String {
    let ports = if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    };
    match ip {
        Some(ip) => mapping_text(ip, &ports, &ports, protocol),
        None => format!("{ports}/{protocol}"),
    }
}

/// `0.0.0.0:8080->80/tcp`, `[::]:8080->80/tcp`.
fn mapping_text(ip: IpAddr, host: &dyn Display, inside: &dyn Display, p: Protocol) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]:{host}->{inside}/{p}"),
        IpAddr::V4(ip) => format!("{ip}:{host}->{inside}/{p}"),
    }
}

/// The COMMAND column: the command line quoted, as Docker shows it.
fn command_text(cmd: &[String], no_trunc: bool) -> String {
    let joined = cmd.join(" ");
    let shown = if no_trunc {
        joined
    } else {
        table::truncate(&joined, 20)
    };
    format!("\"{shown}\"")
}

pub fn run(dirs: &Dirs, a: PsArgs) -> Result<i32> {
    let rows: Vec<_> = container::list(dirs)?
        .into_iter()
        .filter(|(_, s)| a.all || matches!(s, Status::Running { .. }))
        .collect();
    let short = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            id[..12].to_string()
        }
    };
    if a.quiet {
        for (r, _) in &rows {
            println!("{}", short(&r.id));
        }
        return Ok(0);
    }
    let format = Format::parse(&a.format)?;
    let json_row = |r: &Record, s: &Status| {
        json!({
            "ID": short(&r.id),
            "Image": r.image,
            "Command": command_text(&r.command, a.no_trunc),
            "CreatedAt": r.created,
            "RunningFor": timefmt::ago(&r.created),
            "Status": status_text(s),
            "State": s.word(),
            "ExitCode": r.last.exit_code,
            "Ports": ports_text(dirs, r, s),
            "Names": r.name,
            "Labels": r.config.labels,
        })
    };
    match format {
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(r, s)| {
                    vec![
                        short(&r.id),
                        r.image.clone(),
                        command_text(&r.command, a.no_trunc),
                        timefmt::ago(&r.created),
                        status_text(s),
                        ports_text(dirs, r, s),
                        r.name.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "CONTAINER ID",
                        "IMAGE",
                        "COMMAND",
                        "CREATED",
                        "STATUS",
                        "PORTS",
                        "NAMES"
                    ],
                    &cells
                )
            );
        }
        Format::Json => {
            for (r, s) in &rows {
                println!("{}", json_row(r, s));
            }
        }
        Format::Template { template, table } => {
            let values: Vec<_> = rows.iter().map(|(r, s)| json_row(r, s)).collect();
            format::print_rows(&template, table, &values, TITLES)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(ip: &str, host_port: u16, container_port: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.parse().unwrap(),
            host_port,
            container_port,
            protocol,
        }
    }

    #[test]
    fn ports_read_as_docker_words_them() {
        use Protocol::{Tcp, Udp};
        // As `-p 8080:80 -p 9000-9002:9000-9002 -p 127.0.0.1:5353:53/udp`
        // binds them, both address families for the unaddressed ones.
        let mut ports = vec![
            mapping("0.0.0.0", 8080, 80, Tcp),
            mapping("::", 8080, 80, Tcp),
        ];
        for port in 9000..=9002 {
            ports.push(mapping("0.0.0.0", port, port, Tcp));
            ports.push(mapping("::", port, port, Tcp));
        }
        ports.push(mapping("127.0.0.1", 5353, 53, Udp));
        assert_eq!(
            ports_column(&ports, &[]),
            "0.0.0.0:9000-9002->9000-9002/tcp, [::]:9000-9002->9000-9002/tcp, \
             127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        // A gap ends a range; a lone port is no range.
        let gap = [9000, 9001, 9003].map(|p| mapping("0.0.0.0", p, p, Tcp));
        assert_eq!(
            ports_column(&gap, &[]),
            "0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:9003->9003/tcp"
        );
        assert_eq!(ports_column(&[], &[]), "");
        // Exposed and not published: by number, before the addresses.
        let exposed = ["80/tcp", "9000/tcp", "9001", "53/udp", "x/sctp", "9000"].map(String::from);
        let bound = [mapping("0.0.0.0", 8080, 80, Tcp)];
        let open = unpublished(&exposed, &bound);
        assert_eq!(open, [(53, Udp), (9000, Tcp), (9001, Tcp)]);
        assert_eq!(
            ports_column(&bound, &open),
            "53/udp, 9000-9001/tcp, 0.0.0.0:8080->80/tcp"
        );
    }
}
