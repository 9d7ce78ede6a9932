//! Figures 1–5: one real `iotjobsd` against the service, watched by the observer.
//! The daemon runs with its packaged defaults except paths and the log level (info).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use iotjobs::jobs::topics;
use tokio::process::{Child, Command};

use super::mem::{self, Mem};
use super::service::{command_job, path_str, terminate, Observer, Seen, Service, WAIT};
use super::stats::Samples;
use super::Options;

pub const THING: &str = "bench-gateway";

/// What the daemon figures came to.
#[derive(Debug, Default)]
pub struct DaemonFigures {
    pub startup_ms: Samples,
    pub idle: Option<Mem>,
    pub after_jobs: Option<Mem>,
    pub jobs_run: usize,
    pub notify_to_succeeded_ms: Samples,
    pub drain_jobs: usize,
    pub drain_jobs_per_s: Option<f64>,
    /// CPU per drained job: the daemon's own, and its reaped children's (the handlers).
    pub drain_cpu_ms_per_job: Option<(f64, f64)>,
    pub flood_bytes: u64,
    pub flood_before: Option<Mem>,
    pub flood_peak: Option<Mem>,
}

pub struct Device {
    root: PathBuf,
    config: PathBuf,
    pub arn: String,
}

impl Device {
    /// Creates the thing, writes its certificate bundle and an iotjobsd config.
    pub async fn provision(svc: &Service, root: &Path) -> anyhow::Result<Device> {
        let arn = svc.create_thing(THING).await?;
        // Steps may run as an unprivileged user: they must reach these directories.
        for sub in ["", "handlers", "state", "run"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        }
        let b = svc.pki.write_device_bundle(root.join("pki"), THING)?;
        let config = root.join("config.toml");
        let text = format!(
            "[mqtt]\nendpoint = \"localhost\"\nport = {port}\nthing_name = \"{THING}\"\n\
             cert = \"{cert}\"\nkey = \"{key}\"\nroot_ca = \"{ca}\"\n\n\
             [jobs]\nhandler_dir = \"{r}/handlers\"\n\n\
             [log]\nfile = \"{r}/iotjobsd.log\"\nlevel = \"info\"\n\n\
             [paths]\nstate_dir = \"{r}/state\"\nruntime_dir = \"{r}/run\"\n",
            port = svc.mqtt.port(),
            cert = path_str(&b.cert_path),
            key = path_str(&b.key_path),
            ca = path_str(&b.root_ca_path),
            r = path_str(root),
        );
        std::fs::write(&config, text)?;
        Ok(Device {
            root: root.to_path_buf(),
            config,
            arn,
        })
    }

    fn spawn(&self, bin: &Path) -> anyhow::Result<Child> {
        Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .env("IOTJOBSD_CONFIG_DIR", &self.root)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("iotjobsd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn is_request(seen: &Seen, topic: &str) -> bool {
    seen.topic == topic
}

fn job_of(seen: &Seen) -> Option<&str> {
    seen.payload["execution"]["jobId"].as_str()
}

/// Waits for the daemon's SUCCEEDED update of `job` (the request the service receives).
async fn succeeded(obs: &mut Observer, job: &str) -> anyhow::Result<Seen> {
    let topic = topics::update(THING, job);
    let seen = obs
        .until(&format!("a final status for {job}"), |s| {
            s.topic == topic
                && !matches!(s.payload["status"].as_str(), Some("IN_PROGRESS" | "QUEUED"))
        })
        .await?;
    match seen.payload["status"].as_str() {
        Some("SUCCEEDED") => Ok(seen),
        other => Err(anyhow!("job {job} ended {other:?}: {}", seen.payload)),
    }
}

/// Runs figures 1–5.
pub async fn run(
    opts: &Options,
    svc: &Service,
    work: &Path,
    out: &mut DaemonFigures,
) -> anyhow::Result<()> {
    let device = Device::provision(svc, &work.join("device")).await?;
    let filter = format!("$aws/things/{THING}/jobs/#");
    let mut obs = Observer::start(svc.mqtt, svc.service_tls()?, &filter).await?;
    let start_next = topics::start_next(THING);
    let result = async {
        // 1. exec -> start-next received by the service.
        let mut startup = Vec::new();
        for _ in 0..opts.startup_runs {
            obs.clear();
            let t0 = Instant::now();
            let mut child = device.spawn(&opts.iotjobsd)?;
            let seen = obs
                .until("start-next", |s| is_request(s, &start_next))
                .await?;
            startup.push(seen.at.duration_since(t0).as_secs_f64() * 1e3);
            terminate(&mut child).await?;
        }
        out.startup_ms = Samples::new(startup);

        let mut child = device.spawn(&opts.iotjobsd)?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("iotjobsd exited at once"))?;
        let r = while_running(&mut child, long_run(opts, svc, &device, &mut obs, pid, out)).await;
        terminate(&mut child).await?;
        r
    }
    .await;
    result.with_context(|| format!("iotjobsd log tail:\n{}", device.log_tail()))
}

/// Runs `work` (which waits for the daemon's messages) while the daemon runs. A daemon
/// that ends first (crashed, or killed from outside, e.g. by a debugger's injected call)
/// fails the run at once with how it ended, instead of a wait for messages that cannot
/// come followed by "timed out" and a log tail that looks like a hang.
pub async fn while_running<T>(
    child: &mut Child,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        status = child.wait() => Err(anyhow!("iotjobsd exited during the run ({})", status?)),
    }
}

