//! The FUSE overlay: a copy-on-write root filesystem served by burrow itself.
//!
//! N read-only lower dirs (an image's layers, as the store unpacks them) and
//! one upper dir (the container's writable layer) are shown as one tree, with
//! the kernel overlayfs's semantics, for hosts or user namespaces where the
//! kernel overlay cannot be mounted. The parts, from the bottom:
//!
//! - [`whiteout`] names the OCI markers (`.wh.NAME`, `.wh..wh..opq`). The
//!   lowers use them as the store unpacked them; the overlay writes the same
//!   ones into the upper dir, so the upper dir is itself an OCI layer diff.
//! - [`layers`] is the layer logic as plain path code: which layer shows a
//!   path, whether it is whited out, which folders merge, what a merged
//!   folder lists. Tested on temporary folders, without FUSE.
//! - `inodes` keeps node ids (which are also `st_ino`) stable for the life of
//!   the mount; `copyup` copies an entry up through the work dir, so the upper
//!   dir never holds half a file; `engine` is each file-system operation on
//!   paths; `sys` wraps the xattr system calls (the module's only `unsafe`);
//!   `splice` answers large reads by splicing the backing file into
//!   `/dev/fuse`.
//! - `fuse` is fuser's `Filesystem`, a thin layer over `engine`; this file
//!   mounts it ([`mount`]) or serves a `/dev/fuse` descriptor opened elsewhere,
//!   e.g. inside the container's namespaces ([`serve_fd`]).
//!
//! Ownership: the server presents each file with the ids its backing file
//! has as the server sees them. Run inside the container's user namespace,
//! that is the container's view. New files get the caller's ids when the
//! server may chown (root in that namespace), and the server's own otherwise;
//! permissions are checked by the kernel (`default_permissions`). Images of
//! a user without subordinate ids record their owners in an xattr instead;
//! [`owners`] keeps those records true across chown.
//!
//! This module imports no other engine (sandbox, net) and no orchestration:
//! it is handed folders and, at most, a file descriptor.

mod copyup;
mod engine;
mod fuse;
mod inodes;
pub mod layers;
pub mod owners;
mod prefetch;
mod splice;
mod sys;
pub mod whiteout;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fuser::{
    BackgroundSession, Config, MountOption, Notifier, Session, SessionACL, SessionUnmounter,
};
use thiserror::Error;

use engine::Overlay;
use fuse::OverlayFs;
use layers::Layers;
use splice::Splicer;

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error("overlay layer folder {0} is missing or not a folder")]
    Layer(PathBuf, #[source] io::Error),
    #[error(
        "the overlay work dir {work} is not on the same filesystem as the upper dir {upper}; copy-up renames from one to the other"
    )]
    WorkElsewhere { work: PathBuf, upper: PathBuf },
    #[error(
        "the overlay work dir {work} and the upper dir {upper} must be separate folders, neither inside the other"
    )]
    WorkInsideUpper { work: PathBuf, upper: PathBuf },
    #[error("cannot clean the overlay work dir {0}")]
    Work(PathBuf, #[source] io::Error),
    #[error(
        "FUSE is not available: /dev/fuse is missing or not open to this user (as root: modprobe fuse; chmod 0666 /dev/fuse)"
    )]
    NoDevFuse,
    #[error(
        "FUSE cannot be mounted by an unprivileged user without fusermount3 (apt-get install fuse3)"
    )]
    NoFusermount,
    #[error("cannot mount the FUSE overlay on {0}")]
    Mount(PathBuf, #[source] io::Error),
    #[error("the FUSE overlay server stopped with an error")]
    Serve(#[source] io::Error),
}

/// What to overlay, and how to serve it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The read-only layers, **top first**: `lowers[0]` covers `lowers[1]`
    /// (overlayfs's `lowerdir=` order; the store's layer list reversed).
    pub lowers: Vec<PathBuf>,
    /// The writable layer; receives copies, new files and whiteouts.
    pub upper: PathBuf,
    /// An empty folder on the upper dir's filesystem, for staging copies.
    pub work: PathBuf,
    /// Let users other than the server's see the mount (`allow_other`). A
    /// container needs it for its non-root users; an unprivileged mount
    /// through fusermount3 needs `user_allow_other` in /etc/fuse.conf.
    pub allow_other: bool,
    /// Request-serving threads. More than one pays only when callers run
    /// in parallel: a single caller's requests come one at a time, and a
    /// second thread then costs a cross-CPU handoff per request (on 2 CPUs,
    /// `find | cat` over 10,000 files took 0.8-1.1 s with one thread and
    /// 1.6-2.4 s with two). So the default is half the CPUs (the callers
    /// need the rest), 1 to 4.
    pub threads: usize,
}

