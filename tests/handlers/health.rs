//! health-check.sh with a fake /proc (IOTJOBS_HEALTH_PROC).

use std::fs;

use crate::harness::Sandbox;

fn sandbox(mem_available_kb: u64, load: &str, cpus: usize) -> Sandbox {
    let mut sb = Sandbox::new();
    let proc_dir = sb.path("proc");
    fs::create_dir(&proc_dir).unwrap();
    fs::write(
        proc_dir.join("meminfo"),
        format!("MemTotal: 1000000 kB\nMemFree: 1000 kB\nMemAvailable: {mem_available_kb} kB\n"),
    )
    .unwrap();
    fs::write(
        proc_dir.join("loadavg"),
        format!("{load} 0.50 0.40 1/100 4242\n"),
    )
    .unwrap();
    let cpuinfo: String = (0..cpus)
        .map(|i| format!("processor\t: {i}\nmodel name\t: test\n\n"))
        .collect();
    fs::write(proc_dir.join("cpuinfo"), cpuinfo).unwrap();
    sb.env("IOTJOBS_HEALTH_PROC", proc_dir.to_str().unwrap());
    sb
}

#[test]
fn a_healthy_device_passes_every_check() {
    let sb = sandbox(512 * 1024, "0.25", 2);
    let r = sb.run("health-check.sh", &["", "--min-free-mb", "0"]);
    r.expect(0);
    assert!(r.stdout.contains("ok: disk /:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("ok: memory: 512 MiB available"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("ok: load: 0.25 on 2 CPU(s) (maximum 8)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("healthy"), "{}", r.stdout);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let sb = sandbox(10 * 1024, "9.50", 2);
    sb.shim_with("systemctl", "[ \"$3\" = up ] && exit 0\nexit 3\n");
    let r = sb.run(
        "health-check.sh",
        &[
            "",
            "--min-free-mb",
            "1099511627776",
            "--min-mem-mb",
            "64",
            "up down",
        ],
    );
    r.expect(1);
    for reason in [
        "disk /: only",
        "memory: only 10 MiB available (minimum 64)",
        "load: 9.50 on 2 CPU(s) is above 8",
        "service down: not active",
    ] {
        assert!(
            r.stderr.contains(reason),
            "missing '{reason}' in:\n{}",
            r.stderr
        );
    }
    assert!(r.stdout.contains("ok: service up: active"), "{}", r.stdout);
    assert_eq!(
        sb.calls(),
        [
            "systemctl is-active --quiet up",
            "systemctl is-active --quiet down"
        ]
    );
}

#[test]
fn the_load_limit_scales_with_the_cpu_count() {
    let sb = sandbox(512 * 1024, "9.50", 4);
    sb.run("health-check.sh", &["", "--min-free-mb", "0"])
        .expect(0);
    let sb = sandbox(512 * 1024, "1.01", 1);
    let r = sb.run(
        "health-check.sh",
        &["", "--min-free-mb", "0", "--max-load-per-cpu", "1"],
    );
    r.expect(1);
    assert!(
        r.stderr.contains("load: 1.01 on 1 CPU(s) is above 1"),
        "{}",
        r.stderr
    );
}

#[test]
fn services_fall_back_to_service_and_need_a_tool() {
    let sb = sandbox(512 * 1024, "0.10", 1);
    sb.shim("service");
    sb.run("health-check.sh", &["", "--min-free-mb", "0", "mosquitto"])
        .expect(0);
    assert_eq!(sb.calls(), ["service mosquitto status"]);

    let sb = sandbox(512 * 1024, "0.10", 1);
    let r = sb.run("health-check.sh", &["", "--min-free-mb", "0", "mosquitto"]);
    r.expect(3);
    assert!(
        r.stderr.contains("neither systemctl nor service"),
        "{}",
        r.stderr
    );
}

#[test]
fn extra_paths_are_checked_and_a_missing_one_is_a_problem() {
    let sb = sandbox(512 * 1024, "0.10", 1);
    let r = sb.run(
        "health-check.sh",
        &["", "--min-free-mb", "0", "--path", "/nonexistent/iotjobs"],
    );
    r.expect(1);
    assert!(
        r.stderr
            .contains("disk: cannot read free space of /nonexistent/iotjobs"),
        "{}",
        r.stderr
    );
}
