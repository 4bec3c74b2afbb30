//! The extended-attribute system calls, which neither std nor `nix` wraps.
//!
//! Every `unsafe` block of the overlay lives here, one small function each.
//! The path ones work on the path itself, never following a final symlink (the
//! `l*` variants), as the overlay must report a symlink's own attributes.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Reads the value of `name` into `buf`; an empty `buf` asks for the size.
pub fn lgetxattr(path: &Path, name: &OsStr, buf: &mut [u8]) -> io::Result<usize> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // kernel writes at most `buf.len()` bytes to `buf`, and a zero length
    // with a dangling-but-aligned pointer is the documented size query.
    check(unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// [`lgetxattr`] on an open file: a descriptor a serving thread holds for
/// a node answers without walking its path.
pub fn fgetxattr(file: &impl AsFd, name: &OsStr, buf: &mut [u8]) -> io::Result<usize> {
    let n = cstr(name)?;
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: `fd` is open for the whole call (borrowed from `file`), `n` is
    // NUL-terminated and lives across it, and the kernel writes at most
    // `buf.len()` bytes to `buf` (a zero length is the size query).
    check(unsafe { libc::fgetxattr(fd, n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Lists the attribute names (NUL-separated) into `buf`; an empty `buf` asks
/// for the size.
pub fn llistxattr(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: as for lgetxattr: a valid C string and a buffer the kernel
    // writes at most `buf.len()` bytes into.
    check(unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Sets `name` to `value`; `flags` is XATTR_CREATE, XATTR_REPLACE or 0.
pub fn lsetxattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    // SAFETY: valid C strings; the kernel only reads `value.len()` bytes.
    let ret = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(ret as libc::ssize_t).map(drop)
}

pub fn lremovexattr(path: &Path, name: &OsStr) -> io::Result<()> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    // SAFETY: two valid C strings, nothing written.
    let ret = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    check(ret as libc::ssize_t).map(drop)
}

/// All attributes of `path` as (name, value) pairs, for copy-up. Sizes are
/// asked first; an attribute that grows in between is retried once.
pub fn all_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let size = match llistxattr(path, &mut []) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size];
    let n = llistxattr(path, &mut names)?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let len = match lgetxattr(path, name_os, &mut []) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        let mut value = vec![0u8; len];
        let got = lgetxattr(path, name_os, &mut value)?;
        value.truncate(got);
        out.push((name.to_vec(), value));
    }
    Ok(out)
}
