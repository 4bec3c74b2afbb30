//! Streams handed between threads in chunks: a layer's download, and its
//! decompressed tar stream.
//!
//! A layer's bytes go through three costly steps: sha256 of the compressed
//! stream (the blob digest) and the copy kept as the blob, then
//! decompression and sha256 of the tar stream (the diff_id), then the
//! files. Each step runs on a thread of its own, joined by a bounded
//! [`channel`] of chunks, so one layer can keep more than one core busy and
//! at most `CHUNKS_IN_FLIGHT` chunks wait in memory. [`spawn_fetch`] runs the
//! first step; [`pump`] is the loop of the second, on the caller's thread.
//!
//! The fetcher always reads to the end, even after the unpacker stopped
//! (a tarball it refused), so the digest covers every byte and a corrupt
//! download is reported as a digest mismatch rather than a bad tarball.
//! The decompressing pump stops as soon as the unpacker gives up: its
//! digest would only confirm a layer that is not kept.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel as unbounded, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use crate::image::{Digest, Hasher};

/// Bytes handed over at a time.
const CHUNK: usize = 256 << 10;
/// Chunks read ahead of the consumer.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What a pump saw: the digest and length of every byte it read, and
/// whether reading or keeping them failed.
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    pub result: io::Result<()>,
}

/// The producing end of a chunk stream.
pub struct ChunkSender {
    tx: Option<SyncSender<io::Result<Vec<u8>>>>,
    /// Chunks the reader is done with, to be filled again instead of
    /// allocating (and faulting in) fresh memory for every chunk.
    spare: Receiver<Vec<u8>>,
}

/// A bounded stream of chunks from one thread to another.
pub fn channel() -> (ChunkSender, ChunkReader) {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let (give_back, spare) = unbounded();
    (
        ChunkSender {
            tx: Some(tx),
            spare,
        },
        ChunkReader {
            rx,
            done: Done::GiveBack(give_back),
            chunk: Vec::new(),
            pos: 0,
        },
    )
}

/// Whether a pump goes on reading once nobody takes its chunks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Read to the end regardless: the digest must cover every byte.
    ToEnd,
    /// Stop: the consumer failed, and the rest is not worth reading.
    Stop,
}

/// Reads `input` to its end (or, with [`Drain::Stop`], until the reader is
/// dropped), writing a copy to `copy` if given and sending the bytes on
/// `to`. A read error is sent on as well, so the consumer fails instead of
/// taking a short stream for a whole one. Returns the bytes read and
/// whether reading or copying failed.
pub fn pump(
    mut input: impl Read,
    copy: Option<&File>,
    mut to: ChunkSender,
    drain: Drain,
) -> (u64, io::Result<()>) {
    let mut size = 0;
    let mut out = copy.map(BlobCopy::new);
    let result = loop {
        let mut chunk = to.buffer();
        let n = match super::layer::read_up_to(&mut input, &mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => {
                to.fail(&e);
                break Err(e);
            }
        };
        chunk.truncate(n);
        size += n as u64;
        if let Some(Err(e)) = out.as_mut().map(|o| o.append(&chunk)) {
            break Err(e);
        }
        if !to.send(chunk) && drain == Drain::Stop {
            break Ok(());
        }
    };
    (size, result)
}

/// The copy a pump keeps (a layer's blob), written back to disk as it
/// grows: the flush before the layer is renamed into the store then finds
/// it written already, instead of starting on it then.
struct BlobCopy<'a> {
    file: &'a File,
    written: u64,
    /// Where the last writeback started.
    flushed: u64,
}

/// Bytes written between two writeback starts.
const WRITEBACK_STEP: u64 = 8 << 20;

impl<'a> BlobCopy<'a> {
    fn new(file: &'a File) -> BlobCopy<'a> {
        BlobCopy {
            file,
            written: 0,
            flushed: 0,
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.file;
        file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.flushed >= WRITEBACK_STEP {
            // Best effort: a failure here is only a later, longer flush.
            let _ = super::sys::start_writeback(file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(())
    }
}

impl ChunkSender {
    /// An empty chunk of `CHUNK` bytes, reused when one came back.
    fn buffer(&self) -> Vec<u8> {
        let mut chunk = self.spare.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        chunk
    }

    /// Sends a chunk; false once the reader is gone (and ever after).
    fn send(&mut self, chunk: Vec<u8>) -> bool {
        if self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Ok(chunk)).is_err())
        {
            self.tx = None;
        }
        self.tx.is_some()
    }

    fn fail(&self, e: &io::Error) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
    }
}

/// Starts reading `input` on a thread of `scope`, hashing it and copying
/// it to `copy`; returns the reader the unpacker consumes and the thread
/// to join.
pub fn spawn_fetch<'scope, 'env, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    input: R,
    copy: &'scope File,
) -> (ChunkReader, ScopedJoinHandle<'scope, Fetched>) {
    let (tx, reader) = channel();
    let fetcher = scope.spawn(move || {
        let mut input = HashingReader {
            inner: input,
            hasher: Hasher::new(),
        };
        let (size, result) = pump(&mut input, Some(copy), tx, Drain::ToEnd);
        Fetched {
            digest: Digest::from_hasher(input.hasher),
            size,
            result,
        }
    });
    (reader, fetcher)
}

/// Hashes, on a thread of `scope`, every chunk `reader` is done with, in
/// order, then gives it back to the pump: the hash of a stream then costs
/// its consumer nothing. The thread ends when the reader is dropped.
pub fn spawn_hasher<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    reader: &mut ChunkReader,
) -> ScopedJoinHandle<'scope, Digest> {
    let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let give_back = std::mem::replace(&mut reader.done, Done::Hash(tx));
    scope.spawn(move || {
        let mut hasher = Hasher::new();
        for chunk in rx {
            hasher.update(&chunk);
            if let Done::GiveBack(back) = &give_back {
                let _ = back.send(chunk);
            }
        }
        Digest::from_hasher(hasher)
    })
}

/// Passes bytes through while hashing them.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Where the reader puts a chunk it is done with.
enum Done {
    /// Back to the pump, to be filled again.
    GiveBack(Sender<Vec<u8>>),
    /// To a hasher thread, which gives it back after.
    Hash(SyncSender<Vec<u8>>),
}

/// The consuming end: the pumped bytes in order, then end of file (or the
/// pump's read error).
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    done: Done,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    /// Hands the current chunk on, once read to its end.
    fn done_with_chunk(&mut self) {
        let used = std::mem::take(&mut self.chunk);
        self.pos = 0;
        // The pump or the hasher may be gone: the chunk is then freed.
        let _ = match &self.done {
            Done::GiveBack(back) => back.send(used).is_ok(),
            Done::Hash(hasher) => hasher.send(used).is_ok(),
        };
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            self.done_with_chunk();
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.chunk = chunk,
                Ok(Err(e)) => return Err(e),
                // The pump finished: end of the stream.
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

    #[test]
    fn the_hasher_sees_every_chunk_the_reader_took() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
        let (tx, mut reader) = channel();
        let (got, digest, (size, result)) = std::thread::scope(|s| {
            let hasher = spawn_hasher(s, &mut reader);
            let consumer = s.spawn(move || {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).unwrap();
                got
            });
            let pumped = pump(&data[..], None, tx, Drain::Stop);
            (consumer.join().unwrap(), hasher.join().unwrap(), pumped)
        });
        assert_eq!(got, data);
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(size, data.len() as u64);
        assert!(result.is_ok());
    }
}
