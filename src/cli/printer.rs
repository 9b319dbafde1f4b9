//! The one writer of progress, notices and warnings: stderr, silent with `--quiet`, with bars
//! and spinners only on a terminal (one line per event otherwise). Results never go through
//! here: commands write them to stdout. Modelled on uv's `Printer`.

// Builds without `train` draw no bars (no `run` or `audit`), and without `anchor` no spinners.
#![cfg_attr(not(feature = "train"), allow(dead_code))]

use std::cell::RefCell;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a command's progress goes.
pub(super) struct Printer {
    quiet: bool,
    tty: bool,
    bar: Option<ProgressBar>,
    /// The last status printed as a line, so that a poll that finds nothing new prints nothing.
    last_status: RefCell<Option<String>>,
}

impl Printer {
    /// A printer for a command run with (`quiet`) or without `--quiet`.
    pub(super) fn new(quiet: bool) -> Printer {
        use std::io::IsTerminal;
        Printer {
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: None,
            last_status: RefCell::new(None),
        }
    }

    /// One line of progress or a notice (above the bar, when one is drawn).
    pub(super) fn line(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Show `msg` as the bar's or spinner's message on a terminal, else as a line when it differs
    /// from the last status line (one line per change of state, not one per poll).
    pub(super) fn status(&self, msg: String) {
        match &self.bar {
            Some(b) => b.set_message(msg),
            None if self.is_new_status(&msg) => self.line(&msg),
            None => {}
        }
    }

    /// Whether `msg` differs from the last status line; remembers it.
    fn is_new_status(&self, msg: &str) -> bool {
        let mut last = self.last_status.borrow_mut();
        if last.as_deref() == Some(msg) {
            return false;
        }
        *last = Some(msg.to_string());
        true
    }

    /// Start a bar of `len` steps with an indicatif `template` (only on a terminal).
    pub(super) fn start_bar(&mut self, len: u64, template: &str, prefix: String) {
        self.finish();
        if self.quiet || !self.tty {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    /// Start a spinner (only on a terminal).
    pub(super) fn start_spinner(&mut self) {
        self.finish();
        if self.quiet || !self.tty {
            return;
        }
        let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        s.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(s);
    }

    /// Advance the bar by one step.
    pub(super) fn tick(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Whether a bar or spinner is drawn (so per-step lines are not needed).
    pub(super) fn drawing(&self) -> bool {
        self.bar.is_some()
    }

    /// Clear the bar or spinner.
    pub(super) fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Printer;

    #[test]
    fn a_status_repeated_by_polling_is_printed_once() {
        let p = Printer::new(true);
        assert!(p.is_new_status("0/6 confirmations"));
        assert!(!p.is_new_status("0/6 confirmations"));
        assert!(!p.is_new_status("0/6 confirmations"));
        assert!(p.is_new_status("1/6 confirmations"));
        assert!(p.is_new_status("0/6 confirmations"));
    }
}
