//! `jobExecutionsRolloutConfig` (reference §4.2): how many new executions a job may create
//! per minute. Pure arithmetic over counts the service supplies.

use serde_json::Value;

use super::{field_i64, LifecycleError};

/// Which count raises an exponential rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncreaseCriteria {
    NotifiedThings(i64),
    SucceededThings(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    pub base_rate_per_minute: i64,
    pub increment_factor: f64,
    pub criteria: IncreaseCriteria,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rollout {
    pub maximum_per_minute: Option<i64>,
    pub exponential: Option<Exponential>,
}

impl Rollout {
    pub fn parse(v: &Value) -> Result<Self, LifecycleError> {
        const AT: &str = "jobExecutionsRolloutConfig";
        let maximum_per_minute = match v.get("maximumPerMinute") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let m = field_i64(v, "maximumPerMinute", AT)?;
                if m < 1 {
                    return Err(LifecycleError(format!("{AT}.maximumPerMinute must be ≥ 1")));
                }
                Some(m)
            }
        };
        let exponential = match v.get("exponentialRate") {
            None | Some(Value::Null) => None,
            Some(e) => {
                const EX: &str = "jobExecutionsRolloutConfig.exponentialRate";
                let base = field_i64(e, "baseRatePerMinute", EX)?;
                if !(1..=1000).contains(&base) {
                    return Err(LifecycleError(format!(
                        "{EX}.baseRatePerMinute must be 1..1000"
                    )));
                }
                let factor = e
                    .get("incrementFactor")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| LifecycleError(format!("{EX}.incrementFactor is required")))?;
                if !(1.1..=5.0).contains(&factor) {
                    return Err(LifecycleError(format!(
                        "{EX}.incrementFactor must be 1.1..5"
                    )));
                }
                let c = e.get("rateIncreaseCriteria").ok_or_else(|| {
                    LifecycleError(format!("{EX}.rateIncreaseCriteria is required"))
                })?;
                const RC: &str = "jobExecutionsRolloutConfig.exponentialRate.rateIncreaseCriteria";
                let criteria = match (
                    c.get("numberOfNotifiedThings"),
                    c.get("numberOfSucceededThings"),
                ) {
                    (Some(_), None) => {
                        IncreaseCriteria::NotifiedThings(field_i64(c, "numberOfNotifiedThings", RC)?)
                    }
                    (None, Some(_)) => IncreaseCriteria::SucceededThings(field_i64(
                        c,
                        "numberOfSucceededThings",
                        RC,
                    )?),
                    _ => {
                        return Err(LifecycleError(format!(
                            "{RC}: set exactly one of numberOfNotifiedThings and numberOfSucceededThings"
                        )))
                    }
                };
                let threshold = match criteria {
                    IncreaseCriteria::NotifiedThings(n) | IncreaseCriteria::SucceededThings(n) => n,
                };
                if threshold < 1 {
                    return Err(LifecycleError(format!("{RC}: the threshold must be ≥ 1")));
                }
                Some(Exponential {
                    base_rate_per_minute: base,
                    increment_factor: factor,
                    criteria,
                })
            }
        };
        Ok(Rollout {
            maximum_per_minute,
            exponential,
        })
    }

    /// The rate (new executions per minute) once `notified` things got an execution and
    /// `succeeded` of them succeeded; `None` means unlimited. An exponential rate is
    /// multiplied by the factor each time the chosen count crosses another multiple of
    /// its threshold (50 → 100 → 200 at 1000, 2000 with factor 2), never above
    /// `maximumPerMinute`.
    pub fn rate(&self, notified: i64, succeeded: i64) -> Option<i64> {
        let exp = self.exponential.map(|e| {
            let (count, threshold) = match e.criteria {
                IncreaseCriteria::NotifiedThings(n) => (notified, n),
                IncreaseCriteria::SucceededThings(n) => (succeeded, n),
            };
            let steps = (count.max(0) / threshold.max(1)).min(64) as i32;
            let r = e.base_rate_per_minute as f64 * e.increment_factor.powi(steps);
            // Floating point: 50 × 1.1² is 60.500000000000014; round sub-ulp noise away.
            (r + 1e-9).floor().min(i64::MAX as f64) as i64
        });
        match (exp, self.maximum_per_minute) {
            (Some(e), Some(m)) => Some(e.min(m)),
            (e, m) => e.or(m),
        }
    }
}

/// How many executions may be created now, given the rate and how many were created in
/// the last 60 seconds; `None` means no limit.
pub fn allowance(rate: Option<i64>, created_last_minute: i64) -> Option<i64> {
    rate.map(|r| (r - created_last_minute).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maximum_per_minute_alone() {
        let r = Rollout::parse(&json!({"maximumPerMinute": 10})).unwrap();
        assert_eq!(r.rate(0, 0), Some(10));
        assert_eq!(r.rate(5000, 5000), Some(10));
        assert_eq!(allowance(r.rate(0, 0), 4), Some(6));
        assert_eq!(allowance(r.rate(0, 0), 12), Some(0));
        assert_eq!(allowance(Rollout::default().rate(0, 0), 1_000_000), None);
    }

    #[test]
    fn exponential_rate_follows_the_reference_example() {
        let r = Rollout::parse(&json!({"maximumPerMinute": 1000, "exponentialRate": {
            "baseRatePerMinute": 50, "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfNotifiedThings": 1000}}}))
        .unwrap();
        let rates: Vec<_> = [0, 999, 1000, 1999, 2000, 3000, 4000, 5000]
            .iter()
            .map(|n| r.rate(*n, 0).unwrap())
            .collect();
        assert_eq!(rates, [50, 50, 100, 100, 200, 400, 800, 1000]);
        let s = Rollout::parse(&json!({"exponentialRate": {
            "baseRatePerMinute": 50, "incrementFactor": 1.1,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 10}}}))
        .unwrap();
        assert_eq!(s.rate(1000, 9), Some(50));
        assert_eq!(s.rate(0, 10), Some(55));
        assert_eq!(s.rate(0, 20), Some(60));
    }

    #[test]
    fn bad_rollout_configs_are_refused() {
        for bad in [
            json!({"maximumPerMinute": 0}),
            json!({"maximumPerMinute": "ten"}),
            json!({"exponentialRate": {"baseRatePerMinute": 0, "incrementFactor": 2.0,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 1}}}),
            json!({"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 9.0,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 1}}}),
            json!({"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 2.0,
                "rateIncreaseCriteria": {}}}),
            json!({"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 2.0,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 1, "numberOfSucceededThings": 1}}}),
        ] {
            assert!(Rollout::parse(&bad).is_err(), "{bad}");
        }
    }
}
