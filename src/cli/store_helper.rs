//! `store-helper` (hidden): the store's work that needs the caller's
//! subordinate ids, run as root of a user namespace with the caller's maps.
//! The store starts it as a child process (never forks itself: pulls run on
//! several threads) and talks to it over stdin and stdout.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::store::{self, Ownership};

#[derive(Args, Debug)]
pub struct StoreHelperArgs {
    #[command(subcommand)]
    pub command: HelperCommand,
}

#[derive(Subcommand, Debug)]
pub enum HelperCommand {
    /// Unpack a plain tar stream from stdin into DEST, keeping owners
    Unpack { dest: PathBuf },
    /// Write DIR's contents as a tar stream to stdout, with the owners as
    /// the namespace sees them
    Pack { dir: PathBuf },
    /// Remove PATH and everything below it
    Remove { path: PathBuf },
}

pub fn run(a: StoreHelperArgs) -> Result<i32> {
    let ids = crate::container::host_ids();
    let code = crate::sandbox::as_namespace_root(
        nix::sched::CloneFlags::empty(),
        &ids.uid_map,
        &ids.gid_map,
        || match &a.command {
            HelperCommand::Unpack { dest } => store::helper_unpack(dest),
            HelperCommand::Pack { dir } => store::helper_pack(dir),
            HelperCommand::Remove { path } => store::helper_remove(path),
        },
    )?;
    Ok(code)
}

/// Tells the store how to unpack layers in this process: in the helper when
/// the caller has subordinate ranges, with owners in xattrs when not.
pub fn configure_store() {
    let ids = crate::container::host_ids();
    let ownership = match std::env::current_exe() {
        Ok(exe) if ids.is_range() => Ownership::Namespace(exe),
        _ => Ownership::Record,
    };
    store::set_ownership(ownership);
}
