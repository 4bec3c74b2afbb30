//! burrow's minimal init: pid 1 of a container when `--init` is on.
//!
//! A pid 1 has two duties a normal program does not: it must reap orphans
//! that the kernel re-parents to it (or they stay zombies), and the kernel
//! delivers it only signals it has handlers for. This init blocks every
//! signal, waits for them synchronously, forwards all but SIGCHLD to the
//! command, reaps everything, and exits with the command's status when the
//! command ends (which, pid 1 being gone, kills the rest of the namespace).

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::sys;

/// Runs the init loop for `child` (the container's command); never returns.
/// All signals must already be blocked in the calling thread.
pub fn run(child: Pid) -> ! {
    sys::set_process_title("burrow-init");
    let all = SigSet::all();
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(child) {
                    sys::exit_now(code);
                }
            }
            Ok(sig) => {
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited process; returns the command's exit code once it has
/// exited.
fn reap(child: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) if pid == child => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => code = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// The exit code Docker reports for a wait status.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}
