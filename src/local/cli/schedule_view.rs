//! What `iotjobs-local watch` shows about a job's lifecycle: its schedule (time to start
//! and end, the current or next maintenance window) and its rollout rate. Pure: the job
//! as DescribeJob returns it and the service's `now` in, display lines out.

use serde_json::Value;

use crate::local::clock::Timestamp;
use crate::local::lifecycle::schedule::format_time;
use crate::local::lifecycle::{Phase, Rollout, Schedule};

/// `1d 2h`, `3h 05m`, `4m 10s`, `12s`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn at(t: Timestamp, now: Timestamp) -> String {
    let d = (t.millis() - now.millis()) / 1000;
    if d >= 0 {
        format!("{} UTC (in {})", format_time(t), span(d))
    } else {
        format!("{} UTC ({} ago)", format_time(t), span(-d))
    }
}

/// Lines describing the schedule and rollout of `job` (DescribeJob's `job`) at `now`;
/// `notified`/`succeeded` are the things with an execution / that succeeded.
pub fn lines(job: &Value, now: Timestamp, notified: i64, succeeded: i64) -> Vec<String> {
    let mut out = Vec::new();
    let status = job["status"].as_str().unwrap_or_default();
    let live = matches!(status, "SCHEDULED" | "IN_PROGRESS");
    if let Some(s) = job
        .get("schedulingConfig")
        .and_then(|v| Schedule::parse(v).ok())
    {
        let mut parts = Vec::new();
        if let Some(start) = s.start {
            parts.push(format!("start {}", at(start, now)));
        }
        if let Some(end) = s.end {
            let behavior = job["schedulingConfig"]["endBehavior"]
                .as_str()
                .unwrap_or("STOP_ROLLOUT");
            parts.push(format!("end {} → {behavior}", at(end, now)));
        }
        if !parts.is_empty() {
            out.push(format!("schedule: {}", parts.join(", ")));
        }
        if !s.windows.is_empty() && live {
            let line = match (s.phase(now), s.current_window(now)) {
                (Phase::Ended, _) => "windows: schedule ended".to_owned(),
                (_, Some((_, end))) => format!("window: open, closes {}", at(end, now)),
                _ => match s.next_window_starts(now, 1).first() {
                    Some(next) => format!("window: closed, next opens {}", at(*next, now)),
                    None => "window: closed, none before the end time".to_owned(),
                },
            };
            out.push(line);
        }
    }
    if let Some(r) = job
        .get("jobExecutionsRolloutConfig")
        .and_then(|v| Rollout::parse(v).ok())
    {
        if let Some(rate) = r.rate(notified, succeeded) {
            let cap = r
                .maximum_per_minute
                .filter(|_| r.exponential.is_some())
                .map_or(String::new(), |m| format!(" (max {m}/min)"));
            let rolling = if job["isConcurrent"] == true {
                "rolling out"
            } else {
                "rollout"
            };
            out.push(format!(
                "{rolling}: {rate}/min{cap}, {notified} things notified"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::lifecycle::schedule::parse_time;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        parse_time("t", s).unwrap()
    }

    #[test]
    fn spans() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(250), "4m 10s");
        assert_eq!(span(3 * 3600 + 300), "3h 05m");
        assert_eq!(span(86_400 + 7200), "1d 2h");
    }

    #[test]
    fn schedule_window_and_rate_lines() {
        let job = json!({"status": "SCHEDULED", "isConcurrent": false,
            "schedulingConfig": {"startTime": "2030-01-01T10:00", "endTime": "2030-01-01T12:00",
                "endBehavior": "CANCEL",
                "maintenanceWindows": [{"startTime": "cron(30 10 * * ? *)", "durationInMinutes": 30}]},
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 50, "exponentialRate": {
                "baseRatePerMinute": 5, "incrementFactor": 2.0,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 10}}}});
        assert_eq!(
            lines(&job, t("2030-01-01T09:00"), 0, 0),
            [
                "schedule: start 2030-01-01T10:00 UTC (in 1h 00m), end 2030-01-01T12:00 UTC (in 3h 00m) → CANCEL",
                "window: closed, next opens 2030-01-01T10:30 UTC (in 1h 30m)",
                "rollout: 5/min (max 50/min), 0 things notified",
            ]
        );
        let mut running = job.clone();
        running["status"] = json!("IN_PROGRESS");
        running["isConcurrent"] = json!(true);
        let l = lines(&running, t("2030-01-01T10:40"), 20, 0);
        assert_eq!(
            l[1],
            "window: open, closes 2030-01-01T11:00 UTC (in 20m 00s)"
        );
        assert_eq!(l[2], "rolling out: 20/min (max 50/min), 20 things notified");
        assert!(
            l[0].contains("start 2030-01-01T10:00 UTC (40m 00s ago)"),
            "{l:?}"
        );
        assert!(lines(
            &json!({"status": "IN_PROGRESS"}),
            t("2030-01-01T10:40"),
            1,
            1
        )
        .is_empty());
    }
}
