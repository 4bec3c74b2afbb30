//! `Change`: one Dockerfile-style instruction applied to an image config, as
//! `docker import --change` takes them (`CMD ["sh"]`, `ENV PATH=/bin`, ...).
//!
//! Parsing is pure: text in, a `Change` out, then [`Change::apply`] edits an
//! OCI `Config`. Quoting follows the Dockerfile's: double or single quotes
//! group words, a backslash escapes the next character.

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::image::Config;
use thiserror::Error;

const SUPPORTED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR";
const KEYWORDS: [&str; 9] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    #[error("unsupported change \"{0}\"; use {SUPPORTED}")]
    Unsupported(String),
    #[error("change \"{0}\" needs an argument")]
    MissingArgument(String),
    #[error("invalid change \"{change}\": {reason}")]
    Syntax {
        change: String,
        reason: &'static str,
    },
}

/// One parsed `--change`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    /// `KEY=value` pairs, in order.
    Env(Vec<(String, String)>),
    /// `port/proto`, the protocol filled in (`80/tcp`).
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

impl FromStr for Change {
    type Err = ChangeError;

    fn from_str(text: &str) -> Result<Change, ChangeError> {
        let text = text.trim();
        let (keyword, arg) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let arg = arg.trim();
        let keyword = keyword.to_ascii_uppercase();
        let syntax = |reason| ChangeError::Syntax {
            change: text.to_string(),
            reason,
        };
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(ChangeError::Unsupported(text.to_string()));
        }
        if arg.is_empty() {
            return Err(ChangeError::MissingArgument(keyword));
        }
        Ok(match keyword.as_str() {
            "CMD" => Change::Cmd(command(arg)),
            "ENTRYPOINT" => Change::Entrypoint(command(arg)),
            "ENV" => Change::Env(pairs(arg, true).map_err(syntax)?),
            "LABEL" => Change::Label(pairs(arg, false).map_err(syntax)?),
            "EXPOSE" => Change::Expose(ports(arg).map_err(syntax)?),
            "VOLUME" => Change::Volume(
                json_array(arg)
                    .unwrap_or_else(|| arg.split_whitespace().map(str::to_string).collect()),
            ),
            "STOPSIGNAL" => Change::StopSignal(arg.to_string()),
            "USER" => Change::User(arg.to_string()),
            "WORKDIR" => Change::Workdir(arg.to_string()),
            _ => return Err(ChangeError::Unsupported(text.to_string())),
        })
    }
}

impl Change {
    /// Applies this change on top of `config`, as the same line in a
    /// Dockerfile would: later values win, lists and maps merge.
    pub fn apply(&self, config: &mut Config) {
        match self {
            Change::Cmd(argv) => {
                config.set_cmd(Some(argv.clone()));
            }
            Change::Entrypoint(argv) => {
                config.set_entrypoint(Some(argv.clone()));
            }
            Change::Env(vars) => set_env(config, vars),
            Change::Expose(ports) => {
                let mut all = config.exposed_ports().clone().unwrap_or_default();
                merge_unique(&mut all, ports);
                config.set_exposed_ports(Some(all));
            }
            Change::Label(labels) => {
                let map = config.labels_mut().get_or_insert_with(HashMap::new);
                map.extend(labels.iter().cloned());
            }
            Change::StopSignal(s) => {
                config.set_stop_signal(Some(s.clone()));
            }
            Change::User(u) => {
                config.set_user(Some(u.clone()));
            }
            Change::Volume(v) => {
                let mut all = config.volumes().clone().unwrap_or_default();
                merge_unique(&mut all, v);
                config.set_volumes(Some(all));
            }
            Change::Workdir(dir) => {
                // A relative WORKDIR is relative to the previous one, as in a Dockerfile.
                let base = config.working_dir().clone().unwrap_or_else(|| "/".into());
                let dir = if dir.starts_with('/') {
                    dir.clone()
                } else {
                    join(&base, dir)
                };
                config.set_working_dir(Some(dir));
            }
        }
    }
}

/// Exec form when the argument is a JSON array of strings, else shell form.
fn command(arg: &str) -> Vec<String> {
    json_array(arg).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), arg.into()])
}

fn json_array(arg: &str) -> Option<Vec<String>> {
    arg.starts_with('[')
        .then(|| serde_json::from_str(arg).ok())
        .flatten()
}

/// `K=V K2="v 2"`, or for ENV the legacy `KEY the whole value`.
fn pairs(arg: &str, legacy_allowed: bool) -> Result<Vec<(String, String)>, &'static str> {
    let words = split_words(arg)?;
    if legacy_allowed && !words[0].contains('=') {
        let (key, value) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err("expected KEY=VALUE pairs"),
        })
        .collect()
}

