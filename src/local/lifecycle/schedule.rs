//! `schedulingConfig` (reference §5.2): start and end times, the end behaviour and the
//! maintenance windows (AWS cron start + duration). Pure: every question takes `now`.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde_json::Value;

use super::{field_i64, LifecycleError};
use crate::local::clock::Timestamp;

/// What happens to a job at its `endTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndBehavior {
    /// Stop creating executions; queued and running ones carry on.
    StopRollout,
    /// Like CancelJob without force.
    Cancel,
    /// Like CancelJob with force.
    ForceCancel,
}

impl FromStr for EndBehavior {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "STOP_ROLLOUT" => Ok(EndBehavior::StopRollout),
            "CANCEL" => Ok(EndBehavior::Cancel),
            "FORCE_CANCEL" => Ok(EndBehavior::ForceCancel),
            other => Err(LifecycleError(format!(
                "schedulingConfig.endBehavior: {other:?} is not STOP_ROLLOUT, CANCEL or FORCE_CANCEL"
            ))),
        }
    }
}

/// A recurring maintenance window: starts whenever the cron expression matches (UTC,
/// minute resolution) and lasts `duration_minutes`.
#[derive(Debug, Clone)]
pub struct Window {
    /// The expression as given (`cron(0 1 ? * SUN *)`).
    pub expression: String,
    cron: Cron,
    pub duration_minutes: i64,
}

/// Longest maintenance window AWS accepts.
pub const MAX_WINDOW_MINUTES: i64 = 1430;

impl Window {
    pub fn new(expression: &str, duration_minutes: i64) -> Result<Self, LifecycleError> {
        if !(1..=MAX_WINDOW_MINUTES).contains(&duration_minutes) {
            return Err(LifecycleError(format!(
                "maintenanceWindows.durationInMinutes must be 1..{MAX_WINDOW_MINUTES}"
            )));
        }
        Ok(Window {
            expression: expression.to_owned(),
            cron: parse_aws_cron(expression)?,
            duration_minutes,
        })
    }

    /// The window open at `now`, as `(start, end)`: a start `s` with `s <= now < s + d`
    /// exists exactly when the first start at or after `now - d` (exclusive of the end)
    /// is not after `now`.
    pub fn open_at(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let d = self.duration_minutes * 60_000;
        // Starts fall on whole seconds: search from the first second after `now - d`, so a
        // window that ends exactly at `now` is closed.
        let from = Timestamp::from_secs((now.millis() - d).div_euclid(1000) + 1);
        let s = self.next_start_from(from)?;
        (s <= now).then(|| (s, Timestamp::from_millis(s.millis() + d)))
    }

    /// The first window start at or after `t`.
    pub fn next_start_from(&self, t: Timestamp) -> Option<Timestamp> {
        let dt = to_datetime(t)?;
        let next = self.cron.find_next_occurrence(&dt, true).ok()?;
        Some(Timestamp::from_millis(next.timestamp_millis()))
    }
}

