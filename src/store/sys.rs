//! System calls the store needs beyond std: `lsetxattr`, to record a file's
//! owner where it cannot be chowned, `syncfs`, to flush a whole unpacked
//! layer in one call, and `F_SETPIPE_SZ` for the pipe to the unpack helper.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
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

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); the kernel may refuse
/// above `/proc/sys/fs/pipe-max-size` for an unprivileged caller.
pub fn set_pipe_size(pipe: &impl std::os::fd::AsFd, bytes: usize) -> io::Result<()> {
    let size = i32::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size))
        .map(drop)
        .map_err(io::Error::from)
}