impl Options {
    pub fn new(lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf) -> Options {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, 4);
        Options {
            lowers,
            upper,
            work,
            allow_other: false,
            threads,
        }
    }

    /// Checks the folders and builds the file system.
    fn build(&self) -> Result<OverlayFs, OverlayError> {
        let dir = |p: &Path| -> Result<std::fs::Metadata, OverlayError> {
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => Ok(m),
                Ok(_) => Err(OverlayError::Layer(
                    p.to_path_buf(),
                    io::Error::from_raw_os_error(libc::ENOTDIR),
                )),
                Err(e) => Err(OverlayError::Layer(p.to_path_buf(), e)),
            }
        };
        for l in &self.lowers {
            dir(l)?;
        }
        let upper = dir(&self.upper)?;
        let work = dir(&self.work)?;
        let (up, wk) = (canonical(&self.upper)?, canonical(&self.work)?);
        if up.starts_with(&wk) || wk.starts_with(&up) {
            return Err(OverlayError::WorkInsideUpper {
                work: self.work.clone(),
                upper: self.upper.clone(),
            });
        }
        if upper.dev() != work.dev() {
            return Err(OverlayError::WorkElsewhere {
                work: self.work.clone(),
                upper: self.upper.clone(),
            });
        }
        let layers = Layers::new(self.upper.clone(), self.lowers.clone());
        let ov = Overlay::new(layers, self.work.clone())
            .map_err(|e| OverlayError::Work(self.work.clone(), e))?;
        Ok(OverlayFs::new(ov))
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("burrow".into()),
            MountOption::Subtype("overlay".into()),
            MountOption::DefaultPermissions,
        ];
        config.acl = if self.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(self.threads.max(1));
        // Every thread reads requests from the session's one descriptor: a
        // spliced answer must go back on the descriptor its request came
        // from, and a cloned one is out of reach (see `splice`).
        config.clone_fd = false;
        config
    }
}

fn canonical(p: &Path) -> Result<PathBuf, OverlayError> {
    p.canonicalize()
        .map_err(|e| OverlayError::Layer(p.to_path_buf(), e))
}

/// Checks that this process can mount a FUSE file system at all, and says
/// what is missing if not.
pub fn probe() -> Result<(), OverlayError> {
    use nix::unistd::{AccessFlags, access};
    if access("/dev/fuse", AccessFlags::R_OK | AccessFlags::W_OK).is_err() {
        return Err(OverlayError::NoDevFuse);
    }
    let root = nix::unistd::geteuid().is_root();
    let fusermount = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").exists()))
        .unwrap_or(false)
        || Path::new("/usr/bin/fusermount3").exists()
        || Path::new("/bin/fusermount3").exists();
    if !root && !fusermount {
        return Err(OverlayError::NoFusermount);
    }
    Ok(())
}

