//! The benchmark harness: starts `iotjobs-local serve` and a real `iotjobsd` on loopback
//! with mutual TLS, measures the figures of issue 9 and renders them as a report. Used by
//! `examples/bench/main.rs` (the one command) and by `tests/bench_smoke.rs` (quick mode
//! against debug binaries, so the harness cannot rot). It asserts nothing about the values.

pub mod daemon;
pub mod journal;
pub mod mem;
pub mod scale;
pub mod service;
pub mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use daemon::DaemonFigures;
use mem::mib;
use scale::ScaleFigures;
use service::Service;

/// What to run and how much of it.
#[derive(Debug, Clone)]
pub struct Options {
    pub iotjobsd: PathBuf,
    pub iotjobs_local: PathBuf,
    /// Repository root: `handlers/` and `packaging/` are what the package installs.
    pub repo: PathBuf,
    pub startup_runs: usize,
    pub idle_wait: Duration,
    pub latency_jobs: usize,
    pub drain_jobs: usize,
    pub flood_bytes: u64,
    /// Writes of the journal-write figure.
    pub journal_writes: usize,
    pub things: usize,
    pub connect_timeout: Duration,
    pub skip_scale: bool,
    /// Skip figures 1–5 (the scale figure alone).
    pub skip_daemon: bool,
    /// Keep the work directory (service data, daemon config and log) for inspection.
    pub keep: bool,
}

impl Options {
    /// The full run (minutes).
    pub fn full(iotjobsd: PathBuf, iotjobs_local: PathBuf, repo: PathBuf) -> Options {
        Options {
            iotjobsd,
            iotjobs_local,
            repo,
            startup_runs: 20,
            idle_wait: Duration::from_secs(5),
            latency_jobs: 200,
            drain_jobs: 1000,
            flood_bytes: 100_000_000,
            journal_writes: 1000,
            things: 10_000,
            connect_timeout: Duration::from_secs(300),
            skip_scale: false,
            skip_daemon: false,
            keep: false,
        }
    }

