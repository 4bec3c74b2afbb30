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

use crate::sandbox::sys::{set_window_size, window_size};

/// A container's terminal, as the supervisor holds it.
pub struct Console {
    master: OwnedFd,
    /// The user's terminal settings to put back, while it is in raw mode.
    restore: Option<Termios>,
}

impl Console {
    /// Takes the master. `user`: whether this process is attached to the
    /// user (a foreground run), whose terminal then sizes the container's;
    /// otherwise, or when the user has no terminal, it is 24 by 80 (a
    /// terminal of no size confuses programs that ask).
    pub fn new(master: OwnedFd, user: bool) -> Console {
        let console = Console {
            master,
            restore: None,
        };
        if !(user && console.resize()) {
            let _ = set_window_size(console.master.as_fd(), 24, 80);
        }
        console
    }

    /// A descriptor of the master to read the container's output from.
    pub fn output(&self) -> Result<OwnedFd> {
        self.master
            .try_clone()
            .context("cannot duplicate the terminal")
    }

    /// Gives the container's terminal the size of the user's (standard
    /// output's, else standard input's); false if the user has none.
    pub fn resize(&self) -> bool {
        let size = window_size(io::stdout().as_fd()).or_else(|| window_size(io::stdin().as_fd()));
        match size {
            Some((rows, cols)) if rows > 0 && cols > 0 => {
                set_window_size(self.master.as_fd(), rows, cols).is_ok()
            }
            _ => false,
        }
    }

    /// Sends standard input to the container's terminal from a thread of
    /// its own, the user's terminal in raw mode meanwhile (if standard input
    /// is one). Call after the last fork: this starts a thread.
    pub fn forward_input(&mut self) -> Result<()> {
        let stdin = io::stdin();
        if let Ok(saved) = termios::tcgetattr(stdin.as_fd()) {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                .context("cannot put the terminal in raw mode")?;
            self.restore = Some(saved);
        }
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

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(saved) = self.restore.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &saved);
        }
    }
}
