//! Packing an unpacked layer folder back into a tar stream, for `push`.
//!
//! The stream is deterministic: entries sorted by path, parents before
//! children, owners 0:0 (burrow does not keep them; see [`super::layer`]),
//! modes and mtimes as on disk, a file with several links written once and
//! then as hard links. The same folder always gives the same bytes, so a
//! second push of the same layer finds the same digest.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Writes the tar stream of `dir`'s contents (not `dir` itself) to `out`.
pub fn pack(dir: &Path, out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links = HashMap::new();
    walk(dir, Path::new(""), &mut builder, &mut links)?;
    builder.into_inner()?.flush()
}

fn walk<W: Write>(
    root: &Path,
    rel: &Path,
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
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        let kind = meta.file_type();
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            // Directories end in `/`, as tar and Docker write them.
            let name = format!("{}/", path.to_string_lossy());
            builder.append_data(&mut header, name, io::empty())?;
            walk(root, &path, builder, links)?;
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
    use crate::store::layer::unpack;
    use crate::store::testutil::{add_file, tarball};

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
        pack(dir.path(), &mut first).unwrap();
        let mut second = Vec::new();
        pack(dir.path(), &mut second).unwrap();
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
