//! The real `iotjobsd` binary: systemd notifications, single-instance lock, invalid
//! configuration, and SIGTERM → clean MQTT DISCONNECT → exit 0.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::*;
use iotjobs::local::broker::BrokerEvent;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_iotjobsd");

/// A temp directory laid out like a device: PKI, config, runtime and state dirs.
struct Device {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Device {
    fn new(ca: &TestCa, dir: tempfile::TempDir, thing: &str, port: u16) -> Device {
        Self::with_root_ca(ca, dir, thing, port, true)
    }

    /// `root_ca = false` leaves mqtt.root_ca unset: the system trust store is used.
    fn with_root_ca(
        ca: &TestCa,
        dir: tempfile::TempDir,
        thing: &str,
        port: u16,
        root_ca: bool,
    ) -> Device {
        let root = dir.path();
        let ca_path = ca.write_ca(root, "ca");
        let (cert, key) = ca.write_device(root, thing);
        for sub in ["handlers", "state", "log"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let config = root.join("config.toml");
        let text = format!(
            r#"[mqtt]
endpoint = "localhost"
port = {port}
thing_name = "{thing}"
cert = "{cert}"
key = "{key}"
{root_ca_line}
reconnect_min_secs = 1
reconnect_max_secs = 2

[jobs]
handler_dir = "{root}/handlers"

[log]
file = "{root}/log/iotjobsd.log"
level = "debug"

[paths]
state_dir = "{root}/state"
runtime_dir = "{root}/run"
"#,
            cert = cert.display(),
            key = key.display(),
            root_ca_line = if root_ca {
                format!("root_ca = \"{}\"", ca_path.display())
            } else {
                String::new()
            },
            root = root.display(),
        );
        std::fs::write(&config, text).unwrap();
        Device { dir, config }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("IOTJOBSD_CONFIG_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// Collects a child's stdout+stderr lines on a channel.
fn capture(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// Waits for a child to exit, killing it (and failing) after [`WAIT`].
fn wait_exit(mut child: Child, what: &str) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(WAIT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("{what} did not exit within {WAIT:?}");
        }
    }
}

/// Reads notify datagrams until one contains `needle`; returns everything read.
fn wait_notify(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) {
    if seen.iter().any(|m| m.contains(needle)) {
        return;
    }
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {needle:?} notification; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = message.contains(needle);
                seen.push(message);
                if done {
                    return;
                }
            }
            Err(e) => panic!("no {needle:?} notification ({e}); got {seen:?}"),
        }
    }
}

fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    (UnixDatagram::bind(&path).unwrap(), path)
}

