//! The job lifecycle configurations of iotjobs-local, interpreted: scheduling and
//! maintenance windows, rollout rates, abort criteria and retries (reference §3.7–§3.8,
//! §4.2, §5). The store keeps each configuration as the JSON received; [`Lifecycle`] is its
//! checked, typed reading.
//!
//! Pure decisions only (given `now` and counts): no store, no clock, no I/O. The service's
//! `tick` and its change paths (`local::service::lifecycle`) apply them.

pub mod abort;
pub mod retry;
pub mod rollout;
pub mod schedule;

use serde_json::Value;

use crate::local::clock::Timestamp;
use crate::local::store::JobConfigs;

pub use abort::{AbortCriterion, AbortType};
pub use retry::{RetryCriterion, RetryType};
pub use rollout::Rollout;
pub use schedule::{EndBehavior, Phase, Schedule, Window};

/// A configuration that cannot be used, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LifecycleError(pub String);

/// AWS refuses a `startTime` (and `endTime`) less than this far ahead.
pub const AWS_MIN_LEAD_MINUTES: i64 = 30;

/// An integer member `key` of `v` (`at` names the object in errors).
pub(crate) fn field_i64(v: &Value, key: &str, at: &str) -> Result<i64, LifecycleError> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| LifecycleError(format!("{at}.{key} must be an integer")))
}

/// Every lifecycle configuration of one job.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub schedule: Option<Schedule>,
    pub rollout: Rollout,
    pub abort: Vec<AbortCriterion>,
    pub retry: Vec<RetryCriterion>,
}

impl Lifecycle {
    pub fn parse(c: &JobConfigs) -> Result<Self, LifecycleError> {
        let present = |v: &Option<Value>| v.as_ref().filter(|v| !v.is_null()).cloned();
        let mut scheduling = present(&c.scheduling_config);
        // A job made from a custom template carries the template's top-level
        // `maintenanceWindows`; they apply unless the job's own schedule has windows.
        if let Some(windows) = present(&c.maintenance_windows) {
            let s = scheduling.get_or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = s {
                m.entry("maintenanceWindows").or_insert(windows);
            }
        }
        Ok(Lifecycle {
            schedule: scheduling.map(|v| Schedule::parse(&v)).transpose()?,
            rollout: present(&c.job_executions_rollout_config)
                .map(|v| Rollout::parse(&v))
                .transpose()?
                .unwrap_or_default(),
            abort: present(&c.abort_config)
                .map(|v| abort::parse(&v))
                .transpose()?
                .unwrap_or_default(),
            retry: present(&c.job_executions_retry_config)
                .map(|v| retry::parse(&v))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// The configurations of a stored job. They were checked at creation; one that no
    /// longer parses (a hand-edited row, an older build's looser rules) is logged and
    /// ignored rather than stopping the scheduler.
    pub fn of_stored(job_id: &str, c: &JobConfigs) -> Self {
        Lifecycle::parse(c).unwrap_or_else(|e| {
            tracing::warn!(job_id, error = %e, "ignoring an unusable job configuration");
            Lifecycle::default()
        })
    }

    pub fn phase(&self, now: Timestamp) -> Phase {
        self.schedule.as_ref().map_or(Phase::Open, |s| s.phase(now))
    }

    /// Checks a new job's schedule against the local minimum lead time; returns the
    /// warnings for what AWS would refuse but this service accepts.
    pub fn check_new_schedule(
        &self,
        now: Timestamp,
        min_lead_minutes: i64,
    ) -> Result<Vec<String>, LifecycleError> {
        let Some(s) = &self.schedule else {
            return Ok(Vec::new());
        };
        // Schedule times have minute resolution: compare against the current minute.
        let minute = Timestamp::from_millis(now.millis() - now.millis().rem_euclid(60_000));
        let mut warnings = Vec::new();
        for (name, t) in [("startTime", s.start), ("endTime", s.end)] {
            let Some(t) = t else { continue };
            if t < minute.plus_minutes(min_lead_minutes) {
                return Err(LifecycleError(format!(
                    "schedulingConfig.{name} {} must be at least {min_lead_minutes} minutes ahead",
                    schedule::format_time(t)
                )));
            }
            if t < minute.plus_minutes(AWS_MIN_LEAD_MINUTES) {
                warnings.push(format!(
                    "schedulingConfig.{name} {} is less than {AWS_MIN_LEAD_MINUTES} minutes ahead: \
                     AWS IoT would refuse this job",
                    schedule::format_time(t)
                ));
            }
        }
        if let (Some(a), Some(b)) = (s.start, s.end) {
            if b < a.plus_minutes(AWS_MIN_LEAD_MINUTES) {
                warnings.push(format!(
                    "schedulingConfig: less than {AWS_MIN_LEAD_MINUTES} minutes between startTime and endTime: \
                     AWS IoT would refuse this job"
                ));
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configs(v: Value) -> JobConfigs {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parses_every_config_and_names_the_bad_field() {
        let l = Lifecycle::parse(&configs(json!({
            "schedulingConfig": {"startTime": "2030-01-01T10:00"},
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 10},
            "abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "CANCEL",
                "thresholdPercentage": 10, "minNumberOfExecutedThings": 2}]},
            "jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 1}]}
        })))
        .unwrap();
        assert!(l.schedule.is_some());
        assert_eq!(l.rollout.maximum_per_minute, Some(10));
        assert_eq!((l.abort.len(), l.retry.len()), (1, 1));
        let e = Lifecycle::parse(&configs(json!({
            "jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 99}]}
        })))
        .unwrap_err();
        assert!(e.0.contains("numberOfRetries"), "{e}");
        let from_template = Lifecycle::parse(&configs(json!({"maintenanceWindows": [
            {"startTime": "cron(0 1 ? * SUN *)", "durationInMinutes": 60}]})))
        .unwrap();
        assert_eq!(from_template.schedule.unwrap().windows.len(), 1);
        let none = Lifecycle::parse(&JobConfigs::default()).unwrap();
        assert_eq!(none.phase(Timestamp::from_secs(0)), Phase::Open);
        assert_eq!(none.rollout.rate(0, 0), None);
    }

    #[test]
    fn lead_time_is_enforced_locally_and_aws_refusals_are_warned() {
        let now = schedule::parse_time("t", "2030-01-01T10:00:30").unwrap();
        let l = |start: &str, end: Option<&str>| {
            Lifecycle::parse(&configs(
                json!({"schedulingConfig": {"startTime": start, "endTime": end}}),
            ))
            .unwrap()
        };
        assert!(
            l("2030-01-01T10:00", None)
                .check_new_schedule(now, 0)
                .unwrap()
                .len()
                == 1
        );
        assert!(l("2030-01-01T09:59", None)
            .check_new_schedule(now, 0)
            .is_err());
        assert!(l("2030-01-01T10:20", None)
            .check_new_schedule(now, 30)
            .is_err());
        assert!(l("2030-01-01T10:30", Some("2030-01-01T11:00"))
            .check_new_schedule(now, 30)
            .unwrap()
            .is_empty());
        let w = l("2030-01-01T10:20", Some("2030-01-01T10:40"))
            .check_new_schedule(now, 0)
            .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
