//! Layers: a tarball in, an unpacked folder and its diff_id out.
//!
//! The tarball may be plain, gzip or zstd; the magic bytes decide. The
//! *uncompressed* stream is hashed while [`super::unpack`] makes the files,
//! so the diff_id costs no second pass; bytes after the end-of-archive
//! marker are hashed too, because the diff_id covers the whole stream.
//! Decompression, unpacking and hashing each run on a thread of their own
//! ([`unpack_owned`]).
//!
//! Owners, by [`Ownership`] (set once per process by the CLI): with a
//! subordinate id range, the unpack runs in a helper process that is root of
//! a user namespace with the caller's maps and chowns every entry, so a file
//! owned by uid 1000 in the image belongs to host id `subuid start + 999`;
//! with only one id, owners are recorded in a `user.burrow.owner` xattr
//! (`uid:gid:mode`) for the overlay to present; by default (library tests)
//! they are dropped ([`super::pack`] reads the owners back the same ways).
//! What becomes of each kind of entry, and how paths are kept inside the
//! layer, is [`super::unpack`]'s to say.

use std::fs;
use std::io::{self, Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use thiserror::Error;

use super::{stream, unpack};
pub use crate::image::OWNER_XATTR;
use crate::image::{Digest, OwnerRecord};

#[derive(Debug, Error)]
pub enum LayerError {
    #[error("the tarball is {0}-compressed; give a plain, gzip or zstd tarball")]
    UnsupportedCompression(&'static str),
    #[error("the tarball holds no files; is it a tar archive?")]
    Empty,
    #[error("tar entry \"{0}\" points outside the root folder; refusing to unpack it")]
    PathEscape(String),
    #[error("cannot read the tarball; is it a tar archive?")]
    Read(#[source] io::Error),
    #[error("the unpack helper failed: {0}")]
    Helper(String),
    #[error("cannot unpack tar entry \"{path}\"")]
    Unpack {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How a tarball is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

/// The longest magic number we look for (xz's).
const MAGIC_LEN: usize = 6;

/// Recognises gzip, zstd, xz and bzip2 by magic bytes; anything else is
/// taken for a plain tar (whose first bytes are a file name).
pub fn detect(magic: &[u8]) -> Compression {
    match magic {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        _ => Compression::Plain,
    }
}

/// What unpacking produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of regular file content written.
    pub size: u64,
    /// Block and character devices left out.
    pub skipped_devices: u64,
    /// The latest mtime of any entry, in seconds since the epoch.
    pub newest_mtime: u64,
}

/// What becomes of the owners a tarball records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Dropped: every file belongs to the caller.
    Drop,
    /// Recorded in [`OWNER_XATTR`] on each entry not owned by 0:0.
    Record,
    /// Applied with `lchown`: the caller is root of a user namespace that maps them.
    Keep,
}

/// How this process unpacks layers.
#[derive(Debug, Clone)]
pub enum Ownership {
    /// Owners dropped.
    Drop,
    /// Owners recorded in xattrs (only one id is mapped).
    Record,
    /// Unpacked by `EXE store-helper unpack DEST` as root of a user namespace
    /// with the caller's subordinate ranges.
    Namespace(PathBuf),
}

static OWNERSHIP: OnceLock<Ownership> = OnceLock::new();

/// Chooses how layers are unpacked for the rest of the process; the first
/// call wins.
pub fn set_ownership(ownership: Ownership) {
    let _ = OWNERSHIP.set(ownership);
}

pub(super) fn ownership() -> &'static Ownership {
    OWNERSHIP.get().unwrap_or(&Ownership::Drop)
}

/// Unpacks as [`set_ownership`] chose.
pub fn unpack_configured(input: impl Read, dest: &Path) -> Result<Unpacked, LayerError> {
    match ownership() {
        Ownership::Drop => unpack(input, dest),
        Ownership::Record => unpack_owned(input, dest, Owners::Record),
        Ownership::Namespace(exe) => without_sigpipe(|| unpack_in_helper(input, dest, exe)),
    }
}

/// Runs `f` with SIGPIPE blocked on this thread, so that a write to an
/// unpack helper that died (a full disk) fails with EPIPE and is reported
/// with the helper's reason, instead of the SIGPIPE the CLI keeps fatal for
/// its own stdout killing burrow without a word. The SIGPIPE such a write
/// leaves pending is taken before the mask is restored.
fn without_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    let Ok(old) = pipe.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
        return f();
    };
    let result = f();
    if !old.contains(Signal::SIGPIPE) {
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        if let Ok(pending) = SignalFd::with_flags(&pipe, flags) {
            while let Ok(Some(_)) = pending.read_signal() {}
        }
    }
    let _ = old.thread_set_mask();
    result
}

