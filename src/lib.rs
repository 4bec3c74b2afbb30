//! burrow: a rootless container runner.
//!
//! One unprivileged binary, no daemon. The layers, from the user down:
//!
//! - [`cli`] parses arguments, prints tables and maps errors to Docker's exit codes
//!   (125 for burrow's own failures, 126/127 when the command cannot run, else the
//!   command's own). It is the only module that knows clap and terminals.
//! - [`container`] is the orchestrator: it turns a `run` request into an OCI runtime
//!   spec (`config.json` in the container's bundle), prepares the root filesystem,
//!   forks the per-container supervisor, records state and logs, and cleans up.
//! - [`registry`] is the distribution client: pull, push, login and search
//!   against OCI registries, over HTTP(S) with ureq; pulled images land in the store.
//! - [`store`] keeps images: content-addressed config blobs, one unpacked folder per
//!   layer diff_id, tags; [`image`] holds references as pure data.
//! - [`sandbox`] builds a container from an OCI spec alone: user namespace and id
//!   maps, mount/pid/uts/ipc/net/cgroup namespaces, the mount recipe, `pivot_root`,
//!   capabilities, the minimal init and the final `exec`.
//!
//! Dependencies point one way: `cli → container → registry → store → image`, and
//! `container → sandbox`. The sandbox never imports the store or the CLI; it is
//! handed a spec and file descriptors. `docs/architecture.md` has the long version.
#![deny(unsafe_code)]

pub mod build;
pub mod cli;
pub mod config;
pub mod container;
pub mod image;
pub mod net;
pub mod overlay;
pub mod paths;
pub mod registry;
pub mod sandbox;
pub mod store;
pub mod timefmt;
