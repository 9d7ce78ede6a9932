//! `iotjobs-local watch JOB_ID`: a live progress bar of a job's executions by status, from
//! polling DescribeJob and ListJobExecutionsForJob. Plain ANSI: on a terminal the block is
//! redrawn in place; otherwise a line is printed whenever the counts change.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::local::clock::{Clock, SystemClock, Timestamp};
use crate::local::control::client::{enc, ApiClient, ClientError};

/// Statuses in display order, with their bar glyph and ANSI colour.
const STATUSES: [(&str, char, &str); 8] = [
    ("SUCCEEDED", '#', "32"),
    ("FAILED", 'x', "31"),
    ("REJECTED", 'x', "31"),
    ("TIMED_OUT", 'x', "31"),
    ("CANCELED", '-', "35"),
    ("REMOVED", '-', "35"),
    ("IN_PROGRESS", '>', "33"),
    ("QUEUED", '.', "90"),
];

/// Per-thing progress lines are shown up to this many things.
const MAX_THING_LINES: usize = 20;

/// A job's progress: the latest execution of each thing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub job_id: String,
    pub job_status: String,
    /// thing → (status, statusDetails of the latest execution, if fetched)
    pub things: BTreeMap<String, String>,
    /// Schedule, maintenance window and rollout rate lines (empty without such configs).
    pub lifecycle: Vec<String>,
}

impl Progress {
    pub fn total(&self) -> usize {
        self.things.len()
    }

    pub fn count(&self, status: &str) -> usize {
        self.things.values().filter(|s| *s == status).count()
    }

    fn pending(&self) -> usize {
        self.count("QUEUED") + self.count("IN_PROGRESS")
    }

    /// Nothing more will happen on its own: the job completed, or it was cancelled and its
    /// remaining executions ended, or every execution is terminal.
    pub fn is_done(&self) -> bool {
        match self.job_status.as_str() {
            "COMPLETED" => true,
            "CANCELED" => self.pending() == 0,
            _ => self.total() > 0 && self.pending() == 0,
        }
    }

    pub fn all_succeeded(&self) -> bool {
        self.total() > 0 && self.count("SUCCEEDED") == self.total()
    }

    /// `[###>>...]  2/3 done  SUCCEEDED 2  QUEUED 1`
    pub fn bar(&self, width: usize, color: bool) -> String {
        let total = self.total().max(1);
        let mut bar = String::new();
        let mut used = 0;
        let mut legend = Vec::new();
        for (status, glyph, ansi) in STATUSES {
            let n = self.count(status);
            if n == 0 {
                continue;
            }
            // Round each segment; the last one absorbs the rounding error.
            let cells = ((n * width) as f64 / total as f64).round() as usize;
            let cells = cells.min(width - used);
            used += cells;
            let seg: String = std::iter::repeat_n(glyph, cells).collect();
            if color {
                bar.push_str(&format!("\x1b[{ansi}m{seg}\x1b[0m"));
                legend.push(format!("\x1b[{ansi}m{status}\x1b[0m {n}"));
            } else {
                bar.push_str(&seg);
                legend.push(format!("{status} {n}"));
            }
        }
        bar.push_str(&" ".repeat(width - used));
        let done = self.total() - self.pending();
        format!(
            "[{bar}] {done}/{} done  {}",
            self.total(),
            legend.join("  ")
        )
    }

    /// The whole block: a header, the bar, and one line per thing for small fleets.
    pub fn render(&self, color: bool) -> Vec<String> {
        let mut lines = vec![
            format!("job {}: {}", self.job_id, self.job_status),
            self.bar(40, color),
        ];
        lines.extend(self.lifecycle.iter().cloned());
        if self.total() <= MAX_THING_LINES {
            for (thing, status) in &self.things {
                let ansi = STATUSES
                    .iter()
                    .find(|(s, _, _)| s == status)
                    .map_or("0", |(_, _, a)| a);
                if color {
                    lines.push(format!("  {thing:<24} \x1b[{ansi}m{status}\x1b[0m"));
                } else {
                    lines.push(format!("  {thing:<24} {status}"));
                }
            }
        }
        lines
    }
}

/// One poll of the service.
pub async fn fetch(api: &ApiClient, job_id: &str) -> Result<Progress, ClientError> {
    let id = enc(job_id);
    let job = api.get(&format!("/jobs/{id}")).await?;
    let execs = api
        .get_all(&format!("/jobs/{id}/things"), "executionSummaries")
        .await?;
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for e in &execs {
        let thing = e["thingArn"]
            .as_str()
            .and_then(|a| a.rsplit_once(":thing/"))
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default();
        let s = &e["jobExecutionSummary"];
        let n = s["executionNumber"].as_i64().unwrap_or(0);
        let status = s["status"].as_str().unwrap_or("UNKNOWN").to_owned();
        match latest.get(&thing) {
            Some((m, _)) if *m >= n => {}
            _ => {
                latest.insert(thing, (n, status));
            }
        }
    }
    // The service's own time (it may run on a manual clock); the local one otherwise.
    let now = match api.get("/iotjobs-local/clock").await {
        Ok(c) => c["now"]
            .as_f64()
            .map(|s| Timestamp::from_millis((s * 1000.0) as i64))
            .unwrap_or_else(|| SystemClock.now()),
        Err(_) => SystemClock.now(),
    };
    let things: BTreeMap<String, String> = latest.into_iter().map(|(t, (_, s))| (t, s)).collect();
    let succeeded = things.values().filter(|s| *s == "SUCCEEDED").count() as i64;
    let lifecycle = super::schedule_view::lines(&job["job"], now, things.len() as i64, succeeded);
    Ok(Progress {
        job_id: job_id.to_owned(),
        job_status: job["job"]["status"]
            .as_str()
            .map_or_else(|| "UNKNOWN".to_owned(), str::to_owned),
        things,
        lifecycle,
    })
}