/// Parses AWS's cron syntax: `cron(min hour day-of-month month day-of-week year)` (or the
/// six fields bare), Quartz-style weekdays (1 = SUN … 7 = SAT, or names), `?`, `L`, `W`, `#`.
pub fn parse_aws_cron(expr: &str) -> Result<Cron, LifecycleError> {
    let inner = expr.trim();
    let inner = inner
        .strip_prefix("cron(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(inner)
        .trim();
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(LifecycleError(format!(
            "maintenance window {expr:?}: an AWS cron expression has 6 fields \
             (minutes hours day-of-month month day-of-week year), e.g. cron(0 1 ? * SUN *)"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        // AWS accepts `0/15` (Quartz), which strict vixie syntax does not.
        .sloppy_ranges(true)
        .build();
    parser
        .parse(&format!("0 {}", fields.join(" ")))
        .map_err(|e| LifecycleError(format!("maintenance window {expr:?}: {e}")))
}

fn to_datetime(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.millis())
}

/// Parses a schedule time: `YYYY-MM-DDTHH:MM` (AWS's form), optionally with seconds and a
/// trailing `Z`; always UTC.
pub fn parse_time(field: &str, s: &str) -> Result<Timestamp, LifecycleError> {
    let t = s.trim().trim_end_matches('Z');
    let parsed = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"));
    match parsed {
        Ok(dt) => Ok(Timestamp::from_millis(dt.and_utc().timestamp_millis())),
        Err(_) => Err(LifecycleError(format!(
            "schedulingConfig.{field}: {s:?} is not a UTC time like 2030-01-01T10:00"
        ))),
    }
}

/// Formats a time the way AWS writes schedule times (`2030-01-01T10:00`).
pub fn format_time(t: Timestamp) -> String {
    to_datetime(t).map_or_else(
        || t.secs().to_string(),
        |d| d.format("%Y-%m-%dT%H:%M").to_string(),
    )
}

/// Where a job stands relative to its schedule at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `startTime`: the job is SCHEDULED.
    BeforeStart,
    /// Inside the schedule and (if any are set) inside a maintenance window: roll out.
    Open,
    /// Inside the schedule but between maintenance windows: wait.
    BetweenWindows,
    /// At or after `endTime`.
    Ended,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub end_behavior: EndBehavior,
    pub windows: Vec<Window>,
}

impl Schedule {
    pub fn parse(v: &Value) -> Result<Self, LifecycleError> {
        let time = |k: &str| -> Result<Option<Timestamp>, LifecycleError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => parse_time(k, s).map(Some),
                Some(_) => Err(LifecycleError(format!(
                    "schedulingConfig.{k} must be a string"
                ))),
            }
        };
        let start = time("startTime")?;
        let end = time("endTime")?;
        let end_behavior = match v.get("endBehavior").and_then(Value::as_str) {
            Some(s) => s.parse()?,
            // The reference's recommended default when only endTime is set.
            None => EndBehavior::StopRollout,
        };
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(LifecycleError(
                    "schedulingConfig.endTime must be after startTime".to_owned(),
                ));
            }
        }
        let windows = match v.get("maintenanceWindows") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|w| {
                    let expr = w.get("startTime").and_then(Value::as_str).ok_or_else(|| {
                        LifecycleError(
                            "maintenanceWindows[].startTime (a cron expression) is required"
                                .to_owned(),
                        )
                    })?;
                    let d = field_i64(w, "durationInMinutes", "maintenanceWindows[]")?;
                    Window::new(expr, d)
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(LifecycleError(
                    "schedulingConfig.maintenanceWindows must be a list".to_owned(),
                ))
            }
        };
        Ok(Schedule {
            start,
            end,
            end_behavior,
            windows,
        })
    }

    pub fn phase(&self, now: Timestamp) -> Phase {
        if self.start.is_some_and(|s| now < s) {
            Phase::BeforeStart
        } else if self.end.is_some_and(|e| now >= e) {
            Phase::Ended
        } else if self.windows.is_empty() || self.current_window(now).is_some() {
            Phase::Open
        } else {
            Phase::BetweenWindows
        }
    }

    /// The maintenance window open at `now` (the earliest-ending when several overlap).
    pub fn current_window(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        self.windows
            .iter()
            .filter_map(|w| w.open_at(now))
            .min_by_key(|(_, end)| *end)
    }

    /// The next `n` window starts after `now` (`scheduledJobRollouts`), before the end time.
    pub fn next_window_starts(&self, now: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out: Vec<Timestamp> = Vec::new();
        for w in &self.windows {
            let mut t = Timestamp::from_millis(now.millis() + 1).max(self.start.unwrap_or(now));
            for _ in 0..n {
                let Some(s) = w.next_start_from(t) else { break };
                if self.end.is_some_and(|e| s >= e) {
                    break;
                }
                out.push(s);
                t = Timestamp::from_millis(s.millis() + 60_000);
            }
        }
        out.sort();
        out.dedup();
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        parse_time("t", s).unwrap()
    }

    #[test]
    fn times_parse_as_utc_minutes() {
        assert_eq!(t("1970-01-01T00:01").secs(), 60);
        assert_eq!(t("2030-01-01T10:00").secs(), 1_893_492_000);
        assert_eq!(t("2030-01-01T10:00:30Z").secs(), 1_893_492_030);
        assert!(parse_time("startTime", "tomorrow").is_err());
        assert_eq!(format_time(t("2030-01-01T10:00")), "2030-01-01T10:00");
    }

    #[test]
    fn aws_cron_with_quartz_weekdays_question_marks_and_years() {
        // 2030-01-06 is a Sunday.
        let w = Window::new("cron(0 1 ? * SUN *)", 60).unwrap();
        assert_eq!(
            w.next_start_from(t("2030-01-01T00:00")),
            Some(t("2030-01-06T01:00"))
        );
        // Quartz numbering: 1 = Sunday, 2 = Monday.
        let w = Window::new("0 1 ? * 2 *", 60).unwrap();
        assert_eq!(
            w.next_start_from(t("2030-01-01T00:00")),
            Some(t("2030-01-07T01:00"))
        );
        let w = Window::new("cron(30 22 15 * ? 2031)", 10).unwrap();
        assert_eq!(
            w.next_start_from(t("2030-01-01T00:00")),
            Some(t("2031-01-15T22:30"))
        );
        let w = Window::new("cron(0/15 * * * ? *)", 5).unwrap();
        assert_eq!(
            w.next_start_from(t("2030-01-01T00:01")),
            Some(t("2030-01-01T00:15"))
        );
        assert!(Window::new("0 1 * * *", 10).is_err(), "five fields");
        assert!(Window::new("cron(99 1 ? * SUN *)", 10).is_err());
        assert!(Window::new("cron(0 1 ? * SUN *)", 0).is_err());
        assert!(Window::new("cron(0 1 ? * SUN *)", 1431).is_err());
    }

    #[test]
    fn a_window_is_open_from_its_start_for_its_duration() {
        let w = Window::new("cron(0 2 * * ? *)", 30).unwrap();
        let open = Some((t("2030-01-01T02:00"), t("2030-01-01T02:30")));
        assert_eq!(w.open_at(t("2030-01-01T01:59")), None);
        assert_eq!(w.open_at(t("2030-01-01T02:00")), open);
        assert_eq!(w.open_at(t("2030-01-01T02:29:59")), open);
        assert_eq!(w.open_at(t("2030-01-01T02:30")), None);
        assert_eq!(
            w.open_at(t("2030-01-02T02:10")).map(|o| o.0),
            Some(t("2030-01-02T02:00"))
        );
    }

    #[test]
    fn phases_follow_start_end_and_windows() {
        let s = Schedule::parse(&json!({
            "startTime": "2030-01-01T10:00", "endTime": "2030-01-03T10:00",
            "endBehavior": "CANCEL",
            "maintenanceWindows": [{"startTime": "cron(0 12 * * ? *)", "durationInMinutes": 60}]
        }))
        .unwrap();
        assert_eq!(s.end_behavior, EndBehavior::Cancel);
        assert_eq!(s.phase(t("2030-01-01T09:59")), Phase::BeforeStart);
        assert_eq!(s.phase(t("2030-01-01T10:00")), Phase::BetweenWindows);
        assert_eq!(s.phase(t("2030-01-01T12:00")), Phase::Open);
        assert_eq!(s.phase(t("2030-01-01T13:00")), Phase::BetweenWindows);
        assert_eq!(s.phase(t("2030-01-03T10:00")), Phase::Ended);
        assert_eq!(
            s.next_window_starts(t("2030-01-01T00:00"), 7),
            vec![t("2030-01-01T12:00"), t("2030-01-02T12:00")]
        );
        let plain = Schedule::parse(&json!({"endTime": "2030-01-03T10:00"})).unwrap();
        assert_eq!(plain.end_behavior, EndBehavior::StopRollout);
        assert_eq!(plain.phase(t("2000-01-01T00:00")), Phase::Open);
        for bad in [
            json!({"startTime": "2030-01-02T10:00", "endTime": "2030-01-01T10:00"}),
            json!({"startTime": 5}),
            json!({"endTime": "2030-01-01T10:00", "endBehavior": "EXPLODE"}),
            json!({"maintenanceWindows": [{"startTime": "cron(0 12 * * ? *)"}]}),
            json!({"maintenanceWindows": {}}),
        ] {
            assert!(Schedule::parse(&bad).is_err(), "{bad}");
        }
    }
}
