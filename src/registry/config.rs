//! `~/.config/burrow/config.toml`: the registries to reach over plain HTTP.
//!
//! Only one key is read, so a few lines parse it rather than a TOML crate:
//!
//! ```toml
//! insecure_registries = ["registry.lan:5000", "10.0.0.5:5000"]
//! ```
//!
//! The array may span lines; `#` starts a comment. Anything else in the file
//! is ignored, so other settings can share it.

use std::fs;

use super::auth::config_dir;

/// The `insecure_registries` entries; empty when the file or key is missing.
pub fn insecure_registries() -> Vec<String> {
    config_dir()
        .and_then(|d| fs::read_to_string(d.join("config.toml")).ok())
        .map(|text| parse(&text))
        .unwrap_or_default()
}

fn parse(text: &str) -> Vec<String> {
    let uncommented: String = text
        .lines()
        .map(strip_comment)
        .collect::<Vec<_>>()
        .join("\n");
    let Some(start) = uncommented
        .lines()
        .position(|l| l.trim_start().starts_with("insecure_registries"))
    else {
        return Vec::new();
    };
    let rest: String = uncommented
        .lines()
        .skip(start)
        .collect::<Vec<_>>()
        .join("\n");
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    let Some(close) = rest[open..].find(']') else {
        return Vec::new();
    };
    rest[open + 1..open + close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Drops a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_insecure_list() {
        let text = "# burrow\nother = 1\ninsecure_registries = [\n  \"a:5000\", # lab\n  'b',\n]\n[section]\nx = \"#\"\n";
        assert_eq!(parse(text), vec!["a:5000", "b"]);
        assert!(parse("other = [\"x\"]").is_empty());
        assert_eq!(parse("insecure_registries = [\"r#1\"]"), vec!["r#1"]);
    }
}
