//! `run`'s option values parsed into types that cannot be wrong: `-e`, `-v`,
//! `--user`, `--network`. Pure functions; errors name the flag and the fix.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum OptionError {
    #[error("invalid argument \"{0}\" for \"-e, --env\": variable name is empty")]
    EmptyEnvName(String),
    #[error("invalid argument \"{0}\" for \"-e, --env\": variable names cannot contain whitespace")]
    EnvWhitespace(String),
    #[error("invalid argument \"{0}\" for \"-v, --volume\": {1}")]
    Volume(String, String),
    #[error("invalid argument \"{0}\" for \"-u, --user\": {1}")]
    User(String, String),
    #[error(
        "invalid argument \"{0}\" for \"--network\": expected slirp4netns[:allow_host_loopback=true|false,port_handler=kernel|userspace,client_source=real|gateway], none or host"
    )]
    Network(String),
}

/// Parses `-e` values. `KEY` alone copies the value from `lookup` (burrow's
/// environment) and is dropped when unset, as Docker does.
pub fn parse_env(
    items: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, OptionError> {
    let mut out = Vec::new();
    for item in items {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (item.as_str(), lookup(item)),
        };
        if key.is_empty() {
            return Err(OptionError::EmptyEnvName(item.clone()));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(OptionError::EnvWhitespace(item.clone()));
        }
        if let Some(v) = value {
            out.push(format!("{key}={v}"));
        }
    }
    Ok(out)
}

/// Merges environment lists: later entries replace earlier ones with the same
/// key, keeping the first position.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(overrides) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// A `-v HOST:CONTAINER[:ro|rw]` bind mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Parses one `-v` value. Relative host paths are resolved against `cwd`
/// only when they start with `.`, as named volumes are not supported yet.
pub fn parse_volume(spec: &str, cwd: &std::path::Path) -> Result<Bind, OptionError> {
    let err = |why: &str| OptionError::Volume(spec.to_string(), why.to_string());
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, opts) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, o] => (*h, *c, *o),
        [_] => {
            return Err(err(
                "anonymous volumes are not supported yet; give HOST:CONTAINER",
            ));
        }
        _ => return Err(err("expected HOST:CONTAINER[:OPTIONS]")),
    };
    let source = if host.starts_with('/') {
        PathBuf::from(host)
    } else if host.starts_with('.') {
        cwd.join(host)
    } else {
        return Err(err(
            "named volumes are not supported yet; give an absolute host path",
        ));
    };
    if !ctr.starts_with('/') {
        return Err(err("the container path must be absolute"));
    }
    if ctr.trim_end_matches('/').is_empty() {
        return Err(err("cannot mount over the container's root"));
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabel and propagation options change nothing here.
            "z" | "Z" | "rprivate" | "private" | "rbind" | "bind" => {}
            other => return Err(err(&format!("unknown option \"{other}\" (use ro or rw)"))),
        }
    }
    if !source.exists() {
        return Err(err(&format!(
            "host path {} does not exist; create it first",
            source.display()
        )));
    }
    Ok(Bind {
        source,
        destination: ctr.to_string(),
        readonly,
    })
}

/// `--user` as given: ids or names, resolved against the image's
/// `/etc/passwd` and `/etc/group` at create time.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

impl IdOrName {
    fn parse(s: &str) -> IdOrName {
        s.parse()
            .map_or_else(|_| IdOrName::Name(s.to_string()), IdOrName::Id)
    }
}

pub fn parse_user(s: &str) -> Result<UserSpec, OptionError> {
    let err = |why: &str| OptionError::User(s.to_string(), why.to_string());
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let valid = |x: &str| {
        !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    if !valid(u) {
        return Err(err("expected UID[:GID] or NAME[:GROUP]"));
    }
    if let Some(g) = g
        && !valid(g)
    {
        return Err(err("expected UID[:GID] or NAME[:GROUP]"));
    }
    Ok(UserSpec {
        user: IdOrName::parse(u),
        group: g.map(IdOrName::parse),
    })
}

/// A user resolved to numbers, with its home and supplementary groups.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves a user spec with the image's passwd and group files (their text;
/// empty when the image has none). Numeric ids need no entry, as in Docker.
pub fn resolve_user(spec: &UserSpec, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let users: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 7)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    let entry = match &spec.user {
        IdOrName::Id(id) => users.iter().find(|f| f[2].parse() == Ok(*id)),
        IdOrName::Name(n) => users.iter().find(|f| f[0] == n),
    };
    let (uid, primary, name, home) = match (&spec.user, entry) {
        (_, Some(f)) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            Some(f[0]),
            f[5].to_string(),
        ),
        (IdOrName::Id(id), None) => (*id, *id, None, "/".to_string()),
        (IdOrName::Name(n), None) => {
            return Err(format!(
                "unable to find user {n}: no matching entries in passwd file"
            ));
        }
    };
    let gid = match &spec.group {
        None => primary,
        Some(IdOrName::Id(g)) => *g,
        Some(IdOrName::Name(n)) => match groups.iter().find(|f| f[0] == n) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => {
                return Err(format!(
                    "unable to find group {n}: no matching entries in group file"
                ));
            }
        },
    };
    let additional_gids = match (name, &spec.group) {
        (Some(name), None) => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace with only loopback.
    None,
    /// The caller's network namespace.
    Host,
    /// burrow's userspace network (slirp4netns's layout): a TAP device in the
    /// container's namespace, served by the supervisor.
    Slirp {
        allow_host_loopback: bool,
        /// How published TCP ports reach the container.
        #[serde(default)]
        port_handler: PortHandler,
        /// Show every `-p` client as the gateway (10.0.2.2) instead of its
        /// real address.
        #[serde(default)]
        gateway_source: bool,
    },
}

