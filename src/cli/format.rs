//! `--format` as Docker reads it, for the commands that print one JSON
//! object per row (`ps`, `images`): `table` (the default table), `json`
//! (one object per line), `table TEMPLATE` (a table with a header and the
//! columns the template's tabs make) or any other `TEMPLATE`, rendered once
//! per row. As in Docker, a literal `\t` or `\n` in the format stands for a
//! tab or a newline, so `--format "table {{.Names}}\t{{.Ports}}"` works
//! from a shell.

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::table;
use super::template::Template;

/// What `--format` asked for.
pub enum Format {
    /// The command's own table.
    Table,
    /// One JSON object per line.
    Json,
    /// A template per row, under a header when `table` came first.
    Template { template: Template, table: bool },
}

/// Docker's reading of a `--format` string: a literal `\t` or `\n` is a
/// tab or a newline.
fn unescape(format: &str) -> String {
    format.replace("\\t", "\t").replace("\\n", "\n")
}

/// A template alone (`inspect -f`), read as `--format` is; `example` goes
/// in the error.
pub fn template(format: &str, example: &str) -> Result<Template> {
    let format = unescape(format);
    Template::parse(&format)
        .with_context(|| format!("bad --format {format:?}: use a Go template such as '{example}'"))
}

impl Format {
    pub fn parse(format: &str) -> Result<Format> {
        let format = unescape(format);
        let trimmed = format.trim();
        if trimmed == "table" {
            return Ok(Format::Table);
        }
        if trimmed == "json" || trimmed == "{{json .}}" {
            return Ok(Format::Json);
        }
        let (body, table) = match trimmed.strip_prefix("table ") {
            Some(rest) => (rest.trim_start(), true),
            None => (format.as_str(), false),
        };
        let template = Template::parse(body).with_context(|| {
            format!(
                "bad --format {format:?}: use table, json or a Go template such as '{{{{.ID}}}}'"
            )
        })?;
        Ok(Format::Template { template, table })
    }
}

/// Prints `rows` with a template `format` (see [`Format::Template`]).
/// `titles` names the column of each field (`ID` → `CONTAINER ID`); other
/// fields get their own name in capitals.
pub fn print_rows(
    template: &Template,
    table: bool,
    rows: &[Value],
    titles: &[(&str, &str)],
) -> Result<()> {
    let lines = rows
        .iter()
        .map(|row| template.render(row))
        .collect::<Result<Vec<_>, _>>()
        .context("bad --format")?;
    if !table {
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    let header = template
        .render(&header_row(&template.fields(), titles))
        .context("bad --format")?;
    let header: Vec<&str> = header.split('\t').collect();
    let cells: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    print!("{}", table::render(&header, &cells));
    Ok(())
}

/// The object a table's header is rendered from: each field the template
/// names, with its column title (there may be no row to take them from).
fn header_row(fields: &[String], titles: &[(&str, &str)]) -> Value {
    let mut map = Map::new();
    for key in fields {
        map.insert(key.clone(), Value::String(shout(key)));
    }
    for (key, title) in titles {
        map.insert(key.to_string(), Value::String(title.to_string()));
    }
    Value::Object(map)
}

/// `CreatedAt` → `CREATED AT`.
fn shout(key: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if i > 0 && c.is_uppercase() && (chars[i - 1].is_lowercase() || next_lower) {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        assert!(matches!(Format::parse("table").unwrap(), Format::Table));
        assert!(matches!(Format::parse("json").unwrap(), Format::Json));
        assert!(matches!(Format::parse("{{json .}}").unwrap(), Format::Json));
        assert!(matches!(
            Format::parse("table {{.ID}}").unwrap(),
            Format::Template { table: true, .. }
        ));
        assert!(matches!(
            Format::parse("{{.ID}}").unwrap(),
            Format::Template { table: false, .. }
        ));
        let err = Format::parse("{{.ID").err().unwrap();
        assert!(format!("{err:#}").contains("bad --format"), "{err:#}");
    }

    #[test]
    fn headers_come_from_titles_or_names() {
        let t = Template::parse("{{.ID}}\t{{.CreatedAt}}\t{{.Names}}").unwrap();
        let header = header_row(&t.fields(), &[("ID", "CONTAINER ID")]);
        assert_eq!(
            t.render(&header).unwrap(),
            "CONTAINER ID\tCREATED AT\tNAMES"
        );
        assert_eq!(shout("ID"), "ID");
        assert_eq!(shout("RunningFor"), "RUNNING FOR");
    }
}