/// A mounted overlay served by background threads; unmounted on drop.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the server threads to end.
    pub fn unmount(mut self) -> Result<(), OverlayError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), OverlayError> {
        match self.session.take() {
            Some(s) => s.umount_and_join().map_err(OverlayError::Serve),
            None => Ok(()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Mounts the overlay of `lowers` (top first) and `upper` on `mountpoint`
/// and serves it from background threads until the handle is dropped.
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    mountpoint: &Path,
) -> Result<MountHandle, OverlayError> {
    let opts = Options::new(lowers.to_vec(), upper.to_path_buf(), work.to_path_buf());
    mount_with(&opts, mountpoint)
}

/// [`mount`] with every option.
pub fn mount_with(opts: &Options, mountpoint: &Path) -> Result<MountHandle, OverlayError> {
    let server = Server::mount(opts, mountpoint)?;
    let session = server
        .session
        .spawn()
        .map_err(|e| OverlayError::Mount(mountpoint.to_path_buf(), e))?;
    Ok(MountHandle {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// Serves the overlay on a `/dev/fuse` descriptor whose mount was made by
/// the caller (for instance inside the container's user and mount
/// namespaces, with `fd=N,rootmode=40000,user_id=0,group_id=0,
/// default_permissions,allow_other`). Blocks until the file system is
/// unmounted. Access control is left to the kernel, which applied the
/// mount's options.
pub fn serve_fd(fd: OwnedFd, opts: &Options) -> Result<(), OverlayError> {
    clear_umask();
    let fs = opts.build()?;
    let slots = SessionSlots::of(&fs);
    let session =
        Session::from_fd(fs, fd, SessionACL::All, opts.config()).map_err(OverlayError::Serve)?;
    slots.fill(&session);
    session.run().map_err(OverlayError::Serve)
}

/// Clears the umask of a process that does nothing but serve the overlay
/// ([`serve_fd`], [`Server`]): the kernel already applied the caller's to
/// the mode of every MKNOD and MKDIR, so with the server's own cleared a
/// new file is created with its final mode, without a chmod after. (Every
/// other entry the server makes gets its mode set explicitly.) A mount
/// served from threads of a shared process ([`mount`]) leaves its umask
/// alone and pays for the chmod.
fn clear_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
}

/// What the file system can only get from its session, once that exists.
struct SessionSlots {
    splicer: Arc<OnceLock<Splicer>>,
    notifier: Arc<OnceLock<Notifier>>,
}

impl SessionSlots {
    fn of(fs: &OverlayFs) -> SessionSlots {
        SessionSlots {
            splicer: fs.splice_slot(),
            notifier: fs.notifier_slot(),
        }
    }

    /// Lets the file system answer large reads by splice on the session's
    /// descriptor (without a duplicate of it, out of descriptors, reads are
    /// answered the usual way) and store files ahead in the kernel's cache.
    fn fill(self, session: &Session<OverlayFs>) {
        if let Ok(dev) = session.as_fd().try_clone_to_owned() {
            let _ = self.splicer.set(Splicer::new(dev));
        }
        let _ = self.notifier.set(session.notifier());
    }
}

/// A mounted overlay to be served in the foreground (`burrow overlay-mount`).
pub struct Server {
    session: Session<OverlayFs>,
}

/// Unmounts a [`Server`]'s file system from another thread (a signal
/// handler's), which makes [`Server::run`] return.
pub struct Unmounter(SessionUnmounter);

impl Unmounter {
    pub fn unmount(&mut self) -> io::Result<()> {
        self.0.unmount()
    }
}

impl Server {
    /// Mounts the overlay; serves nothing until [`Server::run`].
    pub fn mount(opts: &Options, mountpoint: &Path) -> Result<Server, OverlayError> {
        probe()?;
        clear_umask();
        let fs = opts.build()?;
        let slots = SessionSlots::of(&fs);
        let session = Session::new(fs, mountpoint, &opts.config())
            .map_err(|e| OverlayError::Mount(mountpoint.to_path_buf(), e))?;
        slots.fill(&session);
        Ok(Server { session })
    }

    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.session.unmount_callable())
    }

    /// Serves requests until the file system is unmounted.
    pub fn run(self) -> Result<(), OverlayError> {
        self.session.run().map_err(OverlayError::Serve)
    }
}
