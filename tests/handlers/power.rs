//! reboot.sh and shutdown.sh.

use std::fs;

use crate::harness::Sandbox;

/// A sandbox with a fake boot id file and reboot state directory.
fn reboot_sandbox(boot_id: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    let boot = sb.path("boot_id");
    fs::write(&boot, format!("{boot_id}\n")).unwrap();
    let state = sb.path("reboot-state");
    let nosystemd = sb.path("no-systemd");
    sb.env("IOTJOBS_BOOT_ID_FILE", boot.to_str().unwrap())
        .env("IOTJOBS_REBOOT_STATE_DIR", state.to_str().unwrap())
        .env("IOTJOBS_SYSTEMD_DIR", nosystemd.to_str().unwrap());
    sb
}

fn as_daemon_step(sb: &mut Sandbox, job: &str) {
    sb.env("IOTJOBS_JOB_ID", job)
        .env("IOTJOBS_EXECUTION_NUMBER", "1")
        .env("IOTJOBS_STEP", "1")
        .env("IOTJOBS_THING_NAME", "thing-1");
}

fn set_boot_id(sb: &Sandbox, id: &str) {
    fs::write(sb.path("boot_id"), format!("{id}\n")).unwrap();
}

#[test]
fn reboot_uses_systemctl_when_systemd_runs_else_reboot_else_shutdown() {
    // systemd running (its runtime directory exists) and systemctl installed.
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    let sysdir = sb.path("systemd");
    fs::create_dir(&sysdir).unwrap();
    sb.env("IOTJOBS_SYSTEMD_DIR", sysdir.to_str().unwrap());
    sb.shim("systemctl");
    sb.shim("reboot");
    sb.run("reboot.sh", &["root"]).expect(0);
    assert_eq!(sb.calls(), ["systemctl reboot"]);

    // systemctl installed but systemd not running: reboot.
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    sb.shim("systemctl");
    sb.shim("reboot");
    sb.shim("shutdown");
    sb.run("reboot.sh", &[""]).expect(0);
    assert_eq!(sb.calls(), ["reboot"]);

    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    sb.shim("shutdown");
    sb.run("reboot.sh", &[""]).expect(0);
    assert_eq!(sb.calls(), ["shutdown -r now"]);
}

#[test]
fn reboot_without_any_reboot_command_is_exit_3_and_leaves_no_marker() {
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    let r = sb.run("reboot.sh", &[""]);
    r.expect(3);
    assert!(r.stderr.contains("no reboot command found"), "{}", r.stderr);
    assert!(!sb.path("reboot-state/pending").exists());
}

#[test]
fn reboot_is_idempotent_across_the_reboot_by_boot_id() {
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    sb.shim("reboot");
    let r = sb.run("reboot.sh", &[""]);
    r.expect(0);
    assert!(r.stdout.contains("reboot requested"), "{}", r.stdout);
    assert_eq!(sb.calls(), ["reboot"]);

    // Run again in the same boot (the reboot has not happened): request it again.
    sb.run("reboot.sh", &[""]).expect(0);
    assert_eq!(sb.calls(), ["reboot", "reboot"]);

    // After the reboot the same step completes without rebooting again.
    set_boot_id(&sb, "boot-b");
    let r = sb.run("reboot.sh", &[""]);
    r.expect(0);
    assert!(
        r.stdout
            .contains("reboot completed (boot id changed from boot-a to boot-b)"),
        "{}",
        r.stdout
    );
    assert_eq!(sb.calls().len(), 2);
    assert!(!sb.path("reboot-state/pending").exists());
}

#[test]
fn a_marker_from_another_job_does_not_count_as_a_completed_reboot() {
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    sb.shim("reboot");
    sb.run("reboot.sh", &[""]).expect(0);
    set_boot_id(&sb, "boot-b");

    let mut other = reboot_sandbox("boot-b");
    // Same state directory and boot id file as the first sandbox, but another job.
    other
        .env("IOTJOBS_BOOT_ID_FILE", sb.path("boot_id").to_str().unwrap())
        .env(
            "IOTJOBS_REBOOT_STATE_DIR",
            sb.path("reboot-state").to_str().unwrap(),
        );
    as_daemon_step(&mut other, "j2");
    other.shim("reboot");
    let r = other.run("reboot.sh", &[""]);
    r.expect(0);
    assert!(r.stdout.contains("requesting reboot"), "{}", r.stdout);
    assert_eq!(other.calls(), ["reboot"]);
}

