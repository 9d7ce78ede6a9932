//! Injectable clock for the local service. Owns the notion of "now" (epoch milliseconds)
//! so that timestamps, deadlines and (later) schedules can be driven by tests or an admin
//! endpoint instead of real time. Must not sleep or schedule anything itself.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch.
///
/// The device API speaks integer seconds; milliseconds are kept internally so that a
/// manual clock can be advanced by less than a second without reordering events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down), the unit of every MQTT timestamp.
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Seconds as a float, the form the control plane may return (`1486687079.743`).
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn plus_minutes(self, minutes: i64) -> Self {
        Timestamp(self.0.saturating_add(minutes.saturating_mul(60_000)))
    }

    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

/// Source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            // A clock set before 1970 is a broken host; 0 keeps ordering sane.
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to. Clones share the same time, so a test (or an
/// admin endpoint) can hold one clone and the service another.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(start.millis())),
        }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.store(t.millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let prev = self.now.fetch_add(ms, Ordering::SeqCst);
        Timestamp(prev.saturating_add(ms))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let b = a.clone();
        a.advance(Duration::from_millis(1500));
        assert_eq!(b.now().millis(), 1_700_000_001_500);
        assert_eq!(b.now().secs(), 1_700_000_001);
        b.set(Timestamp::from_secs(5));
        assert_eq!(a.now(), Timestamp::from_secs(5));
    }

    #[test]
    fn secs_round_down_even_before_epoch() {
        assert_eq!(Timestamp::from_millis(-1).secs(), -1);
        assert_eq!(Timestamp::from_millis(1999).secs(), 1);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now().secs() > 1_577_836_800);
    }
}
