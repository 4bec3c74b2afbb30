//! What a pull tells the user while it runs.
//!
//! Three shapes: nothing (`-q`); whole lines, one per event, as `docker pull`
//! prints when its output is not a terminal (`abc123: Pull complete`); and,
//! on a terminal, one line per layer redrawn in place with a bar, bytes and
//! state, plus a total line, as Docker draws them. Download threads report
//! events and byte counts; one lock keeps lines whole, and the bars are
//! redrawn at most ten times a second, so a fast download costs no terminal
//! time.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::pull::Output;

const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 40;

/// A layer's line.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    state: String,
    done: u64,
    total: u64,
    /// Counted in the total line (a layer the store already had is not).
    counted: bool,
}

#[derive(Debug)]
struct State {
    rows: Vec<Row>,
    /// Lines of bars on screen, to move back over.
    drawn: usize,
    last_draw: Option<Instant>,
}

/// Progress reporting shared by the download threads.
#[derive(Debug)]
pub struct Progress {
    output: Output,
    bars: bool,
    state: Mutex<State>,
}

impl Progress {
    /// Bars when the stream `output` names is a terminal (and not a dumb one).
    pub fn new(output: Output) -> Progress {
        let terminal = match output {
            Output::Quiet => false,
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::Stderr => std::io::stderr().is_terminal(),
        };
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Progress {
            output,
            bars: terminal && !dumb,
            state: Mutex::new(State {
                rows: Vec::new(),
                drawn: 0,
                last_draw: None,
            }),
        }
    }

    /// A line of its own, above any bars.
    pub fn line(&self, text: &str) {
        let state = self.state.lock().unwrap();
        self.write(&format!("{text}\n"));
        drop(state);
    }

    /// Adds a layer's line with its first state (`Pulling fs layer`,
    /// `Already exists`); returns its index for [`Progress::advance`].
    pub fn layer(&self, id: &str, state: &str, total: u64, counted: bool) -> usize {
        let mut s = self.state.lock().unwrap();
        s.rows.push(Row {
            id: id.into(),
            state: state.into(),
            done: 0,
            total,
            counted,
        });
        if !self.bars {
            self.write(&format!("{id}: {state}\n"));
        } else {
            self.redraw(&mut s, true);
        }
        s.rows.len() - 1
    }

    /// Bytes received for layer `i` (its total so far).
    pub fn advance(&self, i: usize, done: u64) {
        if !self.bars {
            return;
        }
        let mut s = self.state.lock().unwrap();
        let row = &mut s.rows[i];
        row.done = done;
        if row.state == "Pulling fs layer" || row.state == "Waiting" {
            row.state = "Downloading".into();
        }
        self.redraw(&mut s, false);
    }

    /// A new state for layer `i` (`Pull complete`, `Retrying`...); also a
    /// line of its own when not drawing bars.
    pub fn state(&self, i: usize, state: &str) {
        let mut s = self.state.lock().unwrap();
        s.rows[i].state = state.into();
        // A layer another pull fetched meanwhile counts as done too.
        if state == "Pull complete" || state == "Already exists" {
            s.rows[i].done = s.rows[i].total;
        }
        if self.bars {
            self.redraw(&mut s, true);
        } else {
            let id = s.rows[i].id.clone();
            self.write(&format!("{id}: {state}\n"));
        }
    }

    /// Draws the final state of the bars and leaves them on screen.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap();
        if self.bars && !s.rows.is_empty() {
            self.redraw(&mut s, true);
        }
        s.drawn = 0;
    }

    fn redraw(&self, s: &mut State, force: bool) {
        let now = Instant::now();
        if !force && s.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        s.last_draw = Some(now);
        let mut text = String::new();
        if s.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", s.drawn));
        }
        for row in &s.rows {
            text.push_str("\x1b[2K");
            text.push_str(&render_row(row));
            text.push('\n');
        }
        let (done, total) = s
            .rows
            .iter()
            .filter(|r| r.counted)
            .fold((0, 0), |(d, t), r| (d + r.done, t + r.total));
        text.push_str("\x1b[2K");
        text.push_str(&render_total(done, total));
        text.push('\n');
        s.drawn = s.rows.len() + 1;
        self.write(&text);
    }

    fn write(&self, text: &str) {
        // A closed pipe must not fail the pull.
        let _ = match self.output {
            Output::Quiet => Ok(()),
            Output::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Output::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

fn render_row(row: &Row) -> String {
    if row.state == "Downloading" && row.total > 0 {
        format!(
            "{}: {} {} {}/{}",
            row.id,
            row.state,
            bar(row.done, row.total),
            human(row.done),
            human(row.total)
        )
    } else {
        format!("{}: {}", row.id, row.state)
    }
}

fn render_total(done: u64, total: u64) -> String {
    format!(
        "Total: {} {}/{}",
        bar(done, total),
        human(done),
        human(total)
    )
}

/// `[=====>        ]`, Docker's bar.
fn bar(done: u64, total: u64) -> String {
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        (done.min(total) as u128 * BAR_WIDTH as u128 / total as u128) as usize
    };
    let mut s = String::with_capacity(BAR_WIDTH + 2);
    s.push('[');
    for i in 0..BAR_WIDTH {
        s.push(match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    s.push(']');
    s
}

/// Decimal units, as Docker's progress shows them: `1.23MB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sizes_look_like_dockers() {
        assert_eq!(bar(0, 10), format!("[>{}]", " ".repeat(39)));
        assert_eq!(
            bar(5, 10),
            format!("[{}>{}]", "=".repeat(20), " ".repeat(19))
        );
        assert_eq!(bar(10, 10), format!("[{}]", "=".repeat(40)));
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_234_567), "1.23MB");
        let row = Row {
            id: "abc".into(),
            state: "Downloading".into(),
            done: 500,
            total: 1000,
            counted: true,
        };
        assert!(render_row(&row).starts_with("abc: Downloading [===="));
        assert!(render_row(&row).ends_with("500B/1.00kB"));
    }
}
