//! `run` and `create`.

use anyhow::Result;

use crate::container::{self, Attach, CreateRequest};
use clap::Args;

use crate::paths::Dirs;

/// Options shared by `run` and `create`: what the container is.
#[derive(Args, Debug, Clone)]
pub struct ContainerOpts {
    /// Name for the container [default: a generated adjective_noun]
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from burrow's environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: UID[:GID] or NAME[:GROUP]
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro|rw]
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:OPTS]")]
    pub volumes: Vec<String>,
    /// Container hostname [default: the first 12 characters of the id]
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: slirp4netns[:OPTIONS] (userspace NAT; the container is 10.0.2.100, the host's loopback is 10.0.2.2), none (only loopback) or host (burrow's network namespace). OPTIONS, comma-separated: allow_host_loopback=false (10.0.2.2 reaches nothing); port_handler=userspace (published TCP ports through burrow's own TCP/IP stack instead of spliced kernel sockets); client_source=gateway (-p clients appear as 10.0.2.2, not as their real address)
    #[arg(long = "network", alias = "net", default_value = "slirp4netns")]
    pub network: String,
    /// Publish a container port on the host: [IP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|/udp]
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add a Linux capability (e.g. NET_ADMIN, or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (e.g. CHOWN, or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give every capability of the container's user namespace
    #[arg(long)]
    pub privileged: bool,
    /// Run the built-in init as PID 1 (reaps zombies, forwards signals)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub init: bool,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep standard input open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal (with -i, this terminal's input
    /// reaches it, and the terminal is put in raw mode while it runs)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Root filesystem driver: overlay (kernel overlayfs in the user namespace) or vfs (a copy) [default: overlay where the kernel allows it]
    #[arg(
        long,
        env = "BURROW_STORAGE_DRIVER",
        default_value = "",
        hide_default_value = true
    )]
    pub storage_driver: String,
    /// Image to run
    pub image: String,
    /// Command and arguments [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Create and start a container
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow run --rm busybox sh -c 'id; hostname'\n  burrow run -d --name web -p 8080:80 busybox httpd -f -p 80\n  burrow run --rm -v \"$PWD\":/work:ro busybox ls /work\n  burrow run --rm --user 1000:1000 --hostname box busybox id"
)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

/// Create a container without starting it
#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
}

impl ContainerOpts {
    fn request(&self) -> CreateRequest {
        CreateRequest {
            image: self.image.clone(),
            name: self.name.clone(),
            command: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes: self.volumes.clone(),
            hostname: self.hostname.clone(),
            network: self.network.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            init: self.init,
            interactive: self.interactive,
            tty: self.tty,
            auto_remove: self.rm,
            storage_driver: self.storage_driver.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
        }
    }
}

pub fn run(dirs: &Dirs, a: RunArgs) -> Result<i32> {
    let rec = container::create(dirs, &a.opts.request()).map_err(|e| {
        let what = format!("cannot create a container from {}", a.opts.image);
        super::disk_full(e, &what, dirs)
    })?;
    let attach = if a.detach {
        Attach::Detached
    } else {
        Attach::Foreground { log: !a.opts.rm }
    };
    match container::start(dirs, &rec, attach)? {
        Some(code) => Ok(code),
        None => {
            println!("{}", rec.id);
            Ok(0)
        }
    }
}

pub fn create(dirs: &Dirs, a: CreateArgs) -> Result<i32> {
    let rec = container::create(dirs, &a.opts.request()).map_err(|e| {
        let what = format!("cannot create a container from {}", a.opts.image);
        super::disk_full(e, &what, dirs)
    })?;
    println!("{}", rec.id);
    Ok(0)
}
