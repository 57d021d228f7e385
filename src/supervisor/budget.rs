//! The restart budget of one volume, as pure logic: how long to wait before
//! the next start, and when crashes come too fast to go on. A crash is a
//! process that had mounted and then died (or whose mount stopped
//! answering); a start that fails before mounting is not a crash, it only
//! lengthens the backoff, so a volume whose remote is down keeps retrying.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The sliding window of `--volume-process-recovery-max-per-min`.
pub const WINDOW: Duration = Duration::from_secs(60);
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start again at this time.
    RetryAt(Instant),
    /// Too many crashes within the window: stop until the next start,
    /// which begins with a [`Budget::reset`].
    GiveUp { crashes: usize },
}

#[derive(Debug)]
pub struct Budget {
    max_per_window: usize,
    /// Times of the crashes within the last window, oldest first.
    crashes: VecDeque<Instant>,
    /// Starts that failed since the process last mounted.
    failures: u32,
}

impl Budget {
    pub fn new(max_per_window: u32) -> Self {
        Self {
            max_per_window: max_per_window.max(1) as usize,
            crashes: VecDeque::new(),
            failures: 0,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.crashes.pop_front();
        }
    }

    /// Doubles with every crash in the window and every failed start in a
    /// row, from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
    fn delay(&self) -> Duration {
        let steps = (self.crashes.len() as u32).saturating_sub(1) + self.failures;
        FIRST_BACKOFF
            .saturating_mul(1 << steps.min(16))
            .min(MAX_BACKOFF)
    }

    /// A process that had mounted died at `now`.
    pub fn crash(&mut self, now: Instant) -> Verdict {
        self.prune(now);
        self.crashes.push_back(now);
        self.failures = 0;
        if self.crashes.len() > self.max_per_window {
            Verdict::GiveUp {
                crashes: self.crashes.len(),
            }
        } else {
            Verdict::RetryAt(now + self.delay())
        }
    }

    /// The crash just counted is the only one in the window.
    pub fn first_crash(&self) -> bool {
        self.crashes.len() == 1
    }

    /// A start failed before mounting at `now`: when to try again.
    pub fn failed_start(&mut self, now: Instant) -> Instant {
        self.prune(now);
        self.failures = self.failures.saturating_add(1);
        now + self.delay()
    }

    /// The process is mounted again.
    pub fn mounted(&mut self) {
        self.failures = 0;
    }

    /// Forget everything: a stop, or a fresh start after giving up.
    pub fn reset(&mut self) {
        self.crashes.clear();
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn gives_up_on_the_crash_past_the_limit() {
        let t0 = Instant::now();
        let mut b = Budget::new(2);
        assert_eq!(b.crash(t0), Verdict::RetryAt(t0 + FIRST_BACKOFF));
        assert_eq!(
            b.crash(t0 + 1000 * MS),
            Verdict::RetryAt(t0 + 1000 * MS + 2 * FIRST_BACKOFF)
        );
        assert_eq!(b.crash(t0 + 2000 * MS), Verdict::GiveUp { crashes: 3 });
    }

    #[test]
    fn crashes_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut b = Budget::new(1);
        assert!(matches!(b.crash(t0), Verdict::RetryAt(_)));
        assert!(matches!(b.crash(t0 + WINDOW), Verdict::RetryAt(_)));
        assert!(matches!(
            b.crash(t0 + WINDOW + MS),
            Verdict::GiveUp { crashes: 2, .. }
        ));
    }

    #[test]
    fn failed_starts_back_off_up_to_the_cap_and_never_give_up() {
        let t0 = Instant::now();
        let mut b = Budget::new(1);
        let delays: Vec<Duration> = (0..12)
            .map(|_| b.failed_start(t0).duration_since(t0))
            .collect();
        assert_eq!(delays[0], 2 * FIRST_BACKOFF);
        assert_eq!(delays[1], 4 * FIRST_BACKOFF);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF);
        b.mounted();
        assert_eq!(b.failed_start(t0), t0 + 2 * FIRST_BACKOFF);
    }

    #[test]
    fn reset_forgets_crashes() {
        let t0 = Instant::now();
        let mut b = Budget::new(1);
        b.crash(t0);
        b.reset();
        assert_eq!(b.crash(t0 + MS), Verdict::RetryAt(t0 + MS + FIRST_BACKOFF));
    }
}
