//! Progress of a long command on stderr: a bar when stderr is a terminal, else a
//! line every [`LINE_INTERVAL`] (so logs of long runs in CI or cron show it too).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a line is printed when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// `insert into "docs"`: starts each progress line.
    what: String,
    /// What is counted: `rows`, `queries`.
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress counted in rows.
    pub fn new(what: impl Into<String>, total: Option<u64>) -> Self {
        Self::counting(what, total, "rows")
    }

    /// Progress counted in `unit`s.
    pub fn counting(what: impl Into<String>, total: Option<u64>, unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                format!(
                    "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} \
                     ({{msg}}, eta {{eta}})"
                )
            } else {
                format!("{{spinner}} [{{elapsed_precise}}] {{human_pos}} {unit} ({{msg}})")
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            what: what.into(),
            unit,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    pub fn add(&mut self, rows: u64) {
        self.done += rows;
        if let Some(bar) = &self.bar {
            bar.inc(rows);
            bar.set_message(format!(
                "{} {}/s",
                rate(self.done, self.started.elapsed()),
                self.unit
            ));
        } else if self.last_line.elapsed() >= LINE_INTERVAL {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// `insert into "docs": 120000 of 1000000 rows (12%), 24000 rows/s`
    fn line(&self) -> String {
        let rate = rate(self.done, self.started.elapsed());
        let unit = self.unit;
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {} of {total} {unit} ({}%), {rate} {unit}/s",
                self.what,
                self.done,
                self.done * 100 / total
            ),
            _ => format!("{}: {} {unit}, {rate} {unit}/s", self.what, self.done),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Removes the bar (the summary goes to stdout after it).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Rows per second, whole.
pub fn rate(rows: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return rows;
    }
    (rows as f64 / secs).round() as u64
}
