//! The supervisor's end of a container's pseudo-terminal (`run -t`).
//!
//! The terminal is made inside the container (its own devpts, see
//! `sandbox::child`), and its master comes here. Output from the master is
//! logged and shown like a pipe's (`supervisor::serve`); this module adds
//! the rest of what a terminal user expects: the window size of the user's
//! terminal, kept up to date on SIGWINCH, and with `-i` the user's keys,
//! sent raw (the user's terminal in raw mode until the container ends, so
//! Ctrl-C reaches the container's terminal as a byte and becomes its
//! SIGINT there).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};

use crate::sandbox::follow_user_terminal;

/// A container's terminal, as the supervisor holds it.
pub struct Console {
    master: OwnedFd,
    /// The user's terminal, in raw mode while keys are forwarded.
    raw: Option<RawMode>,
}

/// The user's terminal (standard input) in raw mode: keys go through as
/// typed, Ctrl-C included. Its settings come back when this is dropped.
pub struct RawMode(Termios);

impl RawMode {
    /// `None` when standard input is not a terminal.
    pub fn enter() -> Result<Option<RawMode>> {
        let stdin = io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return Ok(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(Some(RawMode(saved)))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &self.0);
    }
}

impl Console {
    /// Takes the master (sized already, see `ProcessPlan::terminal_size`).
    pub fn new(master: OwnedFd) -> Console {
        Console { master, raw: None }
    }

    /// A descriptor of the master to read the container's output from.
    pub fn output(&self) -> Result<OwnedFd> {
        self.master
            .try_clone()
            .context("cannot duplicate the terminal")
    }

    /// Gives the container's terminal the size of the user's, if there is
    /// one (on SIGWINCH).
    pub fn resize(&self) {
        follow_user_terminal(self.master.as_fd());
    }

    /// Sends standard input to the container's terminal from a thread of
    /// its own, the user's terminal in raw mode meanwhile (if standard input
    /// is one). Call after the last fork: this starts a thread.
    pub fn forward_input(&mut self) -> Result<()> {
        self.raw = RawMode::enter()?;
        let mut to = std::fs::File::from(self.output()?);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut from = io::stdin().lock();
                // Ends with the input, or when the container's terminal is
                // gone (the write fails); the process does not wait for it.
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the input thread")?;
        Ok(())
    }
}
