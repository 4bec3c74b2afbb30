//! `ps`.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::format::{self, Format};
use super::table;
use crate::container::{self, record::Record, record::Status};
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

/// The PORTS column: `0.0.0.0:8080->80/tcp, ...`, from the bound ports of
/// a running container.
pub fn ports_text(dirs: &Dirs, id: &str, s: &Status) -> String {
    if !matches!(s, Status::Running { .. }) {
        return String::new();
    }
    container::record::load_runtime(dirs, id)
        .map(|rt| {
            rt.ports
                .iter()
                .map(port_text)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub fn port_text(p: &crate::net::PortMapping) -> String {
    let host = match p.host_ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!(
        "{host}:{}->{}/{}",
        p.host_port, p.container_port, p.protocol
    )
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
            "Ports": ports_text(dirs, &r.id, s),
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
                        ports_text(dirs, &r.id, s),
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
