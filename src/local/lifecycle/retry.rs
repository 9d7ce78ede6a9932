//! `jobExecutionsRetryConfig` (reference §3.8): which failed or timed-out executions get
//! another attempt. Pure: the service passes the attempts of the current run.

use serde_json::Value;

use super::{field_i64, LifecycleError};
use crate::jobs::wire::JobExecutionStatus as S;

/// At most this many retries per thing and job, across all failure types.
pub const MAX_RETRIES: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    Failed,
    TimedOut,
    All,
}

impl RetryType {
    fn covers(self, s: S) -> bool {
        matches!(
            (self, s),
            (RetryType::Failed, S::Failed)
                | (RetryType::TimedOut, S::TimedOut)
                | (RetryType::All, S::Failed | S::TimedOut)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryCriterion {
    pub failure_type: RetryType,
    pub number_of_retries: i64,
}

pub fn parse(v: &Value) -> Result<Vec<RetryCriterion>, LifecycleError> {
    const AT: &str = "jobExecutionsRetryConfig.criteriaList[]";
    let list = v
        .get("criteriaList")
        .and_then(Value::as_array)
        .filter(|l| (1..=2).contains(&l.len()))
        .ok_or_else(|| {
            LifecycleError("jobExecutionsRetryConfig.criteriaList needs 1 or 2 entries".to_owned())
        })?;
    list.iter()
        .map(|c| {
            let failure_type = match c.get("failureType").and_then(Value::as_str) {
                Some("FAILED") => RetryType::Failed,
                Some("TIMED_OUT") => RetryType::TimedOut,
                Some("ALL") => RetryType::All,
                other => {
                    return Err(LifecycleError(format!(
                        "{AT}.failureType: {other:?} is not FAILED, TIMED_OUT or ALL"
                    )))
                }
            };
            let n = field_i64(c, "numberOfRetries", AT)?;
            if !(0..=MAX_RETRIES).contains(&n) {
                return Err(LifecycleError(format!(
                    "{AT}.numberOfRetries must be 0..10"
                )));
            }
            Ok(RetryCriterion {
                failure_type,
                number_of_retries: n,
            })
        })
        .collect()
}

/// Should the run whose attempts are `attempts` (oldest first; the last one just ended)
/// get another attempt? The entry for the exact failure type wins over `ALL`; retries
/// already spent on that entry's types count against it, and no run gets more than
/// [`MAX_RETRIES`] retries in all.
pub fn should_retry(criteria: &[RetryCriterion], attempts: &[S]) -> bool {
    let Some((&last, earlier)) = attempts.split_last() else {
        return false;
    };
    let exact = |t: RetryType| criteria.iter().find(|c| c.failure_type == t);
    let entry = match last {
        S::Failed => exact(RetryType::Failed),
        S::TimedOut => exact(RetryType::TimedOut),
        _ => return false,
    }
    .or_else(|| exact(RetryType::All));
    let Some(entry) = entry else { return false };
    let spent = earlier
        .iter()
        .filter(|s| entry.failure_type.covers(**s))
        .count() as i64;
    spent < entry.number_of_retries && (earlier.len() as i64) < MAX_RETRIES
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn criteria(v: serde_json::Value) -> Vec<RetryCriterion> {
        parse(&json!({ "criteriaList": v })).unwrap()
    }

    #[test]
    fn retries_per_type_up_to_the_count() {
        let c = criteria(json!([{"failureType": "TIMED_OUT", "numberOfRetries": 2}]));
        assert!(should_retry(&c, &[S::TimedOut]));
        assert!(should_retry(&c, &[S::TimedOut, S::TimedOut]));
        assert!(!should_retry(&c, &[S::TimedOut, S::TimedOut, S::TimedOut]));
        assert!(!should_retry(&c, &[S::Failed]), "FAILED is not covered");
        for s in [S::Rejected, S::Canceled, S::Removed, S::Succeeded] {
            assert!(!should_retry(&c, &[s]), "{s} is never retried");
        }
        assert!(!should_retry(&c, &[]));
    }

    #[test]
    fn all_covers_both_and_the_exact_entry_wins() {
        let c = criteria(json!([{"failureType": "ALL", "numberOfRetries": 2}]));
        assert!(should_retry(&c, &[S::Failed, S::TimedOut]));
        assert!(!should_retry(&c, &[S::Failed, S::TimedOut, S::Failed]));
        let c = criteria(json!([{"failureType": "ALL", "numberOfRetries": 5},
            {"failureType": "FAILED", "numberOfRetries": 1}]));
        assert!(should_retry(&c, &[S::Failed]));
        assert!(!should_retry(&c, &[S::Failed, S::Failed]));
        assert!(should_retry(&c, &[S::Failed, S::TimedOut]));
    }

    #[test]
    fn never_more_than_ten_retries() {
        let c = criteria(json!([{"failureType": "FAILED", "numberOfRetries": 10},
            {"failureType": "TIMED_OUT", "numberOfRetries": 10}]));
        let mut run = vec![S::Failed; 5];
        run.extend([S::TimedOut; 5]);
        run.push(S::Failed);
        assert!(!should_retry(&c, &run), "10 retries spent");
        assert!(should_retry(&c, &run[1..]));
    }

    #[test]
    fn bad_retry_configs_are_refused() {
        for bad in [
            json!({"criteriaList": []}),
            json!({"criteriaList": [{"failureType": "REJECTED", "numberOfRetries": 1}]}),
            json!({"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 11}]}),
            json!({"criteriaList": [{"failureType": "FAILED"}]}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