async fn long_run(
    opts: &Options,
    svc: &Service,
    device: &Device,
    obs: &mut Observer,
    pid: u32,
    out: &mut DaemonFigures,
) -> anyhow::Result<()> {
    let targets = std::slice::from_ref(&device.arn);
    let accepted = topics::accepted(&topics::start_next(THING));
    obs.until("start-next accepted", |s| s.topic == accepted)
        .await?;
    // 2a. idle memory.
    tokio::time::sleep(opts.idle_wait).await;
    out.idle = Some(mem::sample(pid)?);

    // 3. notify-next -> SUCCEEDED, one job at a time.
    let noop = command_job("true");
    let notify_next = topics::notify_next(THING);
    let mut latency = Vec::new();
    for i in 0..opts.latency_jobs {
        let job = format!("latency-{i}");
        obs.clear();
        svc.create_job(&job, targets, &noop).await?;
        let n = obs
            .until("notify-next", |s| {
                s.topic == notify_next && job_of(s) == Some(job.as_str())
            })
            .await?;
        let done = succeeded(obs, &job).await?;
        latency.push(done.at.duration_since(n.at).as_secs_f64() * 1e3);
        // Idle again: the daemon's next start-next found nothing. Only then is the next
        // job's notify-next the start of its handling.
        obs.until("start-next accepted without a job", |s| {
            s.topic == accepted && s.payload.get("execution").is_none()
        })
        .await?;
    }
    out.notify_to_succeeded_ms = Samples::new(latency);
    out.jobs_run += opts.latency_jobs;

    // 4. queue drain: a gate job holds the queue while the no-op jobs are created.
    let gate = device.root.join("gate");
    let gate_job = command_job(&format!(
        "sh,-c,while [ ! -e {} ]; do sleep 0.005; done",
        path_str(&gate)
    ));
    svc.create_job("drain-gate", targets, &gate_job).await?;
    wait_status(svc, "drain-gate", "IN_PROGRESS").await?;
    for i in 0..opts.drain_jobs {
        svc.create_job(&format!("drain-{i}"), targets, &noop)
            .await?;
    }
    obs.clear();
    let cpu0 = mem::cpu_ms(pid)?;
    std::fs::write(&gate, b"")?;
    let t0 = succeeded(obs, "drain-gate").await?.at;
    let last = format!("drain-{}", opts.drain_jobs.saturating_sub(1));
    let mut done = 0;
    let mut t_end = t0;
    while done < opts.drain_jobs {
        let s = obs
            .until("drain SUCCEEDED", |s| {
                s.topic
                    .starts_with(&format!("$aws/things/{THING}/jobs/drain-"))
                    && s.topic.ends_with("/update")
                    && s.payload["status"] != "IN_PROGRESS"
            })
            .await?;
        if s.payload["status"] != "SUCCEEDED" {
            return Err(anyhow!("{} ended {}", s.topic, s.payload));
        }
        done += 1;
        t_end = s.at;
        if s.topic == topics::update(THING, &last) && done < opts.drain_jobs {
            return Err(anyhow!(
                "the last drain job finished before {} others",
                opts.drain_jobs - done
            ));
        }
    }
    let cpu1 = mem::cpu_ms(pid)?;
    let per = |a: f64, b: f64| (b - a) / opts.drain_jobs.max(1) as f64;
    out.drain_cpu_ms_per_job = Some((per(cpu0.0, cpu1.0), per(cpu0.1, cpu1.1)));
    out.drain_jobs = opts.drain_jobs;
    out.drain_jobs_per_s = Some(opts.drain_jobs as f64 / t_end.duration_since(t0).as_secs_f64());
    out.jobs_run += opts.drain_jobs + 1;

    // 2b. memory after the jobs, once idle again.
    tokio::time::sleep(opts.idle_wait).await;
    out.after_jobs = Some(mem::sample(pid)?);

    // 5. a handler printing `flood_bytes` of text lines.
    let before = mem::sample(pid)?;
    obs.clear();
    let flood = command_job(&format!(
        "sh,-c,yes 'iotjobs bench: a line of handler output written to the daemon log' | head -c {}",
        opts.flood_bytes
    ));
    svc.create_job("flood", targets, &flood).await?;
    let mut peak = before;
    let watch = succeeded(obs, "flood");
    tokio::pin!(watch);
    loop {
        tokio::select! {
            r = &mut watch => { r?; break; }
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                let m = mem::sample(pid)?;
                peak.rss_kib = peak.rss_kib.max(m.rss_kib);
                peak.pss_kib = peak.pss_kib.max(m.pss_kib);
                peak.anon_kib = peak.anon_kib.max(m.anon_kib);
            }
        }
    }
    out.flood_bytes = opts.flood_bytes;
    out.flood_before = Some(before);
    out.flood_peak = Some(peak);
    Ok(())
}

/// Polls the service until `job`'s execution has `status`.
async fn wait_status(svc: &Service, job: &str, status: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while svc.execution_status(THING, job).await? != status {
        if Instant::now() > deadline {
            return Err(anyhow!("{job} never reached {status}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_daemon_that_dies_ends_the_wait_with_how_it_ended() {
        let mut child = Command::new("sh")
            .args(["-c", "kill -KILL $$"])
            .spawn()
            .unwrap();
        // The work never completes (the observer would wait for messages that never come).
        let err = while_running(&mut child, std::future::pending::<anyhow::Result<()>>())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("iotjobsd exited during the run"), "{err}");
        assert!(err.contains("SIGKILL"), "{err}");
    }

    #[tokio::test]
    async fn work_that_completes_while_the_daemon_runs_is_its_result() {
        // `cat` runs until its stdin closes, i.e. for the whole test.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let value = while_running(&mut child, async { Ok(7) }).await.unwrap();
        assert_eq!(value, 7);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon was left running"
        );
    }
}