#[test]
fn sigterm_disconnects_cleanly_notifies_systemd_and_holds_the_lock() {
    // The embedded broker runs on its own runtime threads; the test thread blocks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = TestCa::new();
    let broker = rt.block_on(start_broker(&ca, None));
    let mut broker_events = broker.events();
    let port = broker.tls_addr().unwrap().port();
    let device = Device::new(&ca, tempfile::tempdir().unwrap(), "gw-1", port);
    let (socket, socket_path) = notify_socket(device.dir.path());

    let mut daemon = device
        .command()
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .spawn()
        .unwrap();
    let _output = capture(&mut daemon);
    let mut notes = Vec::new();
    wait_notify(&socket, "READY=1", &mut notes);
    rt.block_on(next_matching(
        &mut broker_events,
        "daemon connected",
        |e| matches!(e, BrokerEvent::Connected { client_id } if client_id == "gw-1"),
    ));
    wait_notify(
        &socket,
        &format!("STATUS=connected to localhost:{port} as gw-1"),
        &mut notes,
    );
    wait_notify(&socket, "WATCHDOG=1", &mut notes);

    // A second instance on the same runtime directory refuses to start.
    let mut second = device.command().spawn().unwrap();
    let second_output = capture(&mut second);
    let status = wait_exit(second, "second instance");
    assert!(!status.success());
    // Ends when both pipes reach EOF, i.e. the process and its output are gone.
    let text: Vec<String> = second_output.iter().collect();
    let text = text.join("\n");
    assert!(
        text.contains(&format!("already running (PID {})", daemon.id())),
        "second instance said:\n{text}"
    );

    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(daemon, "iotjobsd after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    wait_notify(&socket, "STOPPING=1", &mut notes);
    let event = rt.block_on(next_matching(
        &mut broker_events,
        "daemon disconnect",
        |e| matches!(e, BrokerEvent::Disconnected { client_id, .. } if client_id == "gw-1"),
    ));
    assert_eq!(
        event,
        BrokerEvent::Disconnected {
            client_id: "gw-1".into(),
            clean: true
        },
        "the broker saw an MQTT DISCONNECT, not a dropped socket"
    );
    rt.block_on(broker.shutdown());
}

#[test]
fn sigterm_gives_mosquitto_a_clean_disconnect() {
    if !have_mosquitto() {
        return;
    }
    let broker_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let mut broker = Mosquitto::start(&ca, broker_dir.path(), free_port());
    let device = Device::new(&ca, tempfile::tempdir().unwrap(), "gw-2", broker.port);
    let mut daemon = device.command().spawn().unwrap();
    let _output = capture(&mut daemon);
    broker.wait_for_line("daemon connected", |l| {
        l.contains("New client connected") && l.contains(" as gw-2 ")
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(daemon, "iotjobsd after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    // mosquitto says "disconnected." only for a DISCONNECT packet; an abrupt close is
    // "closed its connection".
    broker.wait_for_line("clean disconnect", |l| {
        l.contains("Client gw-2 disconnected.")
    });
    assert!(
        !broker
            .drain()
            .iter()
            .any(|l| l.contains("gw-2 closed its connection")),
        "abrupt close seen"
    );
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nruntime_dir = \"{0}/run\"\nstate_dir = \"{0}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("IOTJOBSD_CONFIG_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = capture(&mut child);
    let status = wait_exit(child, "iotjobsd with an invalid config");
    // EX_CONFIG: the unit's RestartPreventExitStatus=78 stops systemd from retrying.
    assert_eq!(status.code(), Some(78));
    let text: Vec<String> = output.iter().collect();
    let text = text.join("\n");
    for key in ["mqtt.endpoint", "mqtt.thing_name", "mqtt.cert", "mqtt.key"] {
        assert!(text.contains(key), "{key} not reported in:\n{text}");
    }
    assert!(
        !dir.path().join("run").join("iotjobsd.lock").exists(),
        "an invalid configuration must not take the lock"
    );
}

#[test]
fn without_root_ca_the_system_trust_store_is_used() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = TestCa::new();
    let broker = rt.block_on(start_broker(&ca, None));
    let port = broker.tls_addr().unwrap().port();
    let device = Device::with_root_ca(&ca, tempfile::tempdir().unwrap(), "gw-3", port, false);
    let (socket, socket_path) = notify_socket(device.dir.path());
    // rustls-native-certs reads the system store from SSL_CERT_FILE when it is set,
    // which lets the test stand in for /etc/ssl/certs.
    let mut daemon = device
        .command()
        .env("NOTIFY_SOCKET", &socket_path)
        .env("SSL_CERT_FILE", device.dir.path().join("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .spawn()
        .unwrap();
    let _output = capture(&mut daemon);
    let mut notes = Vec::new();
    wait_notify(
        &socket,
        &format!("STATUS=connected to localhost:{port} as gw-3"),
        &mut notes,
    );
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert!(wait_exit(daemon, "iotjobsd").success());
    rt.block_on(broker.shutdown());
}

/// The glibc tunables in the environment the running daemon image was started with
/// (/proc/PID/environ). glibc may rewrite that block in place while parsing it (2.36
/// turns the `:` between tunables into NULs), so settings are collected wherever they are.
fn tunables_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .flat_map(|v| {
            v.trim_start_matches("GLIBC_TUNABLES=")
                .split(':')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|v| v.starts_with("glibc."))
        .collect()
}

/// Memory growth (BENCHMARKS.md, figure 2b): `iotjobsd run` re-executes itself once with
/// glibc's per-thread malloc cache off, keeping its PID (systemd's MainPID) and the
/// operator's own tunables; an operator's own cache size is left alone.
#[test]
fn runs_with_glibcs_per_thread_cache_off_under_the_same_pid() {
    let ca = TestCa::new();
    // No broker: READY=1 does not wait for the network.
    let device = Device::new(&ca, tempfile::tempdir().unwrap(), "gw-3", free_port());
    let cases: [(Option<&str>, &[&str]); 3] = [
        (None, &["glibc.malloc.tcache_count=0"]),
        (
            Some("glibc.malloc.arena_max=2"),
            &["glibc.malloc.arena_max=2", "glibc.malloc.tcache_count=0"],
        ),
        (
            Some("glibc.malloc.tcache_count=3"),
            &["glibc.malloc.tcache_count=3"],
        ),
    ];
    for (given, expected) in cases {
        let (socket, socket_path) = notify_socket(device.dir.path());
        let mut cmd = device.command();
        cmd.env("NOTIFY_SOCKET", &socket_path);
        match given {
            Some(value) => cmd.env("GLIBC_TUNABLES", value),
            None => cmd.env_remove("GLIBC_TUNABLES"),
        };
        let mut daemon = cmd.spawn().unwrap();
        let _output = capture(&mut daemon);
        let mut notes = Vec::new();
        // Sent by the re-executed image: the spawned PID is still the daemon.
        wait_notify(&socket, "READY=1", &mut notes);
        assert_eq!(tunables_of(daemon.id()), expected, "given {given:?}");
        // What ps, top and pgrep show: the binary's name, not "exe" from /proc/self/exe.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", daemon.id())).unwrap();
        assert_eq!(comm.trim_end(), "iotjobsd", "given {given:?}");
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        let status = wait_exit(daemon, "iotjobsd after SIGTERM");
        assert!(status.success(), "exit status {status:?}");
        drop(socket);
        std::fs::remove_file(&socket_path).unwrap();
    }
}
