//! `pull`, `push`, `login`, `logout`, `search`: each one call on [`crate::registry`].

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::table::render;
use crate::paths::Dirs;
use crate::registry::{self, Credentials, Output, PullOptions, PushOptions, Transport, Wanted};

/// Options shared by the commands that talk to a registry.
#[derive(Args, Debug, Clone)]
pub struct TransportArgs {
    /// true: HTTPS with a certificate the system's CA store (or
    /// ~/.config/burrow/certs.d/REGISTRY/) trusts; false: HTTPS unchecked, or plain HTTP
    /// [default: true, except for registries on loopback and insecure_registries]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
}

impl TransportArgs {
    fn transport(&self) -> Transport {
        Transport {
            tls_verify: self.tls_verify,
        }
    }
}

/// Download an image from a registry
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow pull busybox\n  burrow pull 127.0.0.1:5000/team/app:1.2\n  burrow pull --platform linux/arm64 alpine@sha256:..."
)]
pub struct PullArgs {
    /// Print only the image's name when done
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to pull from a multi-platform image: os/arch[/variant] [default: the host's]
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Image to pull: NAME[:TAG|@DIGEST]
    pub reference: String,
}

/// Upload an image to a registry
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow tag app:1.2 127.0.0.1:5000/team/app:1.2\n  burrow push 127.0.0.1:5000/team/app:1.2"
)]
pub struct PushArgs {
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Image to push: REGISTRY/NAME[:TAG]
    pub reference: String,
}

/// Log in to a registry
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  echo \"$PASSWORD\" | burrow login 127.0.0.1:5000 -u me --password-stdin"
)]
pub struct LoginArgs {
    /// Registry host[:port] [default: docker.io]
    pub registry: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users in `ps`: prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// Log out from a registry
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] [default: docker.io]
    pub registry: Option<String>,
}

/// Search a registry for images
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  burrow search nginx                    (Docker Hub)\n  burrow search --filter is-official=true --filter stars=100 nginx\n  burrow search --format json nginx\n  burrow search 127.0.0.1:5000/team      (any other registry, by its catalog)"
)]
pub struct SearchArgs {
    /// Most results to show
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Don't truncate descriptions
    #[arg(long)]
    pub no_trunc: bool,
    /// Keep only results that match: stars=N (at least N stars), is-official=true|false
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format: table or json (one object per line, Docker's keys)
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// TERM, or REGISTRY/TERM for a registry other than Docker Hub
    pub term: String,
}

pub fn pull(dirs: &Dirs, a: PullArgs) -> Result<i32> {
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<Wanted>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = PullOptions {
        platform,
        transport: a.transport.transport(),
        output: if a.quiet {
            Output::Quiet
        } else {
            Output::Stdout
        },
    };
    registry::pull(dirs, &a.reference, &opts)
        .map_err(|e| super::disk_full(e, &format!("cannot pull {}", a.reference), dirs))?;
    // Docker ends with the fully qualified name, and -q prints only that.
    let reference: crate::image::Reference = a.reference.parse()?;
    println!("{reference}");
    Ok(0)
}

pub fn push(dirs: &Dirs, a: PushArgs) -> Result<i32> {
    let opts = PushOptions {
        transport: a.transport.transport(),
        output: if a.quiet {
            Output::Quiet
        } else {
            Output::Stdout
        },
    };
    registry::push(dirs, &a.reference, &opts)?;
    Ok(0)
}

pub fn login(a: LoginArgs) -> Result<i32> {
    let registry = registry_arg(a.registry.as_deref());
    let Some(user) = a.username else {
        bail!("give a user name with -u USER (burrow does not prompt)");
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (burrow does not prompt)"),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials { user, password };
    let path = registry::login(&registry, creds, &a.transport.transport())?;
    eprintln!("Credentials saved in {}", path.display());
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(a: LogoutArgs) -> Result<i32> {
    let registry = registry_arg(a.registry.as_deref());
    if registry::logout(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

/// `search --filter` values, as `docker search` takes them.
#[derive(Debug, Default, PartialEq)]
struct SearchFilter {
    min_stars: u64,
    official: Option<bool>,
}

impl SearchFilter {
    fn parse(filters: &[String]) -> Result<SearchFilter> {
        let mut f = SearchFilter::default();
        for item in filters {
            match item.split_once('=') {
                Some(("stars", n)) => {
                    f.min_stars = n.parse().map_err(|_| {
                        anyhow::anyhow!("invalid filter \"{item}\": stars must be a number")
                    })?
                }
                Some(("is-official", v)) => {
                    f.official = Some(v.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "invalid filter \"{item}\": is-official must be true or false"
                        )
                    })?)
                }
                _ => bail!("invalid filter \"{item}\"; use stars=N or is-official=true|false"),
            }
        }
        Ok(f)
    }

    fn keeps(&self, r: &registry::SearchResult) -> bool {
        r.stars >= self.min_stars && self.official.is_none_or(|o| o == r.official)
    }
}

pub fn search(a: SearchArgs) -> Result<i32> {
    let filter = SearchFilter::parse(&a.filters)?;
    if a.format != "table" && a.format != "json" {
        bail!(
            "unsupported format \"{}\"; use --format table or --format json",
            a.format
        );
    }
    let mut results = registry::search(&a.term, a.limit, &a.transport.transport())?;
    results.retain(|r| filter.keeps(r));
    if a.format == "json" {
        for r in &results {
            // Docker's keys and string values.
            let row = serde_json::json!({
                "Description": r.description,
                "IsAutomated": "false",
                "IsOfficial": r.official.to_string(),
                "Name": r.name,
                "StarCount": r.stars.to_string(),
            });
            println!("{row}");
        }
        return Ok(0);
    }
    let truncate = !a.no_trunc && std::io::stdout().is_terminal();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut description = r.description.replace('\n', " ");
            if truncate && description.chars().count() > 45 {
                description = description.chars().take(44).collect::<String>() + "…";
            }
            vec![
                r.name.clone(),
                description,
                r.stars.to_string(),
                if r.official {
                    "[OK]".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    print!(
        "{}",
        render(&["NAME", "DESCRIPTION", "STARS", "OFFICIAL"], &rows)
    );
    Ok(0)
}

/// The registry a login names: `docker.io` by default, Hub's aliases folded.
fn registry_arg(arg: Option<&str>) -> String {
    let r = arg.unwrap_or(crate::image::DEFAULT_DOMAIN);
    let r = r
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match r {
        "index.docker.io" | "registry-1.docker.io" | "index.docker.io/v1" => {
            crate::image::DEFAULT_DOMAIN.into()
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(stars: u64, official: bool) -> registry::SearchResult {
        registry::SearchResult {
            name: "x".into(),
            description: String::new(),
            stars,
            official,
        }
    }

    #[test]
    fn search_filters_as_docker_takes_them() {
        let f = SearchFilter::parse(&["stars=10".into(), "is-official=true".into()]).unwrap();
        assert!(f.keeps(&hit(10, true)));
        assert!(!f.keeps(&hit(9, true)));
        assert!(!f.keeps(&hit(100, false)));
        assert!(SearchFilter::parse(&[]).unwrap().keeps(&hit(0, false)));
        for bad in [
            "stars=many",
            "is-official=yes",
            "is-automated=true",
            "stars",
        ] {
            let err = SearchFilter::parse(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
