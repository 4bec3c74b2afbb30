//! `logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::container::{self, logs, record};
use crate::paths::Dirs;

/// Print a container's output
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow logs web\n  burrow logs -f --tail 10 web\n  burrow logs -t web"
)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container name or id
    pub container: String,
}

pub fn run(dirs: &Dirs, a: LogsArgs) -> Result<i32> {
    let tail = match a.tail.as_str() {
        "all" => None,
        n => match n.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => bail!("invalid value \"{n}\" for --tail: give a number or \"all\""),
        },
    };
    let rec = container::find(dirs, &a.container)?;
    let path = logs::path(dirs, &rec.id);
    let (mut entries, mut offset) = logs::read_from(&path, 0)?;
    if let Some(n) = tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    print_entries(&entries, a.timestamps);
    if !a.follow {
        return Ok(0);
    }
    // Follow until the container stops, then drain what it wrote last.
    loop {
        let mut r = rec.clone();
        let running = matches!(
            record::status(dirs, &mut r),
            Ok(record::Status::Running { .. })
        );
        let (more, next) = logs::read_from(&path, offset)?;
        offset = next;
        print_entries(&more, a.timestamps);
        if !running {
            let (rest, _) = logs::read_from(&path, offset)?;
            print_entries(&rest, a.timestamps);
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_entries(entries: &[logs::Entry], timestamps: bool) {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for e in entries {
        let sink: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if timestamps {
            let _ = write!(sink, "{} ", e.time);
        }
        let _ = sink.write_all(e.log.as_bytes());
    }
    let _ = out.flush();
}
