//! The progress bar on stderr: `\r[#####.....] 37/200`, redrawn at most ten times a second,
//! and only when enabled (the CLI enables it when stderr is a terminal).

use std::io::Write;
use std::time::{Duration, Instant};

const WIDTH: usize = 30;
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Draws `[###...] done/total`.
pub fn render(done: usize, total: usize) -> String {
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

/// A throttled bar.
pub struct ProgressBar {
    enabled: bool,
    total: usize,
    last_drawn: Option<Instant>,
}

impl ProgressBar {
    pub fn new(enabled: bool, total: usize) -> ProgressBar {
        ProgressBar {
            enabled,
            total,
            last_drawn: None,
        }
    }

    /// Redraws if enabled and the last redraw is 100 ms old (the final count always draws).
    pub fn update(&mut self, done: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self
            .last_drawn
            .is_none_or(|last| now.duration_since(last) >= MIN_INTERVAL);
        if due || done >= self.total {
            self.last_drawn = Some(now);
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{}", render(done, self.total));
            let _ = stderr.flush();
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_drawn.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_proportional_bar() {
        assert_eq!(render(0, 10), format!("[{}] 0/10", ".".repeat(30)));
        assert_eq!(
            render(5, 10),
            format!("[{}{}] 5/10", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(render(10, 10), format!("[{}] 10/10", "#".repeat(30)));
        assert_eq!(render(0, 0), format!("[{}] 0/0", "#".repeat(30)));
    }
}
