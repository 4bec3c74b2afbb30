//! Integration tests: the `burrow` binary, run as an unprivileged user.
//!
//! One test binary (cargo builds and links it once); the modules below group
//! the tests by topic. `util` is the harness: read its module doc first.
//! Expected behaviour is Docker's unless a test says otherwise.

#[macro_use]
mod util;

#[path = "cli/archive.rs"]
mod archive;
#[path = "cli/bearer.rs"]
mod bearer;
#[path = "cli/build.rs"]
mod build;
#[path = "cli/diskfull.rs"]
mod diskfull;
#[path = "cli/exec.rs"]
mod exec;
#[path = "cli/images.rs"]
mod images;
#[path = "cli/isolation.rs"]
mod isolation;
#[path = "cli/lifecycle.rs"]
mod lifecycle;
#[path = "cli/logs.rs"]
mod logs;
#[path = "cli/misc.rs"]
mod misc;
#[path = "cli/network.rs"]
mod network;
#[path = "cli/network_far.rs"]
mod network_far;
#[path = "cli/network_ipv6.rs"]
mod network_ipv6;
#[path = "cli/owners.rs"]
mod owners;
#[path = "cli/ps.rs"]
mod ps;
#[path = "cli/registry.rs"]
mod registry;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/security.rs"]
mod security;
#[path = "cli/storage.rs"]
mod storage;
#[path = "cli/tls.rs"]
mod tls;
#[path = "cli/token_server.rs"]
mod token_server;
#[path = "cli/tty.rs"]
mod tty;
#[path = "cli/webapp.rs"]
mod webapp;