    /// Seconds, not minutes: every figure, tiny counts (CI smoke run).
    pub fn quick(self) -> Options {
        Options {
            startup_runs: 2,
            idle_wait: Duration::from_millis(500),
            latency_jobs: 5,
            drain_jobs: 20,
            flood_bytes: 1_000_000,
            journal_writes: 20,
            things: 5,
            connect_timeout: Duration::from_secs(60),
            ..self
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub daemon: DaemonFigures,
    pub scale: ScaleFigures,
    /// Figure 8: milliseconds per durable journal write.
    pub journal_write_ms: stats::Samples,
    pub binary_bytes: Option<u64>,
    pub installed_bytes: Option<u64>,
    pub machine: String,
}

/// Raises RLIMIT_NOFILE to its hard limit (the scale run holds one socket per thing, in
/// this process and in the service, which inherits the limit).
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    raise_fd_limit()?;
    let mut report = Report {
        machine: machine(),
        ..Default::default()
    };
    let tmp = tempfile::Builder::new()
        .prefix("iotjobs-bench-")
        .tempdir()?;
    let (work, _guard) = if opts.keep {
        let path = tmp.keep();
        eprintln!("bench: work directory {} (kept)", path.display());
        (path, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };

    if !opts.skip_daemon {
        let svc = Service::start(&opts.iotjobs_local, work.as_path()).await?;
        let r = daemon::run(opts, &svc, work.as_path(), &mut report.daemon).await;
        svc.stop().await?;
        r?;
        report.journal_write_ms = journal::run(&work, opts.journal_writes).await?;
    }

    if !opts.skip_scale {
        // A fresh service: the scale figures must not include the daemon runs' state.
        let dir = work.as_path().join("scale");
        std::fs::create_dir_all(&dir)?;
        let svc = Arc::new(Service::start(&opts.iotjobs_local, &dir).await?);
        let r = scale::run(opts, &svc, &mut report.scale).await;
        if let Ok(svc) = Arc::try_unwrap(svc) {
            svc.stop().await?;
        }
        r?;
    }

    report.binary_bytes = Some(std::fs::metadata(&opts.iotjobsd)?.len());
    let mut installed = report.binary_bytes.unwrap_or(0);
    for dir in ["handlers", "systemd", "packaging"] {
        installed += dir_bytes(&opts.repo.join(dir))?;
    }
    report.installed_bytes = Some(installed);
    Ok(report)
}

/// Bytes of the regular files under `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for e in entries {
        let e = e?;
        let meta = e.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `nproc`, CPU model and kernel.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", kernel.trim())
}

impl Report {
    /// The figures that were not produced (empty when the run was complete).
    pub fn missing(&self, opts: &Options) -> Vec<&'static str> {
        let d = &self.daemon;
        let s = &self.scale;
        let mut m = Vec::new();
        let daemon = |ok: bool| opts.skip_daemon || ok;
        let checks = [
            (
                "exec -> start-next",
                daemon(d.startup_ms.len() == opts.startup_runs),
            ),
            ("idle memory", daemon(d.idle.is_some())),
            ("memory after jobs", daemon(d.after_jobs.is_some())),
            (
                "notify-next -> SUCCEEDED",
                daemon(d.notify_to_succeeded_ms.len() == opts.latency_jobs),
            ),
            ("queue drain", daemon(d.drain_jobs_per_s.is_some())),
            ("CPU per job", daemon(d.drain_cpu_ms_per_job.is_some())),
            ("handler flood", daemon(d.flood_peak.is_some())),
            (
                "journal write",
                daemon(self.journal_write_ms.len() == opts.journal_writes),
            ),
            (
                "scale",
                opts.skip_scale || (s.executions_per_s.is_some() && s.service_connected.is_some()),
            ),
            ("binary size", self.binary_bytes.is_some()),
            ("installed size", self.installed_bytes.is_some()),
        ];
        for (name, ok) in checks {
            if !ok {
                m.push(name);
            }
        }
        m
    }

