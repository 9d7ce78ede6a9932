//! `iotjobs-local demo`: the whole system on one machine, from nothing, in one command.
//!
//! 1. starts the service (CA, embedded broker, Jobs service, control plane) in a private
//!    temporary directory, every listener on a free loopback port;
//! 2. provisions a thing group of N things (default 3), each with its certificate, key and
//!    `iotjobsd` config (`provision`), and a private copy of the repository's handlers;
//! 3. starts a real `iotjobsd` per thing (the binary next to this one, or `--iotjobsd`),
//!    each with its own config, state, runtime and log directories;
//! 4. creates one job for the group: the AWS-Download-File managed template's step (rendered
//!    with `${aws:iot:parameter:...}` substitution; it copies a `file://` payload into the
//!    job's working directory) followed by a `runCommand` step that prints the downloaded
//!    file, with `includeStdOut` so each device reports what it got;
//! 5. shows the executions' progress live, then a summary;
//! 6. exits 0 only if every execution SUCCEEDED and every device reported the payload.
//!
//! Every path out (success, failure, Ctrl-C, SIGTERM) stops the daemons (SIGTERM, then
//! SIGKILL after a grace period), stops the service and removes the temporary directory
//! (kept with `--keep`). Daemons run in their own process groups so a terminal's Ctrl-C
//! reaches the demo, which then stops them in order.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::jobs::templates;
use crate::local::broker::BrokerEvent;
use crate::local::cli::watch::{self, Display, Progress};
use crate::local::control::client::{enc, ApiClient};
use crate::local::provision::{self, DeviceFiles};
use crate::local::server::{LocalService, ServeOptions};

const GROUP: &str = "demo-fleet";
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The iotjobsd binary (default: `iotjobsd` next to this executable).
    #[arg(long, value_name = "PATH")]
    pub iotjobsd: Option<PathBuf>,
    /// Handler directory to copy for the devices (default: the repository's `handlers/`).
    #[arg(long, value_name = "DIR")]
    pub handlers: Option<PathBuf>,
    /// Number of things (devices) in the group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub things: u16,
    /// Give up when the job has not finished after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Keep the temporary directory (service data, device configs and logs) for inspection.
    #[arg(long)]
    pub keep: bool,
}

