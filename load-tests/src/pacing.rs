//! Open-loop pacing: the i-th request is due at `start + i / rate` whatever happened to
//! the ones before it, and its latency is counted from that due time, so a stalled server
//! cannot hide its stall by slowing the load down (coordinated omission).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` requests per second (must be positive).
    pub fn new(rate: f64) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Schedule { rate }
    }

    /// When the `i`-th request (from 0) is due, after the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests are due by `elapsed` (those with `due(i) <= elapsed`).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        // The epsilon absorbs the rounding of `due` to whole nanoseconds.
        (elapsed.as_secs_f64() * self.rate + 1e-6).floor() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_evenly_spaced_from_the_start() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(1));
        assert_eq!(s.due(2500), Duration::from_millis(2500));
        let s = Schedule::new(3.0);
        assert_eq!(s.due(3), Duration::from_secs(1));
    }

    #[test]
    fn due_by_counts_what_a_late_sender_must_catch_up_on() {
        let s = Schedule::new(100.0);
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_millis(9)), 1);
        assert_eq!(s.due_by(Duration::from_millis(10)), 2);
        // A sender that wakes 1 s late owes the whole second at once.
        assert_eq!(s.due_by(Duration::from_millis(1000)), 101);
        for i in 0..1000 {
            assert_eq!(s.due_by(s.due(i)), i + 1, "request {i}");
        }
    }

    #[test]
    #[should_panic(expected = "rate must be positive")]
    fn zero_rate_is_refused() {
        Schedule::new(0.0);
    }
}
