//! System calls the store needs beyond std: `lsetxattr`, to record a file's
//! owner where it cannot be chowned, `syncfs`, to flush a whole unpacked
//! layer in one call, `sync_file_range`, to start that writeback early, and
//! `F_SETPIPE_SZ` for the pipe to the unpack helper.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Sets the extended attribute `name` of `path` itself (never a symlink's target).
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let p = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    let n = CString::new(name).map_err(invalid)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // kernel reads exactly `value.len()` bytes from `value`.
    let ret = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes back every dirty file of the filesystem holding `file`.
pub fn syncfs(file: &File) -> io::Result<()> {
    nix::unistd::syncfs(file).map_err(io::Error::from)
}

/// Starts writing `len` bytes of `file` from `offset` back to disk, without
/// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Durability
/// still comes from [`syncfs`]; this only means that flush finds most of
/// the data written already, instead of all of it at the end.
pub fn start_writeback(file: &impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    let too_big = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let offset = libc::off64_t::try_from(offset).map_err(too_big)?;
    let len = libc::off64_t::try_from(len).map_err(too_big)?;
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: the fd is open for the duration of the call (borrowed from
    // `file`); the call takes only integers and touches no user memory.
    let ret = unsafe { libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); the kernel may refuse
/// above `/proc/sys/fs/pipe-max-size` for an unprivileged caller.
pub fn set_pipe_size(pipe: &impl std::os::fd::AsFd, bytes: usize) -> io::Result<()> {
    let size = i32::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size))
        .map(drop)
        .map_err(io::Error::from)
}
