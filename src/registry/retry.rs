//! Retries for blob downloads: transient failures (a refused or reset
//! connection, a truncated body, HTTP 5xx or 429) are retried a few times
//! with exponential backoff; a download cut midway resumes where it stopped
//! with a `Range: bytes=N-` request, and a registry that ignores the range
//! (HTTP 200) has the bytes already received skipped. The bytes reach the
//! unpacker as one uninterrupted stream, so the digests cover exactly what
//! the registry holds.

use std::io::{self, Read};
use std::time::Duration;

use super::RegistryError;

/// Attempts after the first, per blob.
pub const RETRIES: u32 = 5;

/// The wait before retry `n` (1-based): 0.5 s, 1 s, 2 s, 4 s, 8 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(500 << (n.saturating_sub(1)).min(6))
}

/// Whether retrying may help.
pub fn transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } | RegistryError::Transfer { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// A body stream starting at byte `.1` of the blob.
pub type Opened = (Box<dyn Read + Send>, u64);

/// Reads a blob of `size` bytes, reopening it from where it stopped with
/// `open(offset)` after a transient failure. `on_bytes` sees the running
/// count; `on_retry` the attempt number before each wait.
pub struct Resuming<'a> {
    open: Box<dyn FnMut(u64) -> Result<Opened, RegistryError> + Send + 'a>,
    on_bytes: Box<dyn FnMut(u64) + Send + 'a>,
    on_retry: Box<dyn FnMut(u32) + Send + 'a>,
    inner: Box<dyn Read + Send>,
    offset: u64,
    size: u64,
    retries: u32,
    sleep: fn(Duration),
}

impl<'a> Resuming<'a> {
    /// Opens the blob (retrying the first request too).
    pub fn open(
        size: u64,
        mut open: impl FnMut(u64) -> Result<Opened, RegistryError> + Send + 'a,
        on_bytes: impl FnMut(u64) + Send + 'a,
        mut on_retry: impl FnMut(u32) + Send + 'a,
        sleep: fn(Duration),
    ) -> Result<Resuming<'a>, RegistryError> {
        let mut retries = 0;
        let inner = loop {
            match open(0) {
                Ok((r, _)) => break r,
                Err(e) if transient(&e) && retries < RETRIES => {
                    retries += 1;
                    on_retry(retries);
                    sleep(backoff(retries));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Resuming {
            open: Box::new(open),
            on_bytes: Box::new(on_bytes),
            on_retry: Box::new(on_retry),
            inner,
            offset: 0,
            size,
            retries,
            sleep,
        })
    }

    /// Reopens at `self.offset`, skipping what a 200 answer repeats.
    fn reopen(&mut self) -> io::Result<()> {
        loop {
            if self.retries >= RETRIES {
                return Err(io::Error::other(format!(
                    "gave up after {RETRIES} retries at byte {} of {}",
                    self.offset, self.size
                )));
            }
            self.retries += 1;
            (self.on_retry)(self.retries);
            (self.sleep)(backoff(self.retries));
            match (self.open)(self.offset) {
                Ok((mut r, start)) => {
                    if start < self.offset {
                        let skip = self.offset - start;
                        let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink())?;
                        if skipped < skip {
                            continue;
                        }
                    }
                    self.inner = r;
                    return Ok(());
                }
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.inner.read(buf) {
                Ok(0) if self.offset < self.size => {
                    // The connection ended early: resume.
                    self.reopen()?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    (self.on_bytes)(self.offset);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(e),
                Err(_) => self.reopen()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A body that fails after `cut` bytes.
    struct Flaky {
        data: Vec<u8>,
        pos: usize,
        cut: usize,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos >= self.cut && self.pos < self.data.len() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
            }
            let end = self
                .data
                .len()
                .min(self.cut.max(self.pos))
                .min(self.pos + buf.len());
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            Ok(n)
        }
    }

    fn no_sleep(_: Duration) {}

    #[test]
    fn resumes_with_ranges_and_skips_when_ranges_are_ignored() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for honour_range in [true, false] {
            let opens = Arc::new(Mutex::new(Vec::new()));
            let log = opens.clone();
            let blob = data.clone();
            let mut reader = Resuming::open(
                data.len() as u64,
                move |offset| {
                    log.lock().unwrap().push(offset);
                    let attempt = log.lock().unwrap().len();
                    let start = if honour_range { offset as usize } else { 0 };
                    // Every connection but the third is cut 3000 bytes in.
                    let cut = if attempt == 3 {
                        blob.len()
                    } else {
                        start + 3000
                    };
                    let body = Flaky {
                        data: blob[start..].to_vec(),
                        pos: 0,
                        cut: cut - start,
                    };
                    Ok((Box::new(body) as Box<dyn Read + Send>, start as u64))
                },
                |_| {},
                |_| {},
                no_sleep,
            )
            .unwrap();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "range honoured: {honour_range}");
            let expected = if honour_range {
                [0, 3000, 6000]
            } else {
                [0, 3000, 3000]
            };
            assert_eq!(*opens.lock().unwrap(), expected);
        }
    }

    #[test]
    fn gives_up_and_does_not_retry_permanent_errors() {
        let mut tries = 0;
        let err = Resuming::open(
            10,
            |_| {
                tries += 1;
                Err(RegistryError::Status {
                    reference: "x".into(),
                    status: 503,
                    detail: String::new(),
                })
            },
            |_| {},
            |_| {},
            no_sleep,
        )
        .err()
        .unwrap();
        assert!(matches!(err, RegistryError::Status { status: 503, .. }));
        assert_eq!(tries, RETRIES + 1);
        let err = Resuming::open(
            10,
            |_| {
                Err(RegistryError::BlobUnknown {
                    reference: "x".into(),
                    digest: "d".into(),
                })
            },
            |_| {},
            |_| {},
            no_sleep,
        )
        .err()
        .unwrap();
        assert!(matches!(err, RegistryError::BlobUnknown { .. }));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
    }
}