    /// Markdown: one line per figure, with its target.
    pub fn render(&self) -> String {
        let d = &self.daemon;
        let s = &self.scale;
        let na = || "n/a".to_string();
        let mut o = String::new();
        let _ = writeln!(o, "machine: {}\n", self.machine);
        let _ = writeln!(o, "| figure | measured | target |\n|---|---|---|");
        let mut row = |f: &str, v: String, t: &str| {
            let _ = writeln!(o, "| {f} | {v} | {t} |");
        };
        row(
            "1. exec → start-next received by the service",
            d.startup_ms.describe("ms", 1).unwrap_or_else(na),
            "≤ 20 ms median",
        );
        let mem_row = |m: &Option<mem::Mem>| m.map_or_else(na, |m| m.to_string());
        row(
            "2a. idle memory, connected",
            mem_row(&d.idle),
            "RSS ≤ 4 MiB, RssAnon ≤ 1 MiB",
        );
        row(
            &format!("2b. memory after {} jobs", d.jobs_run),
            mem_row(&d.after_jobs),
            "",
        );
        let growth = match (d.idle, d.after_jobs) {
            (Some(a), Some(b)) => format!(
                "RSS {:+} KiB, RssAnon {:+} KiB",
                b.rss_kib as i64 - a.rss_kib as i64,
                b.anon_kib as i64 - a.anon_kib as i64
            ),
            _ => na(),
        };
        row("2c. growth after the jobs", growth, "≤ 64 KiB");
        let l = &d.notify_to_succeeded_ms;
        let lat = match (l.median(), l.pct(99.0), l.min(), l.max()) {
            (Some(p50), Some(p99), Some(lo), Some(hi)) => {
                format!(
                    "p50 {p50:.2} ms, p99 {p99:.2} ms (min {lo:.2}, max {hi:.2}, n={})",
                    l.len()
                )
            }
            _ => na(),
        };
        row(
            "3. notify-next → SUCCEEDED (`true`)",
            lat,
            "≤ 3 ms median (journal + outbox on)",
        );
        row(
            &format!("4. queue drain, {} no-op jobs", d.drain_jobs),
            d.drain_jobs_per_s
                .map_or_else(na, |r| format!("{r:.0} jobs/s")),
            "≥ 200 jobs/s",
        );
        row(
            "4b. CPU per drained job: daemon / handler processes",
            d.drain_cpu_ms_per_job
                .map_or_else(na, |(own, kids)| format!("{own:.2} ms / {kids:.2} ms")),
            "",
        );
        let flood = match (d.flood_before, d.flood_peak) {
            (Some(a), Some(p)) => format!(
                "peak RSS {:.2} MiB ({:+} KiB), peak RssAnon {:.2} MiB ({:+} KiB)",
                mib(p.rss_kib),
                p.rss_kib as i64 - a.rss_kib as i64,
                mib(p.anon_kib),
                p.anon_kib as i64 - a.anon_kib as i64
            ),
            _ => na(),
        };
        row(
            &format!("5. handler printing {} MB", d.flood_bytes / 1_000_000),
            flood,
            "adds ≤ 1 MiB",
        );
        let per_thing = match (s.service_before, s.service_connected) {
            (Some(a), Some(b)) if s.connected > 0 => format!(
                "{:.1} KiB/thing (service RSS {:.1} → {:.1} MiB)",
                (b.rss_kib as f64 - a.rss_kib as f64) / s.connected as f64,
                mib(a.rss_kib),
                mib(b.rss_kib)
            ),
            _ => na(),
        };
        row(
            "6a. simulated things connected / executions SUCCEEDED",
            format!(
                "{} / {} of {} (things created in {:.1} s, connected in {:.1} s)",
                s.connected,
                s.completed,
                s.requested,
                s.things_created_s.unwrap_or(0.0),
                s.connect_s.unwrap_or(0.0)
            ),
            "≥ 10,000 things",
        );
        row(
            "6b. executions/s",
            s.executions_per_s.map_or_else(na, |r| format!("{r:.0}")),
            "≥ 1,000/s",
        );
        row("6c. service RSS per thing", per_thing, "");
        let cpu = match (s.service_cpu_ms, s.harness_cpu_ms) {
            (Some(svc), Some(own)) if s.completed > 0 => {
                let per_k = |ms: f64| ms / s.completed as f64;
                format!(
                    "service {:.1} s ({:.2} s per 1,000 executions), harness {:.1} s ({:.2} s per 1,000)",
                    svc / 1000.0,
                    per_k(svc),
                    own / 1000.0,
                    per_k(own)
                )
            }
            _ => na(),
        };
        row(
            "6d. CPU from the first CreateJob to the last SUCCEEDED",
            cpu,
            "",
        );
        row(
            "7a. iotjobsd binary (stripped)",
            self.binary_bytes
                .map_or_else(na, |b| format!("{:.2} MB ({b} bytes)", b as f64 / 1e6)),
            "≤ 3 MB",
        );
        row(
            "7b. installed package (binary + handlers + unit + config)",
            self.installed_bytes
                .map_or_else(na, |b| format!("{:.2} MB", b as f64 / 1e6)),
            "",
        );
        let j = &self.journal_write_ms;
        row(
            &format!(
                "8. journal write ({} B record: pwrite + fdatasync)",
                journal::RECORD_BYTES
            ),
            match (j.median(), j.pct(99.0), j.max()) {
                (Some(p50), Some(p99), Some(hi)) => format!(
                    "p50 {p50:.3} ms, p99 {p99:.3} ms (max {hi:.3}, n={})",
                    j.len()
                ),
                _ => na(),
            },
            "",
        );
        o
    }
}