/// Unpacks the tarball read from `input` into the existing folder `dest`.
pub fn unpack(input: impl Read, dest: &Path) -> Result<Unpacked, LayerError> {
    unpack_owned(input, dest, Owners::Drop)
}

/// Has the helper process decompress, hash and unpack the stream from a
/// pipe in its user namespace; it answers with the diff_id and counts as
/// JSON. The compressed bytes cross the pipe, a third of the tar's: the
/// copies in and out of the pipe cost more than the decompression saves.
fn unpack_in_helper(mut input: impl Read, dest: &Path, exe: &Path) -> Result<Unpacked, LayerError> {
    // Refused compressions are named here, before a process starts.
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_up_to(&mut input, &mut magic).map_err(LayerError::Read)?;
    match detect(&magic[..n]) {
        Compression::Xz => return Err(LayerError::UnsupportedCompression("xz")),
        Compression::Bzip2 => return Err(LayerError::UnsupportedCompression("bzip2")),
        _ => {}
    }
    let helper_err = |what: String| LayerError::Helper(what);
    let mut child = Command::new(exe)
        .args(["store-helper", "unpack"])
        .arg(dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| helper_err(format!("cannot start {}: {e}", exe.display())))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A bigger pipe and bigger writes: fewer switches between this process
    // and the helper (8 KiB writes into a 64 KiB pipe made one every few
    // dozen microseconds). Best effort: a smaller pipe only costs time.
    let _ = super::sys::set_pipe_size(&stdin, PIPE_SIZE);
    let copied = io::Write::write_all(&mut stdin, &magic[..n])
        .and_then(|()| copy_in_chunks(&mut input, &mut stdin));
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| helper_err(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // Input that fails (a download or copy that hit a full disk) cuts the
    // helper's stream short, and its "failed to write entire file" would
    // hide the cause; a broken pipe is the helper's doing, said below.
    let copied = match copied {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(LayerError::Read(e)),
        other => other,
    };
    if !out.status.success() {
        let detail = stderr
            .strip_prefix("burrow: ")
            .unwrap_or(&stderr)
            .to_string();
        return Err(match serde_json::from_slice::<HelperFailure>(&out.stdout) {
            Ok(f) if f.empty => LayerError::Empty,
            _ => helper_err(detail),
        });
    }
    copied.map_err(LayerError::Read)?;
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| helper_err(format!("unreadable answer ({e}): {stderr}")))?;
    let diff_id = answer
        .diff_id
        .parse()
        .map_err(|e| helper_err(format!("unreadable answer: {e}")))?;
    Ok(Unpacked {
        diff_id,
        size: answer.size,
        skipped_devices: answer.skipped_devices,
        newest_mtime: answer.newest_mtime,
    })
}

/// What the helper prints when it unpacked a layer.
#[derive(serde::Serialize, serde::Deserialize)]
struct HelperAnswer {
    diff_id: String,
    size: u64,
    skipped_devices: u64,
    newest_mtime: u64,
}

/// The pipe to the helper, and the writes into it.
const PIPE_SIZE: usize = 1 << 20;
const COPY_CHUNK: usize = 256 << 10;

/// `io::copy` with bigger reads and writes than its 8 KiB.
fn copy_in_chunks(from: &mut impl Read, to: &mut impl io::Write) -> io::Result<u64> {
    let mut buf = vec![0; COPY_CHUNK];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[derive(serde::Deserialize)]
struct HelperFailure {
    #[serde(default)]
    empty: bool,
}

/// The helper's side of [`unpack_in_helper`]: unpacks stdin keeping owners
/// and prints the counts as JSON. Runs as root of the user namespace.
pub fn helper_unpack(dest: &Path) -> i32 {
    // Working inside `dest` (this process does nothing else) lets the tar
    // crate's per-entry `realpath` checks resolve only the path inside the
    // layer, not the store's own path again for every file.
    let unpacked = std::env::set_current_dir(dest)
        .map_err(|e| LayerError::Helper(format!("cannot enter {}: {e}", dest.display())))
        .and_then(|()| {
            // Read to the end, so the parent's writes of any bytes after
            // the compressed stream do not fail.
            let mut stdin = io::stdin().lock();
            let unpacked = unpack_owned(&mut stdin, Path::new("."), Owners::Keep)?;
            io::copy(&mut stdin, &mut io::sink()).map_err(LayerError::Read)?;
            Ok(unpacked)
        });
    match unpacked {
        Ok(u) => {
            let answer = HelperAnswer {
                diff_id: u.diff_id.to_string(),
                size: u.size,
                skipped_devices: u.skipped_devices,
                newest_mtime: u.newest_mtime,
            };
            println!("{}", serde_json::to_string(&answer).unwrap_or_default());
            0
        }
        Err(LayerError::Empty) => {
            println!("{{\"empty\":true}}");
            1
        }
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("burrow: {text}");
            1
        }
    }
}