/// `port_handler=`: which path a published TCP port's connections take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortHandler {
    /// Spliced between the host socket and a socket inside the container's
    /// network namespace (both the kernel's TCP); the userspace stack where
    /// that cannot be set up.
    #[default]
    Kernel,
    /// Through burrow's userspace TCP/IP stack and the TAP device.
    Userspace,
}

/// Parses `--network`: `slirp4netns[:OPTION,...]` with the options
/// `allow_host_loopback=true|false`, `port_handler=kernel|userspace` and
/// `client_source=real|gateway` (also `slirp`, and Docker's `bridge` and
/// `default`, which mean the default network), `none` or `host`.
pub fn parse_network(s: &str) -> Result<Network, OptionError> {
    let bad = || OptionError::Network(s.to_string());
    let (mode, opts) = s.split_once(':').unwrap_or((s, ""));
    match mode {
        "none" | "host" if !opts.is_empty() => Err(bad()),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "" | "slirp4netns" | "slirp" | "bridge" | "default" | "private" => {
            let mut allow_host_loopback = true;
            let mut port_handler = PortHandler::Kernel;
            let mut gateway_source = false;
            for opt in opts.split(',').filter(|o| !o.is_empty()) {
                match opt {
                    "allow_host_loopback=true" => allow_host_loopback = true,
                    "allow_host_loopback=false" => allow_host_loopback = false,
                    "port_handler=kernel" => port_handler = PortHandler::Kernel,
                    "port_handler=userspace" => port_handler = PortHandler::Userspace,
                    "client_source=real" => gateway_source = false,
                    "client_source=gateway" => gateway_source = true,
                    _ => return Err(bad()),
                }
            }
            Ok(Network::Slirp {
                allow_host_loopback,
                port_handler,
                gateway_source,
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_forms() {
        let look = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        assert_eq!(
            parse_env(&v(&["A=1", "B=", "HOME", "UNSET"]), look).unwrap(),
            v(&["A=1", "B=", "HOME=/home/me"])
        );
        assert!(matches!(
            parse_env(&v(&["=x"]), look),
            Err(OptionError::EmptyEnvName(_))
        ));
        assert!(matches!(
            parse_env(&v(&["A B=1"]), look),
            Err(OptionError::EnvWhitespace(_))
        ));
        assert_eq!(
            merge_env(&v(&["PATH=/bin", "A=1"]), &v(&["A=2", "B=3"])),
            v(&["PATH=/bin", "A=2", "B=3"])
        );
    }

    #[test]
    fn volume_forms() {
        let tmp = std::env::temp_dir();
        let t = tmp.display();
        let b = parse_volume(&format!("{t}:/work:ro"), Path::new("/")).unwrap();
        assert_eq!(
            b,
            Bind {
                source: tmp.clone(),
                destination: "/work".into(),
                readonly: true
            }
        );
        assert!(
            !parse_volume(&format!("{t}:/work"), Path::new("/"))
                .unwrap()
                .readonly
        );
        assert_eq!(parse_volume("./:/w", &tmp).unwrap().source, tmp.join("./"));
        for bad in [
            "named:/x",
            "/x",
            &format!("{t}:rel"),
            &format!("{t}:/"),
            &format!("{t}:/x:bogus"),
            "/no/such/dir/x:/x",
            "a:b:c:d",
        ] {
            assert!(
                parse_volume(bad, Path::new("/")).is_err(),
                "{bad} should fail"
            );
        }
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\n";

    #[test]
    fn user_forms() {
        let r = |s: &str| resolve_user(&parse_user(s).unwrap(), PASSWD, GROUP);
        assert_eq!(
            r("user").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10],
                home: "/home/user".into()
            }
        );
        assert_eq!(r("1000:1000").unwrap().additional_gids, Vec::<u32>::new());
        assert_eq!(
            r("4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 4242,
                additional_gids: vec![],
                home: "/".into()
            }
        );
        assert_eq!(r("user:wheel").unwrap().gid, 10);
        assert!(
            r("nobody")
                .unwrap_err()
                .contains("unable to find user nobody")
        );
        assert!(r("user:nogroup").is_err());
        assert!(parse_user("").is_err());
        assert!(parse_user(":1").is_err());
        assert!(parse_user("a b").is_err());
    }

    #[test]
    fn network_forms() {
        assert_eq!(parse_network("none").unwrap(), Network::None);
        assert_eq!(parse_network("host").unwrap(), Network::Host);
        let slirp = Network::Slirp {
            allow_host_loopback: true,
            port_handler: PortHandler::Kernel,
            gateway_source: false,
        };
        assert_eq!(parse_network("slirp4netns").unwrap(), slirp);
        assert_eq!(parse_network("bridge").unwrap(), slirp);
        assert_eq!(
            parse_network("slirp4netns:allow_host_loopback=false").unwrap(),
            Network::Slirp {
                allow_host_loopback: false,
                port_handler: PortHandler::Kernel,
                gateway_source: false,
            }
        );
        assert_eq!(
            parse_network("slirp4netns:port_handler=userspace,client_source=gateway").unwrap(),
            Network::Slirp {
                allow_host_loopback: true,
                port_handler: PortHandler::Userspace,
                gateway_source: true,
            }
        );
        assert!(parse_network("slirp4netns:port_handler=rootlesskit").is_err());
        assert!(parse_network("slirp4netns:bogus").is_err());
        assert!(parse_network("host:x").is_err());
        assert!(parse_network("macvlan").is_err());
    }
}
