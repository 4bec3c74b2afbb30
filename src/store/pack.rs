//! Packing an unpacked layer folder back into a tar stream, for `push`,
//! `save` and any layer that has no blob yet (imported, committed, built).
//!
//! The stream is deterministic: entries sorted by path, parents before
//! children, modes and mtimes as on disk, a file with several links written
//! once and then as hard links. The same folder always gives the same
//! bytes, so a second push of the same layer finds the same digest.
//!
//! Owners are the container's, as the layer was unpacked (see
//! [`super::layer`]): with a subordinate range the files belong to host ids
//! the caller cannot read or translate by itself, so a helper process, root
//! of a user namespace with the caller's maps, packs them, and `stat` there
//! shows the ids the image had (uid 1000, not subuid start + 999); with one
//! id the owners come from the `user.burrow.owner` xattrs; entries without
//! one belong to 0:0.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::layer::{Owners, Ownership, ownership, recorded_owner};

/// Writes the tar stream of `dir`'s contents (not `dir` itself) to `out`,
/// owners as [`super::layer::set_ownership`] chose.
pub fn pack_configured(dir: &Path, out: impl Write) -> io::Result<()> {
    match ownership() {
        Ownership::Drop => pack(dir, out, Owners::Drop),
        Ownership::Record => pack(dir, out, Owners::Record),
        Ownership::Namespace(exe) => pack_in_helper(dir, out, exe),
    }
}

/// Has `EXE store-helper pack DIR` write the stream, and copies it to `out`.
fn pack_in_helper(dir: &Path, mut out: impl Write, exe: &Path) -> io::Result<()> {
    let mut child = Command::new(exe)
        .args(["store-helper", "pack"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start {}: {e}", exe.display())))?;
    let mut tar = child.stdout.take().expect("piped stdout");
    let copied = io::copy(&mut tar, &mut out);
    drop(tar);
    let done = child.wait_with_output()?;
    if !done.status.success() {
        let stderr = String::from_utf8_lossy(&done.stderr);
        let why = stderr.trim();
        return Err(io::Error::other(format!(
            "the pack helper failed: {}",
            why.strip_prefix("burrow: ").unwrap_or(why)
        )));
    }
    copied?;
    out.flush()
}

/// The helper's side of [`pack_in_helper`]: the stream on stdout, owners as
/// `stat` shows them. Runs as root of the user namespace.
pub fn helper_pack(dir: &Path) -> i32 {
    let out = BufWriter::new(io::stdout().lock());
    match pack(dir, out, Owners::Keep) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("burrow: cannot pack {}: {e}", dir.display());
            1
        }
    }
}

/// Writes the tar stream of `dir`'s contents to `out`; `owners` says where
/// the owners come from: nowhere (0:0), the xattrs, or `stat`.
pub fn pack(dir: &Path, out: impl Write, owners: Owners) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links = HashMap::new();
    walk(dir, Path::new(""), owners, &mut builder, &mut links)?;
    builder.into_inner()?.flush()
}

/// uid, gid and mode for the header of the entry at `full`.
fn owner(full: &Path, meta: &fs::Metadata, owners: Owners) -> (u64, u64, u32) {
    let mode = meta.mode() & 0o7777;
    match owners {
        Owners::Drop => (0, 0, mode),
        Owners::Keep => (meta.uid().into(), meta.gid().into(), mode),
        Owners::Record => recorded_owner(full).unwrap_or((0, 0, mode)),
    }
}

fn walk<W: Write>(
    root: &Path,
    rel: &Path,
    owners: Owners,
    builder: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let full = root.join(&path);
        let meta = fs::symlink_metadata(&full)?;
        let (uid, gid, mode) = owner(&full, &meta, owners);
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(0);
        let kind = meta.file_type();
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            // Directories end in `/`, as tar and Docker write them.
            let name = format!("{}/", path.to_string_lossy());
            builder.append_data(&mut header, name, io::empty())?;
            walk(root, &path, owners, builder, links)?;
        } else if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, &path, fs::read_link(&full)?)?;
        } else if kind.is_file() {
            let key = (meta.dev(), meta.ino());
            let text = path.to_string_lossy().into_owned();
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(&mut header, &path, first)?;
                    continue;
                }
                links.insert(key, text);
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            builder.append_data(&mut header, &path, fs::File::open(&full)?)?;
        } else {
            // An unprivileged unpack makes no device nodes; keep FIFOs,
            // skip sockets.
            use std::os::unix::fs::FileTypeExt;
            if kind.is_fifo() {
                header.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut header, &path, io::empty())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layer::{OWNER_XATTR, unpack, unpack_owned};
    use crate::store::testutil::{add_file, tarball};

    /// (path, uid, gid, mode) of every entry.
    fn owners(tar: &[u8]) -> Vec<(String, u64, u64, u32)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn recorded_owners_go_back_into_the_headers() {
        let tar = tarball(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o750);
            h.set_uid(1000);
            h.set_gid(1001);
            b.append_data(&mut h, "home/", io::empty()).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o4711);
            h.set_uid(1000);
            h.set_gid(1001);
            b.append_data(&mut h, "home/f", &b"x"[..]).unwrap();
            add_file(b, "root-owned", b"r", 0o600);
        });
        let dir = tempfile::tempdir().unwrap();
        unpack_owned(&tar[..], dir.path(), Owners::Record).unwrap();
        if xattr::get(dir.path().join("home/f"), OWNER_XATTR)
            .ok()
            .flatten()
            .is_none()
        {
            eprintln!("skipped: {} has no user xattrs", dir.path().display());
            return;
        }
        let mut packed = Vec::new();
        pack(dir.path(), &mut packed, Owners::Record).unwrap();
        assert_eq!(
            owners(&packed),
            [
                ("home/".into(), 1000, 1001, 0o750),
                ("home/f".into(), 1000, 1001, 0o4711),
                ("root-owned".into(), 0, 0, 0o600),
            ]
        );
        let mut dropped = Vec::new();
        pack(dir.path(), &mut dropped, Owners::Drop).unwrap();
        assert!(
            owners(&dropped)
                .iter()
                .all(|(_, u, g, _)| (*u, *g) == (0, 0))
        );
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let tar = tarball(|b| {
            add_file(b, "b/two", b"2", 0o600);
            add_file(b, "a", b"1", 0o755);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            h.set_mode(0o755);
            b.append_link(&mut h, "c", "a").unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "d", "b/two").unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar[..], dir.path()).unwrap();
        let mut first = Vec::new();
        pack(dir.path(), &mut first, Owners::Drop).unwrap();
        let mut second = Vec::new();
        pack(dir.path(), &mut second, Owners::Drop).unwrap();
        assert_eq!(first, second);

        let again = tempfile::tempdir().unwrap();
        unpack(&first[..], again.path()).unwrap();
        assert_eq!(fs::read(again.path().join("b/two")).unwrap(), b"2");
        assert_eq!(
            fs::read_link(again.path().join("d")).unwrap(),
            Path::new("b/two")
        );
        let a = fs::metadata(again.path().join("a")).unwrap();
        assert_eq!(a.nlink(), 2);
        assert_eq!(a.mode() & 0o777, 0o755);
        let names: Vec<String> = tar::Archive::new(&first[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a", "b/", "b/two", "c", "d"]);
    }
}
