//! One way to retry, for everything that does: a schedule of pauses (listed, or
//! doubling from a first pause to a cap), jitter from the operating system's random
//! source so that many instances do not retry in step, a floor set by the other side's
//! `Retry-After`, and what an HTTP status says about trying again.
//!
//! The schedule only says how long to wait; where the wait happens (a sleep, a
//! `next_attempt_at` column) is the caller's.

use std::time::{Duration, SystemTime};

/// How long to wait before each new attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    steps: Steps,
    /// Up to this fraction of a pause is added at random.
    jitter: f64,
    /// A `Retry-After` longer than this is not waited for: the attempt is given up.
    longest_wait: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Steps {
    /// These pauses, then no more attempts.
    Listed(Vec<Duration>),
    /// `first`, doubling up to `max`, for at most `attempts` retries (`None`: for ever).
    Doubling {
        first: Duration,
        max: Duration,
        attempts: Option<u32>,
    },
}

impl Schedule {
    /// The pauses given, one per retry, then no more.
    pub fn listed(pauses: impl IntoIterator<Item = Duration>) -> Schedule {
        Schedule {
            steps: Steps::Listed(pauses.into_iter().collect()),
            jitter: 0.0,
            longest_wait: Duration::from_secs(3600),
        }
    }

    /// `first`, then twice as long each time up to `max`; never gives up by itself.
    pub fn doubling(first: Duration, max: Duration) -> Schedule {
        Schedule {
            steps: Steps::Doubling {
                first,
                max: max.max(first),
                attempts: None,
            },
            jitter: 0.0,
            longest_wait: Duration::from_secs(3600),
        }
    }

    /// At most `retries` retries.
    pub fn at_most(mut self, retries: u32) -> Schedule {
        match &mut self.steps {
            Steps::Listed(pauses) => pauses.truncate(retries as usize),
            Steps::Doubling { attempts, .. } => *attempts = Some(retries),
        }
        self
    }

    /// Adds up to `fraction` of each pause at random (0.2: up to 20 % more).
    pub fn with_jitter(mut self, fraction: f64) -> Schedule {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The longest `Retry-After` honoured; a longer one gives the attempt up.
    pub fn waiting_at_most(mut self, longest: Duration) -> Schedule {
        self.longest_wait = longest;
        self
    }

    /// The pause before retry number `retry` (1: after the first failure), without
    /// jitter; `None`: no more attempts.
    pub fn pause(&self, retry: u32) -> Option<Duration> {
        let retry = retry.max(1);
        match &self.steps {
            Steps::Listed(pauses) => pauses.get(retry as usize - 1).copied(),
            Steps::Doubling {
                first,
                max,
                attempts,
            } => {
                if attempts.is_some_and(|a| retry > a) {
                    return None;
                }
                let factor = 1u32 << (retry - 1).min(20);
                Some(first.saturating_mul(factor).min(*max))
            }
        }
    }

    /// The wait before retry number `retry`: the pause with its jitter, and no shorter
    /// than the other side's `retry_after`. `None`: give up (the schedule is spent, or
    /// the other side asks for longer than `waiting_at_most`).
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let pause = jitter(self.pause(retry)?, self.jitter);
        match retry_after {
            Some(asked) if asked > self.longest_wait => None,
            Some(asked) => Some(pause.max(asked)),
            None => Some(pause),
        }
    }
}

/// `base` plus up to `fraction` of it, from the operating system's random source (no
/// jitter if it has none to give).
pub fn jitter(base: Duration, fraction: f64) -> Duration {
    use ring::rand::SecureRandom;
    if fraction <= 0.0 {
        return base;
    }
    let mut bytes = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return base;
    }
    let unit = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    base + base.mul_f64(unit * fraction)
}

/// An HTTP `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as a
/// wait from `now` (a date in the past: no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What an HTTP answer says about the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVerdict {
    /// 2xx: done.
    Delivered,
    /// 410 Gone: the endpoint is gone for good.
    Gone,
    /// Worth another attempt: 408, 425, 429 and 5xx (the other side's trouble or load).
    Retry,
    /// Any other 4xx (and 1xx/3xx): the request itself is refused; sending it again
    /// would be refused again.
    Refused,
}

pub fn http_verdict(status: u16) -> HttpVerdict {
    match status {
        200..=299 => HttpVerdict::Delivered,
        410 => HttpVerdict::Gone,
        408 | 425 | 429 | 500..=599 => HttpVerdict::Retry,
        _ => HttpVerdict::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn listed_and_doubling_schedules_give_their_pauses_then_stop() {
        let listed = Schedule::listed([MS(100), MS(400), MS(1000)]);
        assert_eq!(
            (1..=4).map(|r| listed.pause(r)).collect::<Vec<_>>(),
            vec![Some(MS(100)), Some(MS(400)), Some(MS(1000)), None]
        );
        assert_eq!(listed.clone().at_most(1).pause(2), None);
        let doubling = Schedule::doubling(MS(100), MS(500));
        assert_eq!(
            (1..=5).map(|r| doubling.pause(r)).collect::<Vec<_>>(),
            vec![
                Some(MS(100)),
                Some(MS(200)),
                Some(MS(400)),
                Some(MS(500)),
                Some(MS(500))
            ]
        );
        assert_eq!(doubling.pause(10_000), Some(MS(500)), "no overflow");
        assert_eq!(doubling.clone().at_most(2).pause(3), None);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_retry_after_is_a_floor() {
        let s = Schedule::listed([MS(1000)]).with_jitter(0.2);
        for _ in 0..200 {
            let w = s.wait(1, None).unwrap();
            assert!(w >= MS(1000) && w <= MS(1200), "{w:?}");
        }
        assert!(s.wait(1, Some(Duration::from_secs(30))).unwrap() >= Duration::from_secs(30));
        assert_eq!(s.wait(2, None), None);
        let patient = Schedule::listed([MS(10)]).waiting_at_most(Duration::from_secs(60));
        assert_eq!(patient.wait(1, Some(Duration::from_secs(61))), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn http_statuses_say_whether_to_try_again() {
        use HttpVerdict::*;
        for (status, verdict) in [
            (200, Delivered),
            (204, Delivered),
            (410, Gone),
            (408, Retry),
            (429, Retry),
            (500, Retry),
            (503, Retry),
            (400, Refused),
            (401, Refused),
            (404, Refused),
            (422, Refused),
            (301, Refused),
        ] {
            assert_eq!(http_verdict(status), verdict, "{status}");
        }
    }
}
