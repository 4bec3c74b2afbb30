//! The build context: a folder read in place (never copied whole), seen
//! through `.dockerignore`, and the glob matching COPY sources and ignore
//! patterns share.
//!
//! `.dockerignore` follows Docker's rules: one pattern a line, `#` starts a
//! comment, patterns are cleaned and relative to the context root (a leading
//! `/` is dropped), `*` `?` `[...]` match within one path component, `**`
//! matches any number of components, a pattern that matches a folder
//! excludes everything in it, `!` re-includes, and the last matching line
//! wins.

use std::path::{Component, Path, PathBuf};

/// One `.dockerignore` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    exclude: bool,
}

/// The parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pat) = match line.strip_prefix('!') {
                Some(p) => (false, p.trim()),
                None => (true, line),
            };
            let parts = clean(pat);
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, exclude });
        }
        Ignore { patterns }
    }

    /// Whether the path (relative to the context) is left out.
    pub fn excludes(&self, rel: &Path) -> bool {
        let comps: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let mut excluded = false;
        for p in &self.patterns {
            // The pattern, or the pattern matching a parent folder.
            let hit = (1..=comps.len()).any(|n| match_parts(&p.parts, &comps[..n]));
            if hit {
                excluded = p.exclude;
            }
        }
        excluded
    }

    /// Whether any `!` line exists: then an excluded folder must still be
    /// walked, since something inside it may come back.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| !p.exclude)
    }
}

/// A pattern's components after cleaning `.`, `..` and slashes.
fn clean(pattern: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p.to_string()),
        }
    }
    parts
}

/// Matches pattern components against path components; `**` spans any
/// number of components (none included).
fn match_parts(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_parts(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first, p) && match_parts(rest, prest),
            None => false,
        },
    }
}

/// Matches one component against a glob: `*`, `?`, `[abc]`, `[a-z]`,
/// `[^x]`/`[!x]`, and `\` escapes.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|k| glob_at(&p[1..], &n[k..])),
        Some('?') => !n.is_empty() && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            match class(&p[1..], *c) {
                Some((ok, used)) => ok && glob_at(&p[1 + used..], &n[1..]),
                None => n.first() == Some(&'[') && glob_at(&p[1..], &n[1..]),
            }
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_at(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_at(&p[1..], &n[1..]),
    }
}

/// A `[...]` class after its `[`: whether `c` matches, and the characters
/// the class used (through its `]`); `None` if it is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^' | '!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= lo <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    None
}

/// Whether a COPY source has glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A source path made relative to its root, refusing to climb out of it:
/// `../x` and `/x` both stay inside, as Docker keeps them.
pub fn inside(path: &str) -> PathBuf {
    clean(path).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txt.bak"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[!a-c]x", "bx"));
        assert!(glob("\\*", "*"));
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse(
            "# comment\n*.log\n/build\n**/tmp\nsecret/*\n!secret/keep\ndocs/**/*.md\n!docs/README.md\n",
        );
        let ex = |p: &str| ig.excludes(Path::new(p));
        assert!(ex("a.log"));
        assert!(!ex("sub/a.log"), "* does not cross folders");
        assert!(
            ex("build") && ex("build/x/y"),
            "a folder takes its contents"
        );
        assert!(ex("tmp") && ex("a/b/tmp/c"));
        assert!(ex("secret/a") && !ex("secret/keep"));
        assert!(ex("docs/x.md") && ex("docs/a/b/x.md") && !ex("docs/README.md"));
        assert!(!ex("src/main.rs"));
        assert!(ig.has_exceptions());
        assert!(Ignore::parse("./a/../b\n").excludes(Path::new("b")));
    }

    #[test]
    fn sources_stay_inside() {
        assert_eq!(inside("../../etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(inside("/a/./b/"), PathBuf::from("a/b"));
        assert_eq!(inside("."), PathBuf::new());
    }
}
