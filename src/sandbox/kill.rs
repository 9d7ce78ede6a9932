//! Stopping a step: SIGTERM to its whole process group, a grace period, then SIGKILL,
//! until no live process of the group is left.
//!
//! Membership is read from `/proc/<pid>/stat` (process group field) rather than probed
//! with `kill(-pgid, 0)`, because zombies still count for `kill` and orphaned zombies
//! may linger when PID 1 does not reap (containers); `kill(-pgid, 0)` failing with ESRCH
//! is only used as the fast "nothing left" answer. The limit of process groups: a
//! process that calls `setsid()` or `setpgid()` itself leaves the group and is not
//! stopped; such a process must be managed by systemd, not by a job step.

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long to wait for SIGKILLed processes to disappear (only a process stuck in
/// uninterruptible sleep takes longer).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a group was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupStop {
    /// No live process was left in the group.
    AlreadyGone,
    /// Every process exited within the grace period after SIGTERM.
    Terminated,
    /// SIGKILL was needed.
    Killed,
}

/// The pids of live (not zombie) processes in process group `pgid`.
pub(crate) fn live_group_members(pgid: i32) -> Vec<i32> {
    if pgid <= 1 {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(state, pg)| pg == pgid && state != 'Z' && state != 'X')
        })
        .collect()
}

/// (state, process group) from the text of `/proc/<pid>/stat`. The command name may
/// contain spaces and parentheses, so fields are counted from the last ')'.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

fn signal_group(pgid: i32, sig: Signal) {
    // 0 would mean our own group and 1 is init's: never a step's group.
    if pgid <= 1 {
        return;
    }
    // ESRCH (group already gone) is the expected race; nothing else can fail for a
    // group we created as root or as its owner.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// Sends SIGKILL to the group right away (used when a step is abandoned).
pub(crate) fn kill_group_now(pgid: i32) {
    signal_group(pgid, Signal::SIGKILL);
}

async fn wait_empty(pgid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if live_group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Stops every live process of group `pgid`: SIGTERM (and SIGCONT, so stopped
/// processes can act on it), up to `grace` for them to exit, then SIGKILL.
pub(crate) async fn stop_group(pgid: i32, grace: Duration) -> GroupStop {
    // Fast path for the usual case (the step left nothing behind): signal 0 to the group
    // fails with ESRCH when no process, not even a zombie, is in it. This spares every
    // step a scan of all of /proc (several ms on a busy machine).
    if pgid <= 1 || killpg(Pid::from_raw(pgid), None) == Err(nix::errno::Errno::ESRCH) {
        return GroupStop::AlreadyGone;
    }
    if live_group_members(pgid).is_empty() {
        return GroupStop::AlreadyGone;
    }
    signal_group(pgid, Signal::SIGTERM);
    signal_group(pgid, Signal::SIGCONT);
    if wait_empty(pgid, grace).await {
        return GroupStop::Terminated;
    }
    signal_group(pgid, Signal::SIGKILL);
    if !wait_empty(pgid, KILL_WAIT).await {
        tracing::warn!(
            pgid,
            pids = ?live_group_members(pgid),
            "processes survived SIGKILL (uninterruptible sleep?)"
        );
    }
    GroupStop::Killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        assert_eq!(
            parse_stat("123 (a b) c) S 1 456 456 0 -1 4194560 ..."),
            Some(('S', 456))
        );
        assert_eq!(parse_stat("9 (z) Z 1 9 9"), Some(('Z', 9)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_group_has_this_process() {
        let pgid = nix::unistd::getpgrp().as_raw();
        let me = std::process::id() as i32;
        assert!(live_group_members(pgid).contains(&me));
    }
}
