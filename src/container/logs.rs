//! The per-container log: one JSON object per line, as Docker's json-file
//! driver writes it (`{"log":"hi\n","stream":"stdout","time":"..."}`), so the
//! timestamp of every line survives for `logs -t`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::Dirs;

pub fn path(dirs: &Dirs, id: &str) -> PathBuf {
    dirs.container(id).join("ctr.log")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a stream's bytes into lines and writes each as an entry. A line
/// longer than `MAX_LINE` is written in parts, as Docker does at 16 KiB.
pub struct Writer {
    file: File,
    pending: [Vec<u8>; 2],
}

const MAX_LINE: usize = 16 * 1024;

/// Which stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl Writer {
    pub fn open(path: &Path) -> io::Result<Writer> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Writer {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes read from a stream; writes every complete line.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(nl + 1);
            let mut full = std::mem::take(&mut self.pending[stream as usize]);
            full.extend_from_slice(line);
            self.entry(stream, &full)?;
            data = rest;
        }
        let buf = &mut self.pending[stream as usize];
        buf.extend_from_slice(data);
        if buf.len() >= MAX_LINE {
            let part = std::mem::take(buf);
            self.entry(stream, &part)?;
        }
        Ok(())
    }

    /// Writes what is left of unterminated lines (at end of stream).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, &rest)?;
            }
        }
        self.file.flush()
    }

    fn entry(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.name().into(),
            time: crate::timefmt::now(),
        };
        let mut line = serde_json::to_vec(&e).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// Reads complete entries from a log, starting at byte `offset`; returns them
/// and the offset after the last complete line (a line being written is left
/// for the next read).
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<Entry>, u64)> {
    use std::io::Seek;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(io::SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str(&line) {
            entries.push(e);
        }
    }
    Ok((entries, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_kept_apart_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = Writer::open(&p).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.flush().unwrap();
        let (entries, end) = read_from(&p, 0).unwrap();
        let got: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.stream.as_str(), e.log.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stderr", "oops\n"),
                ("stdout", "hello\n"),
                ("stdout", "wor")
            ]
        );
        assert_eq!(read_from(&p, end).unwrap().0, vec![]);
    }
}
