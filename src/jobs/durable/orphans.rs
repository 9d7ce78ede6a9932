//! Steps orphaned by a crash of the daemon. Under systemd a `kill -9` of iotjobsd takes
//! the step with it (the unit's control group is killed); elsewhere the step's process
//! group runs on, and would run beside the step's re-run after the restart.
//!
//! The step's processes are found by their environment, not by a recorded pid: each step
//! gets `IOTJOBS_SELF_RESTART_FILE=<state_dir>/self-restart/<job>.<execution>.step-<n>`,
//! unique to the state directory, the job execution and the step, and inherited by its
//! children. A process with that exact entry is that step's (a reused pid carries another
//! environment), so there is no pid reuse to guard against and nothing extra to journal
//! on the path that starts a step. The process groups of the processes found are killed
//! (SIGKILL), as the sandbox stops a step: by process group. A descendant that left the
//! group and cleared its environment is not found (as the sandbox does not stop it).
//!
//! Owns: finding and killing those groups. Must not decide whether a step runs again.

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::sandbox::parse_stat;

/// The environment variable that identifies a step's processes.
pub const STEP_ENV: &str = "IOTJOBS_SELF_RESTART_FILE";
/// How long to wait for killed processes to be gone (only a process stuck in
/// uninterruptible sleep takes longer).
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// Kills the process groups of live processes whose environment holds `STEP_ENV=value`
/// and waits for them to be gone; returns the groups killed.
pub fn kill_step_groups(value: &str) -> Vec<i32> {
    let needle = format!("{STEP_ENV}={value}");
    let own_group = nix::unistd::getpgrp().as_raw();
    let own_pid = std::process::id() as i32;
    let mut groups: Vec<i32> = pids()
        .filter(|&pid| pid != own_pid && has_env(pid, needle.as_bytes()))
        .filter_map(live_group)
        .filter(|&pgid| pgid > 1 && pgid != own_group)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + KILL_WAIT;
    while !groups.is_empty() && Instant::now() < deadline {
        let left = pids().any(|pid| live_group(pid).is_some_and(|g| groups.contains(&g)));
        if !left {
            break;
        }
        std::thread::sleep(POLL);
    }
    groups
}

fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// True when `/proc/<pid>/environ` holds the entry `needle` exactly.
fn has_env(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == needle))
}

/// The process group of `pid` when it is alive (not a zombie).
fn live_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, pgrp) = parse_stat(&stat)?;
    (state != 'Z' && state != 'X').then_some(pgrp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn only_the_group_of_processes_with_the_exact_entry_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("self-restart/j.1.step-0");
        let spawn = |value: &std::path::Path| {
            let mut cmd = Command::new("/bin/sh");
            // A child of the step in the same group, as a handler's children are.
            cmd.args(["-c", "sleep 60 & wait"])
                .env(STEP_ENV, value)
                .process_group(0);
            cmd.spawn().unwrap()
        };
        let mut step = spawn(&marker);
        let mut other = spawn(&dir.path().join("self-restart/j.1.step-1"));
        let step_pid = step.id() as i32;
        // Wait until the shell's child exists (its group has two members).
        let deadline = Instant::now() + Duration::from_secs(60);
        while pids().filter(|&p| live_group(p) == Some(step_pid)).count() < 2 {
            assert!(Instant::now() < deadline, "the step's child never started");
            std::thread::sleep(POLL);
        }

        let killed = kill_step_groups(&marker.to_string_lossy());
        assert_eq!(killed, vec![step_pid]);
        assert!(!pids().any(|p| live_group(p) == Some(step_pid)));
        assert!(step.wait().unwrap().code().is_none(), "killed by a signal");
        assert_eq!(
            other.try_wait().unwrap(),
            None,
            "another step's process lives"
        );
        let _ = killpg(Pid::from_raw(other.id() as i32), Signal::SIGKILL);
        let _ = other.wait();
    }
}
