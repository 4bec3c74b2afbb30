//! The compressed side of receiving a layer, on a thread of its own.
//!
//! A layer's bytes go through three costly steps: sha256 of the compressed
//! stream (the blob digest) and the copy kept as the blob, then
//! decompression, then sha256 of the tar stream (the diff_id) and the files.
//! [`spawn_fetch`] runs the first on another thread, which reads the input
//! to its end and hands the bytes over in chunks through a bounded channel,
//! so a layer uses two cores instead of one, and at most
//! `CHUNKS_IN_FLIGHT * CHUNK` bytes wait in memory.
//!
//! The fetcher always reads to the end, even after the unpacker stopped
//! (a tarball it refused), so the digest covers every byte and a corrupt
//! download is reported as a digest mismatch rather than a bad tarball.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use crate::image::{Digest, Hasher};

/// Bytes read from the input at a time.
const CHUNK: usize = 128 << 10;
/// Chunks read ahead of the unpacker.
const CHUNKS_IN_FLIGHT: usize = 8;

/// What the fetcher saw: the digest and length of every byte it read, and
/// whether reading or keeping them failed.
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    pub result: io::Result<()>,
}

/// Starts reading `input` on a thread of `scope`, copying it to `copy`;
/// returns the reader the unpacker consumes and the thread to join.
pub fn spawn_fetch<'scope, 'env, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    input: R,
    copy: &'scope File,
) -> (ChunkReader, ScopedJoinHandle<'scope, Fetched>) {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let fetcher = scope.spawn(move || fetch(input, copy, tx));
    (
        ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
        fetcher,
    )
}

fn fetch(mut input: impl Read, copy: &File, tx: SyncSender<io::Result<Vec<u8>>>) -> Fetched {
    let mut hasher = Hasher::new();
    let mut size = 0;
    let mut out = BufWriter::with_capacity(CHUNK, copy);
    let mut tx = Some(tx);
    let result = loop {
        let mut chunk = vec![0; CHUNK];
        let n = match input.read(&mut chunk) {
            Ok(0) => break out.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(tx) = &tx {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                break Err(e);
            }
        };
        chunk.truncate(n);
        hasher.update(&chunk);
        size += n as u64;
        if let Err(e) = out.write_all(&chunk) {
            break Err(e);
        }
        // A closed channel means the unpacker gave up: keep reading, for
        // the digest, but stop sending.
        if tx.as_ref().is_some_and(|tx| tx.send(Ok(chunk)).is_err()) {
            tx = None;
        }
    };
    Fetched {
        digest: Digest::from_hasher(hasher),
        size,
        result,
    }
}

/// The unpacker's end: the fetched bytes in order, then end of file (or the
/// fetcher's read error).
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The fetcher finished: end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` through a fetcher, `take` bytes on the unpacker's side.
    fn run(data: &[u8], take: usize) -> (Vec<u8>, Fetched, Vec<u8>) {
        let file = tempfile::tempfile().unwrap();
        let (got, fetched) = std::thread::scope(|s| {
            let (reader, fetcher) = spawn_fetch(s, data, &file);
            let mut got = Vec::new();
            reader.take(take as u64).read_to_end(&mut got).unwrap();
            (got, fetcher.join().unwrap())
        });
        let mut kept = Vec::new();
        let mut file = file;
        io::Seek::rewind(&mut file).unwrap();
        file.read_to_end(&mut kept).unwrap();
        (got, fetched, kept)
    }

    #[test]
    fn passes_hashes_and_keeps_every_byte() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (got, fetched, kept) = run(&data, usize::MAX);
        assert_eq!(got, data);
        assert_eq!(kept, data);
        assert_eq!(fetched.digest, Digest::of(&data));
        assert_eq!(fetched.size, data.len() as u64);
        assert!(fetched.result.is_ok());
    }

    #[test]
    fn hashes_to_the_end_when_the_unpacker_stops_early() {
        let data = vec![7u8; 3 * CHUNK * CHUNKS_IN_FLIGHT];
        let (got, fetched, kept) = run(&data, 10);
        assert_eq!(got.len(), 10);
        assert_eq!(kept.len(), data.len());
        assert_eq!(fetched.digest, Digest::of(&data));
    }
}
