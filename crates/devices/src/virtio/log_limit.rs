//! Rate-limited warnings for events a guest can trigger in a loop: the
//! first is logged, later ones at most once per interval with a count of
//! those suppressed meanwhile, and a final count when the limiter goes
//! (so a flood that stops is still summed up).

use std::time::{Duration, Instant};

/// One line per second at most, as the kernel's printk_ratelimit.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct LogLimit {
    what: &'static str,
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `what` names the device in the summary line.
    pub(crate) fn new(what: &'static str) -> Self {
        LogLimit {
            what,
            interval: INTERVAL,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether an occurrence at `now` is to be logged; if so, with how
    /// many were suppressed since the last logged one.
    pub(crate) fn check(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            if now.saturating_duration_since(last) < self.interval {
                self.suppressed += 1;
                return None;
            }
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Logs `msg` at warning level, if the rate allows.
    pub(crate) fn warn(&mut self, msg: std::fmt::Arguments) {
        match self.check(Instant::now()) {
            Some(0) => log::warn!("{msg}"),
            Some(n) => log::warn!("{msg} ({n} similar warnings suppressed)"),
            None => {}
        }
    }
}

impl Drop for LogLimit {
    fn drop(&mut self) {
        if self.suppressed > 0 {
            log::warn!(
                "{}: {} similar warnings suppressed",
                self.what,
                self.suppressed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_logged_then_one_per_interval_with_a_count() {
        let mut l = LogLimit::new("t");
        let t0 = Instant::now();
        assert_eq!(l.check(t0), Some(0));
        for i in 1..1000u64 {
            assert_eq!(l.check(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(l.check(t0 + INTERVAL), Some(999));
        assert_eq!(l.check(t0 + INTERVAL + Duration::from_millis(1)), None);
        assert_eq!(l.check(t0 + 3 * INTERVAL), Some(1));
        // A clock that steps back does not underflow.
        assert_eq!(l.check(t0), None);
    }
}
