//! Reconnect delays: exponential backoff with full jitter, reset once a connection
//! has been stable. Pure (the caller supplies the random draw and the durations) so
//! every rule is unit-tested without clocks.
//!
//! rumqttc reconnects on the very next `poll()`, so without this the connection task
//! would spin on a broker that refuses us.

use std::time::Duration;

/// Default first ceiling: the first retry comes within a second.
pub const DEFAULT_MIN: Duration = Duration::from_secs(1);
/// Default cap of the ceiling.
pub const DEFAULT_MAX: Duration = Duration::from_secs(120);
/// A connection that lasted this long was healthy: the next failure starts over.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(60);
/// Full jitter can draw ~0; never retry faster than this, so a broker that drops us
/// right after accepting cannot drive a tight loop.
pub const FLOOR: Duration = Duration::from_millis(100);

/// Exponential backoff with full jitter: attempt `n` waits a uniform random time in
/// `[0, min(max, min * 2^n)]` (never less than [`FLOOR`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    stable_after: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max` (raised to `min` if lower).
    pub fn new(min: Duration, max: Duration, stable_after: Duration) -> Self {
        let min = min.max(FLOOR);
        Backoff {
            min,
            max: max.max(min),
            stable_after,
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        // 2^attempt overflows quickly; past 2^20 the cap has long been reached.
        let factor = 1u32 << self.attempt.min(20);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay. `jitter` is a uniform draw in `[0, 1)`; values outside are clamped.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = self.ceiling().mul_f64(jitter).max(FLOOR);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Reports that a connection ended after `lasted`: a stable one resets the backoff.
    pub fn connection_ended(&mut self, lasted: Duration) {
        if lasted >= self.stable_after {
            self.attempt = 0;
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(DEFAULT_MIN, DEFAULT_MAX, DEFAULT_STABLE_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ceiling_doubles_from_min_to_max() {
        let mut b = Backoff::default();
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let mut b = Backoff::new(secs(1), secs(120), secs(60));
        for _ in 0..3 {
            b.next_delay(0.0);
        }
        // ceiling is now 8 s
        assert_eq!(b.clone().next_delay(0.999_999).as_millis(), 7_999);
        assert_eq!(b.clone().next_delay(0.5), secs(4));
        assert_eq!(b.clone().next_delay(0.0), FLOOR);
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let b = Backoff::default();
        assert_eq!(b.clone().next_delay(7.0), secs(1));
        assert_eq!(b.clone().next_delay(-1.0), FLOOR);
        assert_eq!(b.clone().next_delay(f64::NAN), FLOOR);
    }

    #[test]
    fn stable_connection_resets_short_one_does_not() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        b.connection_ended(secs(59));
        assert_eq!(b.ceiling(), secs(32));
        b.connection_ended(secs(60));
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), secs(1));
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::new(secs(1), secs(u64::MAX / 4), secs(60));
        for _ in 0..200 {
            b.next_delay(1.0);
        }
        assert!(b.ceiling() >= secs(1 << 20));
    }

    #[test]
    fn max_below_min_is_raised() {
        let mut b = Backoff::new(secs(10), secs(2), secs(60));
        assert_eq!(b.ceiling(), secs(10));
        b.next_delay(0.0);
        assert_eq!(b.ceiling(), secs(10));
    }
}
