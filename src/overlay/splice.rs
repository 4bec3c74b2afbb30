//! Answering a READ by splicing the backing file into `/dev/fuse`.
//!
//! fuser answers a READ with `writev` from a buffer the server filled with
//! `pread`: the kernel copies every byte twice (page cache to buffer, buffer
//! to the reader's page). Here the answer goes through a pipe instead: the
//! 16-byte `fuse_out_header` is written into the pipe, the file's pages are
//! spliced in behind it (references, no copy), and the pipe is spliced into
//! the `/dev/fuse` descriptor, where the kernel copies each byte once into
//! the reader's page. fuse-overlayfs answers the same way (libfuse's splice).
//!
//! The answer must go back on the descriptor the request was read from
//! (the kernel looks the request up in that descriptor's queue), so the
//! session serves every thread from its one descriptor (no `clone_fd`) and
//! [`Splicer`] holds a duplicate of it.
//!
//! All or nothing. The header states the length before the data is in the
//! pipe, so the length comes from `fstat`; if the file then yields fewer
//! bytes (it shrank meanwhile), or any step fails, nothing has reached the
//! kernel: the pipe, perhaps holding part of a message, is closed, and the
//! caller answers the usual way. `/dev/fuse` takes the whole message from
//! the pipe even when it refuses it, so a pipe is never left half-read.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};

/// The size of `struct fuse_out_header`: length, error, request id.
const HEADER: usize = 16;
/// The pipe size asked for: 1 MiB is what an unprivileged process may set
/// (`/proc/sys/fs/pipe-max-size`); the kernel may give less.
const PIPE_SIZE: i32 = 1 << 20;
/// Reads smaller than this are answered the usual way: for a few pages,
/// the extra system calls (fstat, header, two splices, the refused second
/// answer) cost more than the copy they save.
pub const MIN_SPLICE: usize = 64 * 1024;

/// A pipe of this thread, reused from one answer to the next.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// The most data one answer may carry: the pipe's size less a page for
    /// the header and one for a file offset that is not page-aligned.
    max_data: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // A smaller pipe (an older kernel, a lower limit) only lowers the
        // largest read that can be spliced.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ)? as usize;
        Ok(Pipe {
            read,
            write,
            max_data: size.saturating_sub(2 * page_size()),
        })
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as usize)
}

thread_local! {
    /// This serving thread's pipe; dropped after any failure, so a pipe
    /// that may hold part of a message is never used again.
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Sends READ answers by splice on the session's `/dev/fuse` descriptor.
#[derive(Debug)]
pub struct Splicer {
    dev: OwnedFd,
}

impl Splicer {
    /// `dev` must be (a duplicate of) the descriptor every request of the
    /// session is read from.
    pub fn new(dev: OwnedFd) -> Splicer {
        Splicer { dev }
    }

    /// Answers request `unique` with up to `size` bytes of `file` from
    /// `offset`. `Ok(false)`: not spliced (too small, past the end, larger
    /// than the pipe, or a step failed); nothing was sent, so the caller
    /// must answer. `Ok(true)`: the kernel has the answer.
    pub fn reply(&self, unique: u64, file: &File, offset: u64, size: usize) -> io::Result<bool> {
        let len = file.metadata()?.len();
        let data = len.saturating_sub(offset).min(size as u64) as usize;
        if data < MIN_SPLICE {
            return Ok(false);
        }
        PIPE.with_borrow_mut(|slot| {
            if slot.is_none() {
                *slot = Some(Pipe::new()?);
            }
            let pipe = slot.as_ref().expect("just made");
            if data > pipe.max_data {
                return Ok(false);
            }
            let sent = self.send(pipe, unique, file, offset, data);
            if sent.is_err() {
                *slot = None;
            }
            Ok(sent.is_ok())
        })
    }

    /// One answer through `pipe`: header, data, then the whole message
    /// into `/dev/fuse` in one splice (the kernel takes a message per write).
    fn send(
        &self,
        pipe: &Pipe,
        unique: u64,
        file: &File,
        offset: u64,
        data: usize,
    ) -> io::Result<()> {
        let total = HEADER + data;
        nix::unistd::write(&pipe.write, &header(total, unique))?;
        let mut off = offset as libc::loff_t;
        let mut left = data;
        while left > 0 {
            let n = splice(
                file.as_fd(),
                Some(&mut off),
                &pipe.write,
                None,
                left,
                SpliceFFlags::empty(),
            )?;
            if n == 0 {
                // The file shrank after the fstat: the header is wrong.
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            left -= n;
        }
        // Not SPLICE_F_MOVE: /dev/fuse would then try to steal the pages
        // for the mount's own cache, and taking a page out of the pipe
        // takes it out of the backing file's cache too (the profile showed
        // the lower file read from disk again on every run).
        let n = splice(
            &pipe.read,
            None,
            self.dev.as_fd(),
            None,
            total,
            SpliceFFlags::empty(),
        )?;
        if n != total {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// `struct fuse_out_header` for a successful answer of `total` bytes
/// (header included) to request `unique`, in the kernel's byte order.
fn header(total: usize, unique: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
    // h[4..8], the error, stays 0.
    h[8..16].copy_from_slice(&unique.to_ne_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_the_kernels() {
        let h = header(16 + 4096, 0x0102_0304_0506_0708);
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 4112);
        assert_eq!(i32::from_ne_bytes(h[4..8].try_into().unwrap()), 0);
        assert_eq!(
            u64::from_ne_bytes(h[8..16].try_into().unwrap()),
            0x0102_0304_0506_0708
        );
    }
}