/// Draws the progress block, in place on a terminal.
#[derive(Debug)]
pub struct Display {
    tty: bool,
    drawn: usize,
    last: Option<Vec<String>>,
}

impl Display {
    pub fn new(tty: bool) -> Self {
        Display {
            tty,
            drawn: 0,
            last: None,
        }
    }

    pub fn show(&mut self, out: &mut impl Write, p: &Progress) -> std::io::Result<()> {
        let lines = p.render(self.tty);
        // Off a terminal only the counts and the job status make a new line (the
        // schedule's countdowns would otherwise print one every poll).
        let key = if self.tty {
            lines.clone()
        } else {
            vec![lines[1].clone(), p.job_status.clone()]
        };
        if self.last.as_ref() == Some(&key) {
            return Ok(());
        }
        if self.tty {
            if self.drawn > 0 {
                write!(out, "\x1b[{}A", self.drawn)?;
            }
            for l in &lines {
                writeln!(out, "\r\x1b[2K{l}")?;
            }
            // Clear what a taller previous block left below.
            for _ in lines.len()..self.drawn {
                writeln!(out, "\r\x1b[2K")?;
            }
            self.drawn = self.drawn.max(lines.len());
        } else {
            // One line per change keeps logs (CI) readable.
            writeln!(out, "{}  ({})", lines[1], p.job_status)?;
            for l in &p.lifecycle {
                writeln!(out, "  {l}")?;
            }
        }
        out.flush()?;
        self.last = Some(key);
        Ok(())
    }
}

/// Polls until the job is done (see [`Progress::is_done`]), drawing as it goes.
pub async fn watch(
    api: &ApiClient,
    job_id: &str,
    interval: Duration,
    out: &mut impl Write,
    tty: bool,
) -> Result<Progress, ClientError> {
    let mut display = Display::new(tty);
    loop {
        let p = fetch(api, job_id).await?;
        // A closed stdout (a pipe to `head`) must not stop the watch with an error.
        let _ = display.show(out, &p);
        if p.is_done() {
            return Ok(p);
        }
        tokio::time::sleep(interval).await;
    }
}

/// statusDetails of each thing's latest execution (for summaries).
pub async fn details(
    api: &ApiClient,
    job_id: &str,
    things: impl IntoIterator<Item = &String>,
) -> Result<BTreeMap<String, Value>, ClientError> {
    let mut out = BTreeMap::new();
    for t in things {
        let e = api
            .get(&format!("/things/{}/jobs/{}", enc(t), enc(job_id)))
            .await?;
        out.insert(
            t.clone(),
            e["execution"]["statusDetails"]["detailsMap"].clone(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(job: &str, st: &[&str]) -> Progress {
        Progress {
            job_id: "j".into(),
            job_status: job.into(),
            things: st
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("t{i}"), s.to_string()))
                .collect(),
            lifecycle: Vec::new(),
        }
    }

    #[test]
    fn bar_counts_and_completion() {
        let p = progress(
            "IN_PROGRESS",
            &["SUCCEEDED", "IN_PROGRESS", "QUEUED", "QUEUED"],
        );
        assert_eq!(
            p.bar(8, false),
            "[##>>....] 1/4 done  SUCCEEDED 1  IN_PROGRESS 1  QUEUED 2"
        );
        assert!(!p.is_done());
        let p = progress("COMPLETED", &["SUCCEEDED", "FAILED"]);
        assert!(p.is_done() && !p.all_succeeded());
        let p = progress("CANCELED", &["CANCELED", "IN_PROGRESS"]);
        assert!(!p.is_done());
        let p = progress("IN_PROGRESS", &["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);
        assert!(p.is_done() && p.all_succeeded());
        assert_eq!(p.bar(9, false), "[#########] 3/3 done  SUCCEEDED 3");
        assert!(!progress("IN_PROGRESS", &[]).is_done());
    }

    #[test]
    fn display_redraws_only_on_change() {
        let mut out = Vec::new();
        let mut d = Display::new(false);
        let p = progress("IN_PROGRESS", &["QUEUED"]);
        d.show(&mut out, &p).unwrap();
        d.show(&mut out, &p).unwrap();
        d.show(&mut out, &progress("COMPLETED", &["SUCCEEDED"]))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let mut out = Vec::new();
        let mut d = Display::new(true);
        d.show(&mut out, &p).unwrap();
        d.show(&mut out, &progress("IN_PROGRESS", &["IN_PROGRESS"]))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\x1b[3A"), "{text:?}");
    }
}