#[test]
fn a_failing_reboot_command_is_exit_1_and_clears_the_marker() {
    let mut sb = reboot_sandbox("boot-a");
    as_daemon_step(&mut sb, "j1");
    sb.shim_with("reboot", "echo 'Failed to reboot' >&2\nexit 1\n");
    let r = sb.run("reboot.sh", &[""]);
    r.expect(1);
    assert!(
        r.stderr.contains("'reboot' failed (status 1)"),
        "{}",
        r.stderr
    );
    assert!(!sb.path("reboot-state/pending").exists());
}

#[test]
fn outside_iotjobsd_reboot_waits_to_be_stopped_and_fails_if_it_is_not() {
    let mut sb = reboot_sandbox("boot-a");
    sb.env("IOTJOBS_REBOOT_WAIT", "0");
    sb.shim("reboot");
    let r = sb.run("reboot.sh", &[""]);
    r.expect(1);
    assert!(
        r.stderr.contains("the system is still up after 0 s"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.calls(), ["reboot"]);
}

#[test]
fn an_unreadable_boot_id_is_exit_5() {
    let mut sb = reboot_sandbox("boot-a");
    sb.env("IOTJOBS_BOOT_ID_FILE", "/nonexistent/boot_id");
    sb.shim("reboot");
    sb.run("reboot.sh", &[""]).expect(5);
    assert!(sb.calls().is_empty());
}

#[test]
fn shutdown_schedules_a_power_off_in_one_minute_by_default() {
    let sb = Sandbox::new();
    sb.shim("shutdown");
    sb.shim("poweroff");
    let r = sb.run("shutdown.sh", &[""]);
    r.expect(0);
    assert_eq!(sb.calls(), ["shutdown -h +1"]);
    assert!(r.stdout.contains("scheduled in 1 min"), "{}", r.stdout);

    let sb = Sandbox::new();
    sb.shim("shutdown");
    sb.run("shutdown.sh", &["", "5"]).expect(0);
    assert_eq!(sb.calls(), ["shutdown -h +5"]);
}

#[test]
fn shutdown_now_uses_systemctl_poweroff_shutdown_in_that_order() {
    let mut sb = Sandbox::new();
    let sysdir = sb.path("systemd");
    fs::create_dir(&sysdir).unwrap();
    sb.env("IOTJOBS_SYSTEMD_DIR", sysdir.to_str().unwrap());
    sb.shim("systemctl");
    sb.shim("poweroff");
    sb.run("shutdown.sh", &["", "0"]).expect(0);
    assert_eq!(sb.calls(), ["systemctl poweroff"]);

    let mut sb = Sandbox::new();
    let nodir = sb.path("none");
    sb.env("IOTJOBS_SYSTEMD_DIR", nodir.to_str().unwrap());
    sb.shim("systemctl");
    sb.shim("poweroff");
    sb.shim("shutdown");
    sb.run("shutdown.sh", &["", "0"]).expect(0);
    assert_eq!(sb.calls(), ["poweroff"]);

    let mut sb = Sandbox::new();
    sb.env("IOTJOBS_SYSTEMD_DIR", nodir.to_str().unwrap());
    sb.shim("shutdown");
    sb.run("shutdown.sh", &["", "0"]).expect(0);
    assert_eq!(sb.calls(), ["shutdown -h now"]);
}

#[test]
fn shutdown_without_a_command_is_exit_3() {
    let sb = Sandbox::new();
    sb.shim("poweroff");
    let r = sb.run("shutdown.sh", &[""]);
    r.expect(3);
    assert!(
        r.stderr.contains("shutdown is not installed"),
        "{}",
        r.stderr
    );
    assert!(sb.calls().is_empty());

    let mut sb = Sandbox::new();
    let nodir = sb.path("none");
    sb.env("IOTJOBS_SYSTEMD_DIR", nodir.to_str().unwrap());
    sb.run("shutdown.sh", &["", "0"]).expect(3);
}

#[test]
fn a_failing_shutdown_is_exit_1() {
    let sb = Sandbox::new();
    sb.shim_with("shutdown", "exit 1\n");
    sb.run("shutdown.sh", &[""]).expect(1);
}
