//! `overlay-mount` (hidden): serves burrow's FUSE overlay on a folder in the
//! foreground, for debugging, tests and benchmarks. Containers do not use
//! it; they get the overlay from the container module.

use std::path::PathBuf;
use std::thread;

use anyhow::{Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::overlay::{Options, Server};

/// Mount burrow's FUSE overlay and serve it until unmounted or signalled
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    burrow overlay-mount --lower img/top --lower img/base --upper up --work work mnt\n  \
    fusermount3 -u mnt        # or Ctrl-C / SIGTERM: unmounts and exits")]
pub struct OverlayMountArgs {
    /// A read-only layer; repeat it, TOP FIRST (overlayfs's lowerdir order):
    /// the first --lower covers the second
    #[arg(long = "lower", value_name = "DIR", required = true)]
    pub lowers: Vec<PathBuf>,
    /// The writable layer: copies, new files and whiteouts land here
    #[arg(long, value_name = "DIR")]
    pub upper: PathBuf,
    /// An empty folder on the upper dir's filesystem, for staging copies
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,
    /// Let other users use the mount (needs user_allow_other in /etc/fuse.conf when unprivileged)
    #[arg(long)]
    pub allow_other: bool,
    /// Request-serving threads [default: half the CPUs, 1 to 4]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Where to mount
    pub mountpoint: PathBuf,
}

pub fn run(a: OverlayMountArgs) -> Result<i32> {
    let mut opts = Options::new(a.lowers, a.upper, a.work);
    opts.allow_other = a.allow_other;
    if let Some(n) = a.threads {
        opts.threads = n;
    }
    // Blocked before any thread starts, so only the waiter below sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("cannot block signals")?;
    let mut server = Server::mount(&opts, &a.mountpoint)
        .with_context(|| format!("cannot serve the overlay on {}", a.mountpoint.display()))?;
    let mut unmounter = server.unmounter();
    thread::spawn(move || {
        if signals.wait().is_ok() {
            let _ = unmounter.unmount();
        }
    });
    // A line for scripts that wait for the mount.
    println!("mounted {}", a.mountpoint.display());
    server.run().context("the overlay server failed")?;
    Ok(0)
}