/// Unpacks with `owners` deciding what becomes of the recorded owners.
///
/// Three threads, so one layer can keep two cores busy: this one
/// decompresses, another makes the files, a third hashes the tar stream
/// (the diff_id) behind it. The stream is hashed to its end, past the
/// end-of-archive marker: the diff_id covers it all.
pub fn unpack_owned(input: impl Read, dest: &Path, owners: Owners) -> Result<Unpacked, LayerError> {
    let tar = decompress(input)?;
    let (tx, mut reader) = stream::channel();
    let (stats, (_, decoded), diff_id) = std::thread::scope(|s| {
        let hasher = stream::spawn_hasher(s, &mut reader);
        let unpacker = s.spawn(move || {
            let stats = unpack::unpack_tar(&mut reader, dest, owners)?;
            // Take the rest, so the pump reads (and the hasher sees) it all.
            io::copy(&mut reader, &mut io::sink()).map_err(LayerError::Read)?;
            Ok(stats)
        });
        let decoded = stream::pump(tar, None, tx, stream::Drain::Stop);
        let panicked = |what: &str| LayerError::Helper(format!("the {what} thread panicked"));
        let stats = unpacker.join().unwrap_or_else(|_| Err(panicked("unpack")));
        let diff_id = hasher.join().map_err(|_| panicked("hash"));
        (stats, decoded, diff_id)
    });
    let stats = stats?;
    decoded.map_err(LayerError::Read)?;
    Ok(Unpacked {
        diff_id: diff_id?,
        size: stats.size,
        skipped_devices: stats.skipped_devices,
        newest_mtime: stats.newest_mtime,
    })
}

/// The owner an unpack in [`Owners::Record`] mode wrote on `path`, if any:
/// uid, gid and mode.
pub fn recorded_owner(path: &Path) -> Option<(u64, u64, u32)> {
    let value = xattr::get(path, OWNER_XATTR).ok()??;
    let o = OwnerRecord::parse(&value)?;
    Some((o.uid.into(), o.gid.into(), o.mode))
}

/// Peeks at the magic bytes, then wraps `input` in the matching decoder.
pub(super) fn decompress<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_up_to(&mut input, &mut magic).map_err(LayerError::Read)?;
    let stream =
        io::BufReader::with_capacity(64 << 10, Cursor::new(magic[..n].to_vec()).chain(input));
    Ok(match detect(&magic[..n]) {
        Compression::Plain => Box::new(stream),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(stream).map_err(LayerError::Read)?)
        }
        Compression::Xz => return Err(LayerError::UnsupportedCompression("xz")),
        Compression::Bzip2 => return Err(LayerError::UnsupportedCompression("bzip2")),
    })
}

/// Fills `buf` unless the stream ends first; pipes may return short reads.
pub(crate) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Renames an unpacked folder into place. A directory can only move to a new
/// parent when it is writable (its `..` entry changes), so a read-only layer
/// root is opened up for the move and closed again after.
pub fn move_into_place(from: &Path, to: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(from)?.permissions().mode();
    if mode & 0o200 == 0 {
        fs::set_permissions(from, fs::Permissions::from_mode(mode | 0o700))?;
    }
    fs::rename(from, to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode & 0o7777))
}

/// Removes a folder tree that may hold read-only directories (an unpacked
/// rootfs usually does), which plain `remove_dir_all` cannot empty.
///
/// Files owned by subordinate ids (a layer unpacked with its owners) are
/// removed by the helper, as root of the user namespace that maps them.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let opened = open_up(path).and_then(|()| fs::remove_dir_all(path));
    match (opened, ownership()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Ownership::Namespace(exe)) => {
            let status = Command::new(exe)
                .args(["store-helper", "remove"])
                .arg(path)
                .stdin(Stdio::null())
                .status()?;
            if status.success() && !path.exists() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "cannot remove {}: files in it belong to ids burrow cannot map",
                    path.display()
                )))
            }
        }
        (Err(e), _) => Err(e),
    }
}

/// The helper's side of [`remove_tree`], as root of the user namespace.
pub fn helper_remove(path: &Path) -> i32 {
    let removed = open_up(path).and_then(|()| fs::remove_dir_all(path));
    i32::from(removed.is_err())
}

