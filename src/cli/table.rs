//! Docker-shaped tables: a header row, no borders, and each column but the
//! last as wide as its widest cell plus three spaces, and at least ten
//! (Docker's tabwriter: padding 3, minimum width 10).

/// Renders rows under a header as `docker ps` does.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                let width = (widths[i] + 3).max(10);
                l.push_str(&format!("{cell:<width$}"));
            } else {
                l.push_str(cell);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Shortens a command line for the COMMAND column, quoted as Docker does.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Bytes as Docker prints image sizes: 4.26MB, 1.2GB (powers of 1000).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        // Short columns take ten; longer ones their widest cell and three.
        let t = render(
            &["A", "CONTAINER ID", "LAST"],
            &[vec!["xyz".into(), "0123456789abc".into(), "1".into()]],
        );
        assert_eq!(
            t,
            "A         CONTAINER ID    LAST\nxyz       0123456789abc   1\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000), "1MB");
    }
}
