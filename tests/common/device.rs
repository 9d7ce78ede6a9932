//! A device running the real `iotjobsd`: a temporary directory laid out like one
//! (handler, state and runtime directories, a PKI bundle, a config file) and the daemon
//! process, which tests start, kill (-9), stop (SIGTERM) and start again over the same
//! state. Also the polling helpers for what handlers leave on disk.
//!
//! It knows nothing of the Jobs service the daemon talks to: the suites bring their own
//! (in-process, see `jobs_service`, or a whole `LocalService`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use iotjobs::local::pki::Pki;

/// Generous upper bound for anything a daemon test waits for; never an expected duration.
pub const DAEMON_WAIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_iotjobsd");

/// What differs between the suites' device configurations.
pub struct DeviceOptions {
    /// `mqtt.reconnect_max_secs`.
    pub reconnect_max_secs: u32,
    /// Extra lines for the `[jobs]` section.
    pub jobs: String,
    /// `log.level` of the daemon's log file.
    pub log_level: &'static str,
    /// `log.rotation`, when not the default.
    pub log_rotation: Option<&'static str>,
    /// Writes a `boot_id` file ("boot-1") and points `paths.boot_id_file` at it, so a
    /// test can simulate a reboot by changing it.
    pub boot_id: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            reconnect_max_secs: 2,
            jobs: String::new(),
            log_level: "debug",
            log_rotation: None,
            boot_id: false,
        }
    }
}

/// The device's directory and its `iotjobsd` (when running). Dropping it kills the daemon.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    daemon: Option<Child>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Device {
    /// A device in a new temporary directory for `thing` on the broker at
    /// localhost:`port`, with a certificate from `pki`. No daemon yet.
    pub fn create(pki: &Pki, port: u16, thing: &str, opts: &DeviceOptions) -> Device {
        Self::create_in(tempfile::tempdir().unwrap(), pki, port, thing, opts)
    }

    /// Like [`Device::create`], in `dir` (which may hold other things, e.g. the service's).
    pub fn create_in(
        dir: tempfile::TempDir,
        pki: &Pki,
        port: u16,
        thing: &str,
        opts: &DeviceOptions,
    ) -> Device {
        let root = dir.path();
        // Steps may run as an unprivileged user: they must reach the handler directory.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["handlers", "state", "run"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let mut paths_extra = String::new();
        if opts.boot_id {
            std::fs::write(root.join("boot_id"), "boot-1\n").unwrap();
            paths_extra = format!("boot_id_file = \"{}/boot_id\"\n", root.display());
        }
        let log_extra = opts
            .log_rotation
            .map(|r| format!("rotation = \"{r}\"\n"))
            .unwrap_or_default();
        let bundle = pki.write_device_bundle(root.join("pki"), thing).unwrap();
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[mqtt]
endpoint = "localhost"
port = {port}
thing_name = "{thing}"
cert = "{cert}"
key = "{key}"
root_ca = "{ca}"
reconnect_min_secs = 1
reconnect_max_secs = {reconnect_max}

[jobs]
handler_dir = "{root}/handlers"
kill_grace_secs = 1
{jobs}

[log]
file = "{root}/iotjobsd.log"
level = "{level}"
{log_extra}
[paths]
state_dir = "{root}/state"
runtime_dir = "{root}/run"
{paths_extra}"#,
                cert = bundle.cert_path.display(),
                key = bundle.key_path.display(),
                ca = bundle.root_ca_path.display(),
                root = root.display(),
                reconnect_max = opts.reconnect_max_secs,
                jobs = opts.jobs,
                level = opts.log_level,
            ),
        )
        .unwrap();
        Device {
            dir,
            config,
            daemon: None,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// Writes an executable `#!/bin/sh` handler script into the handler directory.
    pub fn handler(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root().join("handlers").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The daemon's log file so far, then what daemons wrote to stderr (what a daemon that
    /// could not start says, before its log file exists), if anything.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.path("iotjobsd.log")).unwrap_or_default();
        match std::fs::read_to_string(self.path("daemon.stderr")) {
            Ok(stderr) if !stderr.trim().is_empty() => format!("{log}\n--- stderr:\n{stderr}"),
            _ => log,
        }
    }

    /// Starts `iotjobsd`, optionally with a test failpoint; does not wait for it.
    pub fn spawn(&mut self, failpoint: Option<&str>) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .env("IOTJOBSD_CONFIG_DIR", self.root())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env_remove("IOTJOBS_TEST_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path("daemon.stderr"))
                    .unwrap(),
            );
        if let Some(failpoint) = failpoint {
            cmd.env("IOTJOBS_TEST_FAILPOINT", failpoint);
        }
        self.daemon = Some(cmd.spawn().unwrap());
    }

    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// The running daemon's pid.
    pub fn id(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon").id()
    }

    /// `kill -9` of the daemon (if one is running), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits for the daemon to exit (on its own, a failpoint, a SIGTERM); its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DAEMON_WAIT;
        loop {
            let daemon = self.daemon.as_mut().expect("no daemon");
            if let Some(status) = daemon.try_wait().unwrap() {
                self.daemon = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until `pred` holds, polling; panics after [`DAEMON_WAIT`].
pub async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + DAEMON_WAIT;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handler script that runs `start` (e.g. `touch STARTED`), waits until the file
/// `go` exists, then runs `then`: a step a test holds in place and releases with an
/// explicit event.
pub fn gated_script(start: &str, go: &Path, then: &str) -> String {
    format!(
        "{start}\nwhile [ ! -e {go} ]; do sleep 0.02; done\n{then}",
        go = go.display()
    )
}

/// True when no process with this pid is alive (a zombie waiting for init counts as gone).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// The pid a handler wrote into `path`.
pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
