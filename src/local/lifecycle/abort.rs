//! `abortConfig` (reference §4.2): when the share of failed executions crosses a threshold
//! after enough things ran, the job is cancelled (like CancelJob without force).

use serde_json::Value;

use super::{field_i64, LifecycleError};
use crate::local::store::StatusCounts;

/// `reasonCode` the service sets on a job cancelled by its abort criteria (the reference
/// says AWS fills one in; the exact string is not documented).
pub const ABORT_REASON_CODE: &str = "JOB_ABORTED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl AbortType {
    fn name(self) -> &'static str {
        match self {
            AbortType::Failed => "FAILED",
            AbortType::Rejected => "REJECTED",
            AbortType::TimedOut => "TIMED_OUT",
            AbortType::All => "ALL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbortCriterion {
    pub failure_type: AbortType,
    pub threshold_percentage: f64,
    pub min_executed_things: i64,
}

/// A criterion that fired, with the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    pub criterion: AbortCriterion,
    pub failures: i64,
    pub executed: i64,
}

impl Abort {
    /// The `comment` stored on the cancelled job.
    pub fn comment(&self) -> String {
        format!(
            "aborted: {} of {} executed things ended {} ({:.2}%), threshold {}% after {} things",
            self.failures,
            self.executed,
            self.criterion.failure_type.name(),
            self.failures as f64 * 100.0 / self.executed.max(1) as f64,
            self.criterion.threshold_percentage,
            self.criterion.min_executed_things
        )
    }
}

pub fn parse(v: &Value) -> Result<Vec<AbortCriterion>, LifecycleError> {
    const AT: &str = "abortConfig.criteriaList[]";
    let list = v
        .get("criteriaList")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            LifecycleError("abortConfig.criteriaList needs at least one entry".to_owned())
        })?;
    list.iter()
        .map(|c| {
            let failure_type = match c.get("failureType").and_then(Value::as_str) {
                Some("FAILED") => AbortType::Failed,
                Some("REJECTED") => AbortType::Rejected,
                Some("TIMED_OUT") => AbortType::TimedOut,
                Some("ALL") => AbortType::All,
                other => {
                    return Err(LifecycleError(format!(
                        "{AT}.failureType: {other:?} is not FAILED, REJECTED, TIMED_OUT or ALL"
                    )))
                }
            };
            if c.get("action").and_then(Value::as_str) != Some("CANCEL") {
                return Err(LifecycleError(format!("{AT}.action must be CANCEL")));
            }
            let threshold = c
                .get("thresholdPercentage")
                .and_then(Value::as_f64)
                .filter(|t| (0.0..=100.0).contains(t))
                .ok_or_else(|| {
                    LifecycleError(format!("{AT}.thresholdPercentage must be a number ≤ 100"))
                })?;
            let min = field_i64(c, "minNumberOfExecutedThings", AT)?;
            if min < 1 {
                return Err(LifecycleError(format!(
                    "{AT}.minNumberOfExecutedThings must be ≥ 1"
                )));
            }
            Ok(AbortCriterion {
                failure_type,
                threshold_percentage: threshold,
                min_executed_things: min,
            })
        })
        .collect()
}

/// The first criterion met by the job's counters (per thing, its latest finished attempt),
/// if any.
/// Executed things are those whose execution ran to SUCCEEDED, FAILED, REJECTED or
/// TIMED_OUT; cancelled and removed ones never ran.
pub fn evaluate(criteria: &[AbortCriterion], c: &StatusCounts) -> Option<Abort> {
    let executed = c.number_of_succeeded_things
        + c.number_of_failed_things
        + c.number_of_rejected_things
        + c.number_of_timed_out_things;
    criteria.iter().find_map(|cr| {
        let failures = match cr.failure_type {
            AbortType::Failed => c.number_of_failed_things,
            AbortType::Rejected => c.number_of_rejected_things,
            AbortType::TimedOut => c.number_of_timed_out_things,
            AbortType::All => {
                c.number_of_failed_things
                    + c.number_of_rejected_things
                    + c.number_of_timed_out_things
            }
        };
        let met = executed >= cr.min_executed_things
            && executed > 0
            && failures as f64 * 100.0 >= cr.threshold_percentage * executed as f64;
        met.then_some(Abort {
            criterion: *cr,
            failures,
            executed,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counts(succeeded: i64, failed: i64, rejected: i64, timed_out: i64) -> StatusCounts {
        StatusCounts {
            number_of_succeeded_things: succeeded,
            number_of_failed_things: failed,
            number_of_rejected_things: rejected,
            number_of_timed_out_things: timed_out,
            number_of_queued_things: 40,
            number_of_canceled_things: 5,
            ..Default::default()
        }
    }

    fn criteria(ty: &str, pct: f64, min: i64) -> Vec<AbortCriterion> {
        parse(
            &json!({"criteriaList": [{"failureType": ty, "action": "CANCEL",
            "thresholdPercentage": pct, "minNumberOfExecutedThings": min}]}),
        )
        .unwrap()
    }

    #[test]
    fn waits_for_the_minimum_then_compares_the_share() {
        let c = criteria("FAILED", 20.0, 10);
        assert_eq!(evaluate(&c, &counts(6, 3, 0, 0)), None, "9 executed < 10");
        let a = evaluate(&c, &counts(7, 3, 0, 0)).unwrap();
        assert_eq!((a.failures, a.executed), (3, 10));
        assert!(a.comment().contains("3 of 10"), "{}", a.comment());
        assert_eq!(
            evaluate(&c, &counts(9, 1, 5, 5)),
            None,
            "only FAILED counts"
        );
        assert!(
            evaluate(&c, &counts(8, 2, 0, 0)).is_some(),
            "exactly 20% aborts"
        );
    }

    #[test]
    fn failure_types() {
        assert!(evaluate(&criteria("REJECTED", 50.0, 2), &counts(1, 0, 1, 0)).is_some());
        assert!(evaluate(&criteria("TIMED_OUT", 50.0, 2), &counts(1, 1, 0, 0)).is_none());
        assert!(evaluate(&criteria("ALL", 75.0, 4), &counts(1, 1, 1, 1)).is_some());
        assert!(evaluate(&criteria("ALL", 76.0, 4), &counts(1, 1, 1, 1)).is_none());
    }

    #[test]
    fn bad_abort_configs_are_refused() {
        for bad in [
            json!({}),
            json!({"criteriaList": []}),
            json!({"criteriaList": [{"failureType": "FAILED", "action": "PAUSE",
                "thresholdPercentage": 5, "minNumberOfExecutedThings": 1}]}),
            json!({"criteriaList": [{"failureType": "BROKEN", "action": "CANCEL",
                "thresholdPercentage": 5, "minNumberOfExecutedThings": 1}]}),
            json!({"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                "thresholdPercentage": 101, "minNumberOfExecutedThings": 1}]}),
            json!({"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                "thresholdPercentage": 5, "minNumberOfExecutedThings": 0}]}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