/// A private temporary directory, removed on drop unless kept.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> anyhow::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!(
            "iotjobs-demo-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("demo: kept {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("demo: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// One running device.
#[derive(Debug)]
struct Device {
    thing: String,
    files: DeviceFiles,
    output: PathBuf,
    child: Child,
}

/// Everything the demo started, so every exit path can stop it.
#[derive(Debug, Default)]
struct Running {
    service: Option<LocalService>,
    devices: Vec<Device>,
}

impl Running {
    async fn stop(&mut self) {
        for d in &mut self.devices {
            stop_child(&d.thing, &mut d.child).await;
        }
        if let Some(s) = self.service.take() {
            if let Err(e) = s.stop().await {
                eprintln!("demo: stopping the service: {e}");
            }
        }
    }
}

/// SIGTERM (the daemon stops its handler and exits), then SIGKILL after [`STOP_GRACE`].
async fn stop_child(name: &str, child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("demo: {name} did not stop within {STOP_GRACE:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let work = WorkDir::create(args.keep)?;
    let mut running = Running::default();
    let outcome = tokio::select! {
        r = demo(&args, &work.path, &mut running) => r,
        r = crate::local::cli::wait_for_signal() => match r {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(e) => Err(anyhow!("cannot wait for signals: {e}")),
        },
    };
    if outcome.is_err() {
        print_logs(&running.devices);
    }
    running.stop().await;
    drop(work);
    match outcome {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(e) => Err(e),
    }
}

/// The last lines of each device's logs, to explain a failure.
fn print_logs(devices: &[Device]) {
    for d in devices {
        // The daemon's file logger may add a date suffix (daily rotation).
        let mut logs = vec![d.output.clone()];
        if let Ok(entries) = std::fs::read_dir(&d.files.dir) {
            logs.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("iotjobsd.log"))
            }));
        }
        for path in &logs {
            if let Ok(text) = std::fs::read_to_string(path) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                if !tail.is_empty() {
                    eprintln!("--- {} ({}) ---", d.thing, path.display());
                    for l in tail {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// `--iotjobsd`, else `iotjobsd` next to this executable (a cargo build or an install),
/// else the first `iotjobsd` on `PATH`.
fn find_iotjobsd(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    let is_exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(p) = arg {
        if !is_exe(p) {
            bail!("--iotjobsd {}: not an executable file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("iotjobsd")));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("iotjobsd"))
                .collect()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| is_exe(p))
        .ok_or_else(|| {
            anyhow!(
                "cannot find iotjobsd next to this executable or on PATH; build it \
                 (`cargo build --release --bins`) or pass --iotjobsd PATH"
            )
        })
}

fn find_handlers(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("handlers"),
        PathBuf::from("handlers"),
        PathBuf::from("/usr/libexec/iotjobsd/handlers"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("download-file.sh").is_file())
        .ok_or_else(|| anyhow!("cannot find the handlers directory; pass --handlers DIR"))
}

/// Copies the handler scripts into `to` (0700 directory, 0700 files): iotjobsd refuses
/// handlers that others can write, whatever the checkout's permissions are.
fn copy_handlers(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".sh") || !entry.file_type()?.is_file() {
            continue;
        }
        let dest = to.join(&name);
        std::fs::copy(entry.path(), &dest)
            .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The job document: AWS-Download-File's step, rendered from the managed template, then a
/// command that prints what was downloaded (reported through `includeStdOut`).
fn job_document(payload: &Path) -> anyhow::Result<String> {
    let t = templates::find("AWS-Download-File")?;
    let params = BTreeMap::from([
        (
            "downloadUrl".to_owned(),
            format!("file://{}", payload.display()),
        ),
        // Relative: each device writes into its own job working directory.
        ("filePath".to_owned(), "payload.txt".to_owned()),
    ]);
    let mut doc: Value = serde_json::from_str(&t.render(&params)?)?;
    doc["includeStdOut"] = json!("true");
    let steps = doc["steps"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("the managed template has no steps"))?;
    steps.push(json!({"action": {
        "name": "Show-File",
        "type": "runCommand",
        "input": {"command": "cat,payload.txt"},
    }}));
    Ok(doc.to_string())
}

async fn call(api: &ApiClient, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    api.call(method, path, Some(&body))
        .await
        .with_context(|| format!("{method} {path}"))
}

/// The demo proper; `Ok(true)` when every execution SUCCEEDED with the right output.
async fn demo(args: &DemoArgs, work: &Path, running: &mut Running) -> anyhow::Result<bool> {
    let iotjobsd = find_iotjobsd(args.iotjobsd.as_deref())?;
    println!("== work directory {}", work.display());
    let handlers = work.join("handlers");
    copy_handlers(&find_handlers(args.handlers.as_deref())?, &handlers)?;

    println!("== starting iotjobs-local (embedded broker, jobs service, control plane)");
    let service = LocalService::start(ServeOptions::new(work.join("service")).on_free_ports())
        .await
        .context("cannot start the local service")?;
    let api = ApiClient::new(&service.endpoint_url())?;
    println!(
        "   control plane {}   MQTT mqtts://{}",
        service.endpoint_url(),
        service
            .mqtt_tls_addr
            .map_or_else(|| "-".to_owned(), |a| a.to_string())
    );
    let mut events = service
        .broker_events()
        .ok_or_else(|| anyhow!("the service has no embedded broker"))?;
    running.service = Some(service);

    let things: Vec<String> = (1..=args.things)
        .map(|i| format!("demo-device-{i}"))
        .collect();
    println!(
        "== provisioning thing group {GROUP} with {} things",
        things.len()
    );
    call(&api, "POST", &format!("/thing-groups/{GROUP}"), json!({})).await?;
    let mut provisioned = Vec::new();
    for t in &things {
        call(&api, "POST", &format!("/things/{}", enc(t)), json!({})).await?;
        call(
            &api,
            "PUT",
            "/thing-groups/addThingToThingGroup",
            json!({"thingGroupName": GROUP, "thingName": t}),
        )
        .await?;
        let dir = work.join("devices").join(t);
        let files = provision::write_device_dir(&api, t, &dir, Some(&handlers)).await?;
        provisioned.push((t.clone(), files));
    }

    println!(
        "== starting {} iotjobsd daemons ({})",
        things.len(),
        iotjobsd.display()
    );
    for (thing, files) in provisioned {
        let output = files.dir.join("output.log");
        let out = std::fs::File::create(&output)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&iotjobsd);
        cmd.arg("--config")
            .arg(&files.config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        // Only this device's config: no drop-ins from /etc, no inherited overrides.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("IOTJOBSD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("IOTJOBSD_CONFIG_DIR", &files.dir);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", iotjobsd.display()))?;
        running.devices.push(Device {
            thing,
            files,
            output,
            child,
        });
    }

    wait_connected(&mut events, running, Duration::from_secs(args.timeout)).await?;
    println!("   all {} devices connected over mutual TLS", things.len());

    let payload = work.join("payload.txt");
    let token = format!("iotjobs demo payload {:016x}", fastrand::u64(..));
    std::fs::write(&payload, format!("{token}\n"))?;
    let job_id = format!(
        "demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    println!(
        "== creating job {job_id} for {GROUP}: AWS-Download-File of {} then `cat payload.txt`",
        payload.display()
    );
    call(
        &api,
        "PUT",
        &format!("/jobs/{job_id}"),
        json!({
            "targets": [format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{GROUP}")],
            "document": job_document(&payload)?,
            "description": "iotjobs-local demo: download a file, then run a command",
        }),
    )
    .await?;

    let progress = follow(&api, &job_id, running, Duration::from_secs(args.timeout)).await?;
    summary(&api, &job_id, &progress, &token).await
}

/// Waits until every device has connected to the broker; fails early if a daemon exits.
async fn wait_connected(
    events: &mut tokio::sync::broadcast::Receiver<BrokerEvent>,
    running: &mut Running,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut waiting: Vec<String> = running.devices.iter().map(|d| d.thing.clone()).collect();
    while !waiting.is_empty() {
        check_alive(running)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("devices never connected: {}", waiting.join(", "));
        }
        match tokio::time::timeout(left.min(POLL), events.recv()).await {
            Ok(Ok(BrokerEvent::Connected { client_id })) => waiting.retain(|t| *t != client_id),
            Ok(Ok(BrokerEvent::ConnectRefused { client_id, reason })) => {
                bail!("the broker refused {client_id}: {reason}")
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => bail!("broker events: {e}"),
        }
    }
    Ok(())
}

fn check_alive(running: &mut Running) -> anyhow::Result<()> {
    for d in &mut running.devices {
        if let Some(status) = d.child.try_wait()? {
            bail!("iotjobsd of {} exited early ({status})", d.thing);
        }
    }
    Ok(())
}

/// Shows the progress live until the job is done.
async fn follow(
    api: &ApiClient,
    job_id: &str,
    running: &mut Running,
    limit: Duration,
) -> anyhow::Result<Progress> {
    let deadline = Instant::now() + limit;
    let mut out = std::io::stdout();
    let mut display = Display::new(out.is_terminal());
    loop {
        let p = watch::fetch(api, job_id).await?;
        let _ = display.show(&mut out, &p);
        if p.is_done() {
            return Ok(p);
        }
        check_alive(running)?;
        if Instant::now() >= deadline {
            bail!("job {job_id} did not finish within {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints each device's result; true when all SUCCEEDED and printed the payload.
async fn summary(api: &ApiClient, job_id: &str, p: &Progress, token: &str) -> anyhow::Result<bool> {
    let details = watch::details(api, job_id, p.things.keys()).await?;
    println!("== summary of job {job_id}");
    let mut ok = p.all_succeeded();
    for (thing, status) in &p.things {
        let d = details.get(thing).cloned().unwrap_or(Value::Null);
        let stdout = d["stdout"].as_str().unwrap_or("");
        let got = stdout.contains(token);
        ok &= got;
        let note = if got {
            "downloaded and printed the payload".to_owned()
        } else {
            match d["reason"].as_str() {
                Some(r) => format!("reason: {r}"),
                None => "did not report the payload".to_owned(),
            }
        };
        println!("   {thing:<16} {status:<11} {note}");
    }
    let total = p.total();
    if ok {
        println!("demo: all {total} executions SUCCEEDED");
    } else {
        let succeeded = p.count("SUCCEEDED");
        println!("demo: FAILED: {succeeded} of {total} executions SUCCEEDED");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_document_is_a_valid_two_step_job() {
        let doc = job_document(Path::new("/tmp/x/payload.txt")).unwrap();
        let plan = crate::jobs::document::JobPlan::from_slice(doc.as_bytes());
        assert!(plan.is_ok(), "{plan:?}");
        let v: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            v["steps"][0]["action"]["input"]["handler"],
            "download-file.sh"
        );
        assert_eq!(
            v["steps"][0]["action"]["input"]["args"],
            json!(["file:///tmp/x/payload.txt", "payload.txt"])
        );
        assert_eq!(v["steps"][1]["action"]["type"], "runCommand");
    }
}
