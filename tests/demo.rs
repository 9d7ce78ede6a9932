//! `iotjobs-local demo`, the README's main command, run as a user runs it: the real binary
//! starting the service, three real `iotjobsd` daemons and a job. It must exit 0 only when
//! every execution SUCCEEDED, and leave nothing behind on any path (success, failure, SIGINT).
#![cfg(feature = "local")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn demo_cmd(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotjobs-local"));
    cmd.arg("demo")
        .arg("--iotjobsd")
        .arg(env!("CARGO_BIN_EXE_iotjobsd"))
        .arg("--timeout")
        .arg("240")
        // The demo's temporary directory goes under the test's own.
        .env("TMPDIR", tmp)
        .env_remove("RUST_LOG");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The work directory the demo announced.
fn work_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("== work directory "))
        .expect("the demo names its work directory");
    PathBuf::from(line.trim())
}

/// Processes whose command line mentions `needle` (e.g. daemons left running).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

fn assert_nothing_left(work: &Path) {
    assert!(!work.exists(), "{} was not removed", work.display());
    let left = processes_mentioning(&work.display().to_string());
    assert!(left.is_empty(), "processes left running: {left:?}");
}

#[test]
fn demo_runs_every_execution_to_succeeded_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo_cmd(tmp.path()).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("demo: all 3 executions SUCCEEDED"), "{all}");
    for i in 1..=3 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("demo-device-{i} ")))
            .unwrap_or_else(|| panic!("no summary line for demo-device-{i}: {all}"));
        assert!(
            line.contains("SUCCEEDED") && line.contains("printed the payload"),
            "{line}"
        );
    }
    assert_nothing_left(&work_dir(&stdout));
}

#[test]
fn demo_exits_nonzero_when_executions_fail() {
    let tmp = tempfile::tempdir().unwrap();
    // A handler set whose download-file.sh always fails.
    let handlers = tmp.path().join("bad-handlers");
    std::fs::create_dir(&handlers).unwrap();
    let script = handlers.join("download-file.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'no network today' >&2\nexit 10\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = demo_cmd(tmp.path())
        .arg("--handlers")
        .arg(&handlers)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("demo: FAILED: 0 of 3 executions SUCCEEDED"),
        "{all}"
    );
    assert!(stdout.contains("FAILED"), "{all}");
    assert_nothing_left(&work_dir(&stdout));
}

#[test]
fn demo_stops_everything_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo_cmd(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Interrupt once the daemons are up: the point where the most is running.
    let mut work = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the demo did not reach 'devices connected'");
        if let Some(w) = line.strip_prefix("== work directory ") {
            work = Some(PathBuf::from(w.trim()));
        }
        if line.contains("devices connected") {
            break;
        }
    }
    let work = work.expect("the demo names its work directory");
    assert_eq!(processes_mentioning(&work.display().to_string()).len(), 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted demo must not report success"
    );
    assert_nothing_left(&work);
}