/// `80`, `53/udp`, `8000-8010/tcp`: the protocol defaults to tcp.
fn ports(arg: &str) -> Result<Vec<String>, &'static str> {
    arg.split_whitespace()
        .map(|p| {
            let (range, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let proto = proto.to_ascii_lowercase();
            let valid_port = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            if !valid_port(lo) || !valid_port(hi) {
                return Err("ports are numbers from 1 to 65535, optionally /tcp, /udp or /sctp");
            }
            if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                return Err("the protocol must be tcp, udp or sctp");
            }
            Ok(format!("{range}/{proto}"))
        })
        .collect()
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', q) if q != Some('\'') => {
                let next = chars.next().ok_or("a trailing backslash escapes nothing")?;
                word.get_or_insert_default().push(next);
            }
            (c, Some(q)) if c == q => quote = None,
            (c, Some(_)) => word.get_or_insert_default().push(c),
            ('"' | '\'', None) => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (c, None) if c.is_whitespace() => words.extend(word.take()),
            (c, None) => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed");
    }
    words.extend(word);
    Ok(words)
}

fn set_env(config: &mut Config, vars: &[(String, String)]) {
    let mut env = config.env().clone().unwrap_or_default();
    for (key, value) in vars {
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{key}={value}"));
    }
    config.set_env(Some(env));
}

fn merge_unique(all: &mut Vec<String>, new: &[String]) {
    for item in new {
        if !all.contains(item) {
            all.push(item.clone());
        }
    }
}

fn join(base: &str, rel: &str) -> String {
    format!("{}/{rel}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(s: &str) -> Change {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            change(r#"CMD ["sh", "-c", "echo"]"#),
            Change::Cmd(strings(&["sh", "-c", "echo"]))
        );
        assert_eq!(
            change("cmd echo hi"),
            Change::Cmd(strings(&["/bin/sh", "-c", "echo hi"]))
        );
        assert_eq!(
            change("ENTRYPOINT [\"/init\"]"),
            Change::Entrypoint(strings(&["/init"]))
        );
    }

    #[test]
    fn env_and_label_pairs() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            change(r#"ENV A=1 B="two words" C=a\ b"#),
            Change::Env(vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "a b")
            ])
        );
        assert_eq!(
            change("ENV PATH /usr/bin:/bin"),
            Change::Env(vec![pair("PATH", "/usr/bin:/bin")])
        );
        assert_eq!(
            change("LABEL a=b 'c d'=e"),
            Change::Label(vec![pair("a", "b"), pair("c d", "e")])
        );
        assert!(matches!(
            "LABEL novalue".parse::<Change>(),
            Err(ChangeError::Syntax { .. })
        ));
        assert!(matches!(
            "ENV A=\"open".parse::<Change>(),
            Err(ChangeError::Syntax { .. })
        ));
    }

    #[test]
    fn expose_fills_in_the_protocol() {
        assert_eq!(
            change("EXPOSE 80 53/udp 8000-8010"),
            Change::Expose(strings(&["80/tcp", "53/udp", "8000-8010/tcp"]))
        );
        assert!("EXPOSE 0".parse::<Change>().is_err());
        assert!("EXPOSE 80/icmp".parse::<Change>().is_err());
    }

    #[test]
    fn unsupported_and_missing() {
        assert!(matches!(
            "RUN make".parse::<Change>(),
            Err(ChangeError::Unsupported(_))
        ));
        assert!(matches!(
            "ONBUILD RUN x".parse::<Change>(),
            Err(ChangeError::Unsupported(_))
        ));
        assert!(matches!(
            "CM x".parse::<Change>(),
            Err(ChangeError::Unsupported(_))
        ));
        assert_eq!(
            "USER".parse::<Change>(),
            Err(ChangeError::MissingArgument("USER".into()))
        );
    }

    #[test]
    fn apply_merges_like_a_dockerfile() {
        let mut c = Config::default();
        for s in [
            "ENV A=1 B=2",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub",
            "USER 1000",
            "EXPOSE 80",
            "EXPOSE 80 443",
            "LABEL x=y",
        ] {
            change(s).apply(&mut c);
        }
        assert_eq!(c.env().as_deref(), Some(&strings(&["B=2", "A=3"])[..]));
        assert_eq!(c.working_dir().as_deref(), Some("/app/sub"));
        assert_eq!(c.user().as_deref(), Some("1000"));
        assert_eq!(
            c.exposed_ports().as_deref(),
            Some(&strings(&["80/tcp", "443/tcp"])[..])
        );
        assert_eq!(c.labels().as_ref().unwrap()["x"], "y");
    }
}
