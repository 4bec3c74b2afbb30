//! Reading ahead across files: the small lower files of a folder that is
//! being read file after file are put into the kernel's page cache before
//! anyone asks for them.
//!
//! Why. Reading a small file through FUSE costs one READ round trip, and
//! on a virtual machine most of that is waking the reader on another CPU
//! (see docs/performance.md, Overlay). A program that reads a folder's
//! files one after another (`grep -r`, `cat *`, `tar c`, a checksum, a
//! compiler reading headers) pays it for every file. The kernel's own
//! readahead works within one file, never across files.
//!
//! How. Listings record their small regular files in order ([`Tracker`]).
//! When two reads in a row start files of one listing in listing order,
//! the next files of that listing (up to a window) are read here and
//! handed to the kernel with FUSE_NOTIFY_STORE; reading them then costs
//! no request at all. A read past the window starts the next one.
//!
//! Safety. Only files that a lookup located in a *lower* layer at the
//! current backing epoch are stored: their content cannot change. A file
//! copied up while it is being stored (a write through the mount races the
//! store) moves the backing epoch; the store is then followed by an
//! invalidation of the node's cached pages and attributes, so the next read
//! asks the server, which answers from the upper copy. The stores run on a
//! thread of their own: storing into a page that a READ holds locked waits
//! for that READ's answer, which a serving thread must be free to give.
//! Work that arrives while the thread is busy is dropped, never queued
//! without bound.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use fuser::{INodeNo, Notifier};

use super::engine::{OpenDir, Overlay};

/// Larger files are left to the kernel's readahead within the file.
pub const MAX_FILE: u64 = 64 * 1024;
/// Files, and bytes, stored ahead per window.
const WINDOW_FILES: usize = 128;
const WINDOW_BYTES: u64 = 2 << 20;
/// Listed files remembered over all listings; past it the oldest listing
/// is forgotten. (`find -exec cat {} +` lists a whole tree before reading.)
const MAX_REMEMBERED: usize = 1 << 16;
/// Reads in listing order before the rest is read ahead.
const STREAK: u32 = 2;
/// Windows waiting for the storing thread.
const QUEUE: usize = 4;

/// One small file of a listing: its node and size.
pub type Listed = (u64, u64);

/// The small files of recent listings, and how they are being read.
#[derive(Debug, Default)]
pub struct Tracker {
    listings: HashMap<u64, Listing>,
    /// Listing ids, oldest first.
    order: VecDeque<u64>,
    /// Where each remembered node was last listed: listing and position.
    place: HashMap<u64, (u64, usize)>,
    remembered: usize,
}

#[derive(Debug, Default)]
struct Listing {
    files: Vec<Listed>,
    /// The listing's item index of the last file recorded: a listing read
    /// again from its start records nothing twice.
    recorded_item: Option<usize>,
    last_read: Option<usize>,
    streak: u32,
    /// Files before this position are stored or being stored.
    ahead_to: usize,
}

impl Tracker {
    /// Records that item `item` of listing `listing` is the small file
    /// `ino` of `size` bytes.
    pub fn listed(&mut self, listing: u64, item: usize, ino: u64, size: u64) {
        if !self.listings.contains_key(&listing) {
            self.order.push_back(listing);
        }
        let l = self.listings.entry(listing).or_default();
        if l.recorded_item.is_some_and(|r| item <= r) {
            return;
        }
        l.recorded_item = Some(item);
        self.place.insert(ino, (listing, l.files.len()));
        l.files.push((ino, size));
        self.remembered += 1;
        while self.remembered > MAX_REMEMBERED && self.order.len() > 1 {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some(id) = self.order.pop_front() else {
            return;
        };
        let Some(l) = self.listings.remove(&id) else {
            return;
        };
        self.remembered -= l.files.len();
        for (ino, _) in l.files {
            if self.place.get(&ino).is_some_and(|(owner, _)| *owner == id) {
                self.place.remove(&ino);
            }
        }
    }

    /// A read of file `ino` from its start: the files to store ahead now
    /// (none unless its listing is being read in order).
    pub fn read(&mut self, ino: u64) -> Vec<Listed> {
        let Some(&(id, at)) = self.place.get(&ino) else {
            return Vec::new();
        };
        let Some(l) = self.listings.get_mut(&id) else {
            return Vec::new();
        };
        if at < l.ahead_to {
            // Stored already (the read raced the store), or being stored.
            return Vec::new();
        }
        l.streak = if l.last_read.is_some_and(|last| last < at) {
            l.streak + 1
        } else {
            1
        };
        l.last_read = Some(at);
        if l.streak < STREAK {
            return Vec::new();
        }
        let mut bytes = 0;
        let window: Vec<Listed> = l.files[at + 1..]
            .iter()
            .take(WINDOW_FILES)
            .take_while(|(_, size)| {
                bytes += size;
                bytes <= WINDOW_BYTES
            })
            .copied()
            .collect();
        l.ahead_to = at + 1 + window.len();
        window
    }
}

/// The thread that reads files ahead and stores them in the kernel.
#[derive(Debug)]
pub struct Prefetcher {
    work: SyncSender<Vec<Listed>>,
}

impl Prefetcher {
    pub fn start(ov: Arc<Overlay>, notifier: Notifier) -> io::Result<Prefetcher> {
        let (work, todo) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || store_windows(&ov, &notifier, todo))?;
        Ok(Prefetcher { work })
    }