/// Gives the owner rwx on every directory under `dir`, without following symlinks.
fn open_up(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            open_up(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{add_file, tarball};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn add_special(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        link: Option<&str>,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(mode);
        h.set_mtime(2_000_000);
        h.set_entry_type(kind);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, path, io::empty()).unwrap();
    }

    /// Writes a raw header, bypassing the tar crate's own `..` checks.
    fn add_raw_name(b: &mut tar::Builder<Vec<u8>>, name: &str) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    }

    #[test]
    fn detects_compression_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(detect(b"bin/"), Compression::Plain);
        assert_eq!(detect(b""), Compression::Plain);
    }

    #[test]
    fn rejects_paths_that_climb_out() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tarball(|b| add_raw_name(b, "../escape"));
        let err = unpack(&tar[..], dir.path()).unwrap_err();
        assert!(
            matches!(err, LayerError::PathEscape(ref p) if p == "../escape"),
            "{err}"
        );
        assert!(!dir.path().parent().unwrap().join("escape").exists());
    }

    #[test]
    fn refuses_writing_through_a_symlink_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let tar = tarball(|b| {
            add_special(b, "evil", tar::EntryType::Symlink, 0o777, Some(&target));
            add_file(b, "evil/owned", b"x", 0o644);
        });
        let err = unpack(&tar[..], &root).unwrap_err();
        assert!(
            matches!(err, LayerError::PathEscape(ref p) if p == "evil/owned"),
            "{err}"
        );
        assert!(!outside.path().join("owned").exists());
    }

    #[test]
    fn unpacks_modes_links_and_skips_devices() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tarball(|b| {
            add_special(b, "bin/", tar::EntryType::Directory, 0o555, None);
            add_file(b, "bin/busybox", b"#!elf", 0o4755);
            add_special(b, "bin/sh", tar::EntryType::Symlink, 0o777, Some("busybox"));
            add_special(
                b,
                "bin/ash",
                tar::EntryType::Link,
                0o755,
                Some("bin/busybox"),
            );
            add_special(b, "dev/null", tar::EntryType::Char, 0o666, None);
            add_file(b, "etc/.wh.gone", b"", 0o644);
        });
        let out = unpack(&tar[..], dir.path()).unwrap();
        assert_eq!(out.size, 5);
        assert_eq!(out.skipped_devices, 1);
        assert_eq!(out.newest_mtime, 2_000_000);
        assert_eq!(out.diff_id, Digest::of(&tar));
        let root = dir.path();
        let busybox = fs::metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(busybox.mode() & 0o7777, 0o4755);
        assert_eq!(busybox.mtime(), 1_000_000);
        assert_eq!(busybox.nlink(), 2);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::metadata(root.join("bin")).unwrap().mode() & 0o777,
            0o555
        );
        assert!(!root.join("dev/null").exists());
        assert!(root.join("etc/.wh.gone").exists());
        remove_tree(root).unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn kept_owners_read_empty_fields_as_root_and_keep_setuid() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root (the helper is root of a user namespace)");
            return;
        }
        let tar = tarball(|b| {
            // add_file leaves the uid and gid fields empty.
            add_file(b, "empty-owner", b"e", 0o644);
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o4755);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mtime(7);
            b.append_data(&mut h, "suid", &b"s"[..]).unwrap();
            add_special(b, "link", tar::EntryType::Symlink, 0o777, Some("suid"));
        });
        let dir = tempfile::tempdir().unwrap();
        unpack_owned(&tar[..], dir.path(), Owners::Keep).unwrap();
        let empty = fs::metadata(dir.path().join("empty-owner")).unwrap();
        assert_eq!((empty.uid(), empty.gid()), (0, 0));
        let suid = fs::metadata(dir.path().join("suid")).unwrap();
        assert_eq!((suid.uid(), suid.gid()), (1000, 1001));
        assert_eq!(suid.mode() & 0o7777, 0o4755);
        assert_eq!(suid.mtime(), 7);
        let link = fs::symlink_metadata(dir.path().join("link")).unwrap();
        assert_eq!(link.uid(), 0);
    }

    #[test]
    fn gzip_and_zstd_hash_the_uncompressed_stream() {
        let tar = tarball(|b| add_file(b, "hello", b"hi", 0o644));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for compressed in [gz, zst] {
            let dir = tempfile::tempdir().unwrap();
            let out = unpack(&compressed[..], dir.path()).unwrap();
            assert_eq!(out.diff_id, Digest::of(&tar));
            assert_eq!(fs::read(dir.path().join("hello")).unwrap(), b"hi");
        }
    }

    #[test]
    fn refuses_empty_and_xz_input() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(&b""[..], dir.path()),
            Err(LayerError::Empty)
        ));
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0x00, 1, 2];
        assert!(matches!(
            unpack(&xz[..], dir.path()),
            Err(LayerError::UnsupportedCompression("xz"))
        ));
    }
}
