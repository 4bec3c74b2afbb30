//! The command line: the only module that knows clap, terminals and exit codes.
//!
//! One file per group of subcommands. Each turns its arguments into calls on
//! [`crate::container`] or [`crate::store`] and prints the result. Errors travel
//! up as `anyhow::Error` and are printed once, here, as `burrow: <chain>`, with
//! exit code 125; a container's own exit code is returned as `Ok(code)`.

mod archive;
mod build;
mod commit;
mod exec;
mod format;
mod image;
mod images;
mod info;
mod inspect;
mod lifecycle;
mod logs;
mod overlay;
mod port;
mod ps;
mod registry;
mod run;
mod store_helper;
pub mod table;
mod template;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::paths::Dirs;

/// Exit code for burrow's own failures, as Docker's.
pub const EXIT_BURROW: i32 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "burrow",
    version,
    about = "Rootless containers: no daemon, no root, Docker's commands",
    after_help = "Examples:\n  burrow import rootfs.tar busybox\n  burrow run --rm busybox echo hello\n  burrow run -d --name web busybox httpd -f -p 8000\n  burrow ps -a\n  burrow logs -f web"
)]
pub struct Cli {
    /// Folder for images and containers [default: $XDG_DATA_HOME/burrow]
    #[arg(
        long,
        global = true,
        env = "BURROW_ROOT",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    root: Option<PathBuf>,
    /// Folder for runtime state [default: $XDG_RUNTIME_DIR/burrow or /tmp/burrow-run-UID]
    #[arg(
        long,
        global = true,
        env = "BURROW_RUNROOT",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    runroot: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Run(run::RunArgs),
    Create(run::CreateArgs),
    Start(lifecycle::StartArgs),
    Stop(lifecycle::StopArgs),
    Restart(lifecycle::RestartArgs),
    Kill(lifecycle::KillArgs),
    Rm(lifecycle::RmArgs),
    Wait(lifecycle::WaitArgs),
    Ps(ps::PsArgs),
    Logs(logs::LogsArgs),
    Exec(exec::ExecArgs),
    Port(port::PortArgs),
    Inspect(inspect::InspectArgs),
    Build(build::BuildArgs),
    History(build::HistoryArgs),
    Diff(commit::DiffArgs),
    Commit(commit::CommitArgs),
    Import(images::ImportArgs),
    Images(images::ImagesArgs),
    Rmi(images::RmiArgs),
    Tag(images::TagArgs),
    Save(archive::SaveArgs),
    Image(image::ImageArgs),
    Load(archive::LoadArgs),
    Pull(registry::PullArgs),
    Push(registry::PushArgs),
    Login(registry::LoginArgs),
    Logout(registry::LogoutArgs),
    Search(registry::SearchArgs),
    Info(info::InfoArgs),
    #[command(name = "overlay-mount", hide = true)]
    OverlayMount(overlay::OverlayMountArgs),
    #[command(name = "store-helper", hide = true)]
    StoreHelper(store_helper::StoreHelperArgs),
}

/// Parses the command line, runs it and returns the process exit code.
pub fn main() -> i32 {
    // Rust ignores SIGPIPE; a CLI piped into `head` should just stop.
    crate::sandbox::sys::set_sigpipe(true);
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("burrow: {e:#}");
            // A command that could not start keeps Docker's 126 or 127.
            e.downcast_ref::<crate::container::StartError>()
                .map_or(EXIT_BURROW, |s| s.code)
        }
    }
}

/// Says a full disk once, in the user's terms: what could not be done, on
/// which data folder, and what to do, instead of the file that could not be
/// written. Other errors pass through unchanged.
fn disk_full(e: anyhow::Error, what: &str, dirs: &Dirs) -> anyhow::Error {
    let full = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC))
            // Causes that crossed a process boundary (the unpack helper) as text.
            || cause.to_string().contains("No space left on device")
    });
    if !full {
        return e;
    }
    anyhow::anyhow!(
        "{what}: no space left on device in {}; free some space there or use --root on a larger filesystem",
        dirs.data.display()
    )
}

fn dispatch(cli: Cli) -> Result<i32> {
    // `info` must work even when the state folders cannot be created.
    if let Command::Info(args) = &cli.command {
        return info::run(cli.root, cli.runroot, args);
    }
    // Neither does the overlay debug server, which uses no store.
    if let Command::OverlayMount(args) = cli.command {
        return overlay::run(args);
    }
    if let Command::StoreHelper(args) = cli.command {
        return store_helper::run(args);
    }
    store_helper::configure_store();
    let dirs = Dirs::resolve(cli.root, cli.runroot)?;
    match cli.command {
        Command::Run(a) => run::run(&dirs, a),
        Command::Create(a) => run::create(&dirs, a),
        Command::Start(a) => lifecycle::start(&dirs, a),
        Command::Stop(a) => lifecycle::stop(&dirs, a),
        Command::Restart(a) => lifecycle::restart(&dirs, a),
        Command::Kill(a) => lifecycle::kill(&dirs, a),
        Command::Rm(a) => lifecycle::rm(&dirs, a),
        Command::Wait(a) => lifecycle::wait(&dirs, a),
        Command::Ps(a) => ps::run(&dirs, a),
        Command::Logs(a) => logs::run(&dirs, a),
        Command::Exec(a) => exec::run(&dirs, a),
        Command::Port(a) => port::run(&dirs, a),
        Command::Inspect(a) => inspect::run(&dirs, a),
        Command::Build(a) => build::build(&dirs, a),
        Command::History(a) => build::history(&dirs, a),
        Command::Diff(a) => commit::diff(&dirs, a),
        Command::Commit(a) => commit::commit(&dirs, a),
        Command::Import(a) => images::import(&dirs, a),
        Command::Images(a) => images::images(&dirs, a),
        Command::Rmi(a) => images::rmi(&dirs, a),
        Command::Tag(a) => images::tag(&dirs, a),
        Command::Save(a) => archive::save(&dirs, a),
        Command::Image(a) => image::run(&dirs, a),
        Command::Load(a) => archive::load(&dirs, a),
        Command::Pull(a) => registry::pull(&dirs, a),
        Command::Push(a) => registry::push(&dirs, a),
        Command::Login(a) => registry::login(a),
        Command::Logout(a) => registry::logout(a),
        Command::Search(a) => registry::search(a),
        Command::Info(_) | Command::OverlayMount(_) | Command::StoreHelper(_) => {
            unreachable!("handled above")
        }
    }
}