    /// Stores `files` ahead, unless the thread is behind (then the kernel
    /// asks for them as usual).
    pub fn ask(&self, files: Vec<Listed>) {
        let _ = self.work.try_send(files);
    }
}

/// The thread's loop: ends when the file system (holding the sender) does.
fn store_windows(ov: &Overlay, notifier: &Notifier, todo: Receiver<Vec<Listed>>) {
    let mut dir = None;
    let mut buf = Vec::new();
    for window in todo {
        for (ino, size) in window {
            store(ov, notifier, &mut dir, &mut buf, ino, size);
        }
    }
}

/// Reads lower file `ino` and stores it in the kernel's cache of the node,
/// if it still is a lower file of `size` bytes (the size the kernel was
/// told: a store past it would grow the file in the kernel's eyes).
fn store(
    ov: &Overlay,
    notifier: &Notifier,
    dir: &mut Option<OpenDir>,
    buf: &mut Vec<u8>,
    ino: u64,
    size: u64,
) {
    let epoch = ov.backing_epoch();
    let Some(file) = ov.open_lower(ino, dir) else {
        return;
    };
    let Ok(size) = usize::try_from(size) else {
        return;
    };
    // One byte more than expected shows a file that grew.
    if read_whole(&file, buf, size + 1).ok() != Some(size) {
        return;
    }
    // ENOENT: the kernel forgot the node meanwhile; nothing to do.
    if notifier.store(INodeNo(ino), 0, &buf[..size]).is_err() {
        return;
    }
    if ov.backing_epoch() != epoch {
        // Something may have been copied up while this one was stored:
        // let the kernel ask again rather than trust what was stored.
        let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
    }
}

/// Reads up to `limit` bytes from the start of `file` into `buf`; the
/// count read.
fn read_whole(file: &File, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    buf.resize(limit, 0);
    let mut done = 0;
    while done < limit {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(t: &mut Tracker, id: u64, files: &[(u64, u64)]) {
        for (i, &(ino, size)) in files.iter().enumerate() {
            t.listed(id, i + 2, ino, size);
        }
    }

    #[test]
    fn two_reads_in_listing_order_store_the_rest_ahead() {
        let mut t = Tracker::default();
        listing(&mut t, 1, &[(10, 5), (11, 5), (12, 5), (13, 5)]);
        assert!(t.read(10).is_empty());
        assert_eq!(t.read(11), vec![(12, 5), (13, 5)]);
        // Those are stored: their reads (if they race) ask for nothing.
        assert!(t.read(12).is_empty());
    }

    #[test]
    fn reads_out_of_order_or_of_one_file_store_nothing() {
        let mut t = Tracker::default();
        listing(&mut t, 1, &[(10, 5), (11, 5), (12, 5), (13, 5)]);
        assert!(t.read(12).is_empty());
        assert!(t.read(10).is_empty());
        assert!(t.read(10).is_empty());
        assert!(t.read(99).is_empty(), "a file of no listing");
    }

    #[test]
    fn a_window_is_bounded_and_a_read_past_it_starts_the_next() {
        let mut t = Tracker::default();
        let files: Vec<(u64, u64)> = (0..300).map(|i| (1000 + i, 100)).collect();
        listing(&mut t, 7, &files);
        t.read(1000);
        let first = t.read(1001);
        assert_eq!(first.len(), WINDOW_FILES);
        assert_eq!(first[0].0, 1002);
        let next = 1002 + WINDOW_FILES as u64;
        let second = t.read(next);
        assert_eq!(second.first().map(|f| f.0), Some(next + 1));
        // Bytes bound a window too.
        let mut t = Tracker::default();
        let big: Vec<(u64, u64)> = (0..100).map(|i| (i, MAX_FILE)).collect();
        listing(&mut t, 1, &big);
        t.read(0);
        let w = t.read(1);
        assert_eq!(w.len() as u64, WINDOW_BYTES / MAX_FILE);
    }

    #[test]
    fn a_listing_read_twice_records_its_files_once() {
        let mut t = Tracker::default();
        listing(&mut t, 1, &[(10, 5), (11, 5), (12, 5)]);
        listing(&mut t, 1, &[(10, 5), (11, 5), (12, 5)]);
        assert_eq!(t.remembered, 3);
    }

    #[test]
    fn old_listings_are_forgotten_past_the_bound() {
        let mut t = Tracker::default();
        for id in 0..3u64 {
            let files: Vec<(u64, u64)> = (0..MAX_REMEMBERED as u64 / 2)
                .map(|i| (id << 32 | i, 1))
                .collect();
            listing(&mut t, id, &files);
        }
        assert!(t.remembered <= MAX_REMEMBERED);
        assert!(!t.listings.contains_key(&0));
        assert!(t.read(0).is_empty());
        assert!(t.place.contains_key(&(2 << 32)));
    }
}
