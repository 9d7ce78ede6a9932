//! Request bookkeeping: client tokens, the per-slot request record and the retry backoff.
//!
//! Randomness (tokens, jitter) comes from a seeded generator whose state is part of the
//! engine's state, so tests are deterministic and a restored engine keeps its sequence.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Length of the random part of a client token. With the counter suffix a token stays far
/// below the 64 bytes AWS allows for client tokens.
const TOKEN_RANDOM_CHARS: usize = 10;

/// Seeded source of client tokens and jitter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entropy {
    state: u64,
    issued: u64,
}

impl Entropy {
    pub fn new(seed: u64) -> Self {
        Entropy {
            state: seed,
            issued: 0,
        }
    }

    fn with_rng<T>(&mut self, f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
        let mut rng = fastrand::Rng::with_seed(self.state);
        let value = f(&mut rng);
        self.state = rng.get_seed();
        value
    }

    /// A fresh client token: random letters plus a counter, so two tokens never collide
    /// within one engine's lifetime even if the random parts do.
    pub fn token(&mut self) -> String {
        self.issued += 1;
        let random: String = self.with_rng(|rng| {
            std::iter::repeat_with(|| rng.alphanumeric())
                .take(TOKEN_RANDOM_CHARS)
                .collect()
        });
        format!("{random}-{}", self.issued)
    }

    /// A jitter factor in [0, 1).
    pub fn jitter(&mut self) -> f64 {
        self.with_rng(|rng| rng.f64())
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half is random, so
/// retries spread out but never come back immediately.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based), given a jitter factor in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    /// Waiting to be published (offline, or just created).
    Unsent,
    /// Published with this client token; a reply timer runs.
    InFlight { token: String },
    /// Throttled or failed server-side; a backoff timer runs.
    BackingOff,
}

/// One outstanding request of a slot and what it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<T> {
    pub state: RequestState,
    /// Number of retryable rejections in a row (drives the backoff).
    pub attempt: u32,
    pub body: T,
}

impl<T> Request<T> {
    pub fn new(body: T) -> Self {
        Request {
            state: RequestState::Unsent,
            attempt: 0,
            body,
        }
    }

    pub fn token(&self) -> Option<&str> {
        match &self.state {
            RequestState::InFlight { token } => Some(token),
            _ => None,
        }
    }

    pub fn matches(&self, token: Option<&str>) -> bool {
        token.is_some() && self.token() == token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_short_and_deterministic() {
        let mut a = Entropy::new(7);
        let mut b = Entropy::new(7);
        let first = a.token();
        assert_eq!(first, b.token());
        let second = a.token();
        assert_ne!(first, second);
        assert!(first.len() <= 64 && second.len() <= 64);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn entropy_state_survives_serialisation() {
        let mut a = Entropy::new(99);
        a.token();
        let mut b: Entropy = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(a.token(), b.token());
        assert_eq!(a.jitter(), b.jitter());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(
            backoff.delay(1, 0.999_999),
            Duration::from_micros(1_999_999)
        );
        assert_eq!(backoff.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff.delay(3, 0.5), Duration::from_secs(6));
        assert_eq!(backoff.delay(10, 0.0), Duration::from_secs(30));
        assert_eq!(backoff.delay(u32::MAX, 1.0), Duration::from_secs(60));
    }
}
