//! The handler scripts in `handlers/`, run for real (`sh handlers/x.sh`) with shims standing in
//! for package managers, service managers and power commands, and a local HTTP server for
//! download-file.sh. Also: shellcheck over every script, and the README's handler table.

#[path = "handlers/harness.rs"]
mod harness;
#[path = "handlers/http_server.rs"]
mod http_server;

#[path = "handlers/download.rs"]
mod download;
#[path = "handlers/health.rs"]
mod health;
#[path = "handlers/packages.rs"]
mod packages;
#[path = "handlers/power.rs"]
mod power;
#[path = "handlers/services.rs"]
mod services;
#[path = "handlers/templates.rs"]
mod templates;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use harness::{handlers_dir, scripts, which, Sandbox};

const EXPECTED: &[&str] = &[
    "download-file.sh",
    "health-check.sh",
    "install-packages.sh",
    "reboot.sh",
    "remove-packages.sh",
    "restart-services.sh",
    "shutdown.sh",
    "start-services.sh",
    "stop-services.sh",
    "verify-packages-installed.sh",
    "verify-packages-removed.sh",
];

#[test]
fn the_handler_set_is_complete_executable_and_strict() {
    let names: Vec<String> = scripts()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, EXPECTED);
    for p in scripts() {
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{}: shebang", p.display());
        assert!(text.contains("\nset -eu\n"), "{}: set -eu", p.display());
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{}: not executable", p.display());
        assert_eq!(mode & 0o022, 0, "{}: group/world writable", p.display());
    }
}

/// The runAsUser handling and messages are copied into every script (each must work alone,
/// as AWS users copy single handlers); this keeps the copies from drifting apart.
#[test]
fn the_common_prologue_is_identical_in_every_script() {
    let prologue = |text: &str| {
        let start = text.find("# --- common prologue").unwrap();
        let end = text.find("# --- end of common prologue ---").unwrap();
        text[start..end].to_owned()
    };
    let first = prologue(&fs::read_to_string(&scripts()[0]).unwrap());
    for p in scripts() {
        assert_eq!(
            prologue(&fs::read_to_string(&p).unwrap()),
            first,
            "{}",
            p.display()
        );
    }
}

#[test]
fn the_readme_table_lists_every_handler_with_its_exit_codes() {
    let readme = fs::read_to_string(handlers_dir().join("README.md")).unwrap();
    for name in EXPECTED {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("README table has no row for {name}"));
        assert!(row.contains("0 "), "{name}: row lists no exit codes: {row}");
    }
    assert!(
        readme.contains("runCommand"),
        "README must document run-command"
    );
}

#[test]
fn shellcheck_passes_on_every_script() {
    let Some(shellcheck) = which("shellcheck") else {
        assert!(
            std::env::var("IOTJOBS_REQUIRE_SHELLCHECK").as_deref() != Ok("1"),
            "IOTJOBS_REQUIRE_SHELLCHECK=1 but shellcheck is not installed"
        );
        eprintln!("note: shellcheck not installed; skipping (apt-get install shellcheck)");
        return;
    };
    let out = Command::new(shellcheck)
        .args(["--shell=sh", "--severity=style"])
        .args(scripts())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_arguments_print_usage_and_exit_2() {
    let sb = Sandbox::new();
    let mut cases: Vec<(&str, Vec<&str>)> = EXPECTED.iter().map(|s| (*s, vec![])).collect();
    cases.extend([
        ("download-file.sh", vec!["", "http://x/y"]),
        ("download-file.sh", vec!["", "ftp://x/y", "/tmp/y"]),
        ("download-file.sh", vec!["", "http://x/y", "/tmp/y", "abc"]),
        (
            "download-file.sh",
            vec!["", "http://x/y", "/tmp/y", "1", "2"],
        ),
        ("install-packages.sh", vec![""]),
        ("install-packages.sh", vec!["", " "]),
        ("install-packages.sh", vec!["", "-o Dpkg::Options::=x curl"]),
        ("remove-packages.sh", vec!["", "--purge"]),
        ("verify-packages-installed.sh", vec!["", "-a"]),
        ("start-services.sh", vec![""]),
        ("stop-services.sh", vec!["", "../x"]),
        ("reboot.sh", vec!["", "soon"]),
        ("reboot.sh", vec!["", "1", "2"]),
        ("shutdown.sh", vec!["", "-1"]),
        ("health-check.sh", vec!["", "--bogus"]),
        ("health-check.sh", vec!["", "--min-free-mb"]),
        ("health-check.sh", vec!["", "--min-mem-mb", "lots"]),
    ]);
    for (script, args) in cases {
        let r = sb.run(script, &args);
        assert_eq!(r.code, 2, "{script} {args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("usage: {script} RUN_AS_USER")),
            "{script} {args:?}: stderr: {}",
            r.stderr
        );
    }
    assert_eq!(
        sb.calls(),
        Vec::<String>::new(),
        "nothing may run on a usage error"
    );
}

#[test]
fn an_unknown_run_as_user_is_refused_with_exit_4() {
    let sb = Sandbox::new();
    sb.shim("apt-get");
    sb.shim("sudo");
    let r = sb.run("install-packages.sh", &["no-such-user-iotjobs", "curl"]);
    r.expect(4);
    assert!(
        r.stderr
            .contains("runAsUser 'no-such-user-iotjobs' does not exist"),
        "{}",
        r.stderr
    );
    assert!(sb.calls().is_empty(), "{:?}", sb.calls());
}

#[test]
fn another_run_as_user_reruns_the_script_with_sudo() {
    if harness::whoami() == "nobody" {
        eprintln!("note: running as nobody; cannot test switching to nobody");
        return;
    }
    let sb = Sandbox::new();
    sb.shim("apt-get");
    sb.shim("sudo");
    let r = sb.run("install-packages.sh", &["nobody", "curl jq"]);
    r.expect(0);
    let script = handlers_dir().join("install-packages.sh");
    assert_eq!(
        sb.calls(),
        [format!(
            "sudo -n -u nobody -- sh {} nobody curl jq",
            script.display()
        )]
    );
}

#[test]
fn another_run_as_user_without_sudo_is_an_error_not_a_silent_success() {
    if harness::whoami() == "nobody" {
        return;
    }
    let sb = Sandbox::new();
    sb.shim("apt-get");
    let r = sb.run("install-packages.sh", &["nobody", "curl"]);
    r.expect(4);
    assert!(r.stderr.contains("sudo is not installed"), "{}", r.stderr);
    assert!(sb.calls().is_empty());
}

#[test]
fn the_current_user_or_an_empty_run_as_user_runs_directly() {
    let me = harness::whoami();
    for user in ["", me.as_str()] {
        let sb = Sandbox::new();
        sb.shim("apt-get");
        sb.shim("sudo");
        sb.run("install-packages.sh", &[user, "curl"]).expect(0);
        let calls = sb.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].starts_with("apt-get install"), "{calls:?}");
    }
}
