//! Every AWS managed template, with its parameters substituted, through the real binary:
//! `iotjobsd run-job <TEMPLATE> --param ...` runs the shipped handlers (a copy of `handlers/`
//! as `jobs.handler_dir`) with `jobs.handler_path` pointing at recording shims for the system
//! tools, and `iotjobsd validate-job` accepts the rendered document.

#[allow(dead_code)] // the handler tests use more of it
#[path = "handlers/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::RwLock;

use iotjobs::jobs::templates::{find, MANAGED_TEMPLATES};
use serde_json::Value;
use tempfile::TempDir;

/// Every system tool a handler might reach for; each one only records its call, so the
/// complete list of calls shows both what ran and that nothing else did.
const SHIMS: &[&str] = &[
    "apt-get",
    "dnf",
    "yum",
    "zypper",
    "apk",
    "dpkg-query",
    "rpm",
    "systemctl",
    "service",
    "reboot",
    "shutdown",
    "poweroff",
    "curl",
    "wget",
    "sudo",
    // The command the AWS-Run-Command test runs: found only through jobs.handler_path.
    "fw-update",
];

/// Written for writing, read for forking: a child forked while another thread still holds
/// a shim open for writing would make that shim's exec fail with ETXTBSY.
static SPAWN_LOCK: RwLock<()> = RwLock::new(());

struct Device {
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let handlers = root.join("handlers");
        mkdir(&handlers);
        for script in harness::scripts() {
            let to = handlers.join(script.file_name().unwrap());
            write_exe(&to, &fs::read(&script).unwrap());
        }
        let shims = root.join("shims");
        mkdir(&shims);
        let log = root.join("calls.log");
        for name in SHIMS {
            let body = format!(
                "#!/bin/sh\n{{ printf '%s' \"${{0##*/}}\"; for a in \"$@\"; do printf ' %s' \"$a\"; done; printf '\\n'; }} >>'{}'\necho \"shim ${{0##*/}} ran\"\n",
                log.display()
            );
            write_exe(&shims.join(name), body.as_bytes());
        }
        let tools = root.join("tools");
        mkdir(&tools);
        for tool in harness::BASE_TOOLS {
            let real = harness::which(tool).unwrap_or_else(|| panic!("test needs `{tool}`"));
            symlink(real, tools.join(tool)).unwrap();
        }
        let config = root.join("config.toml");
        fs::write(
            &config,
            format!(
                "[jobs]\nhandler_dir = {:?}\nhandler_path = \"{}:{}\"\ndefault_step_timeout_secs = 120\n\n\
                 [paths]\nstate_dir = {:?}\n\n[log]\nfile = \"\"\n",
                handlers,
                shims.display(),
                tools.display(),
                root.join("state"),
            ),
        )
        .unwrap();
        Device { dir, config, log }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn iotjobsd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotjobsd"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        let child = {
            let _guard = SPAWN_LOCK.read().unwrap();
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        child.wait_with_output().unwrap()
    }

    /// `run-job TEMPLATE --param k=v...`: the process output and the final status JSON.
    fn run_template(&self, template: &str, params: &[(&str, &str)]) -> (Output, Value) {
        let mut args = vec!["run-job".to_owned(), template.to_owned()];
        for (k, v) in params {
            args.extend(["--param".to_owned(), format!("{k}={v}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.iotjobsd(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let status: Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "{template}: last stdout line is not the status JSON ({e}):\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, status)
    }

    /// Renders the template as the service would and checks `validate-job` accepts the
    /// document and resolves its program under this configuration; returns validate's stdout.
    fn validate_rendered(&self, template: &str, params: &[(&str, &str)]) -> String {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let doc = find(template).unwrap().render(&params).unwrap();
        let file = self.path(&format!("{template}.json"));
        fs::write(&file, doc).unwrap();
        let out = self.iotjobsd(&["validate-job", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{template}: validate-job failed\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{}: valid\n", file.display())),
            "{stdout}"
        );
        assert!(!stdout.contains("would fail here"), "{template}: {stdout}");
        stdout
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Validates the rendered template, runs it, and asserts it SUCCEEDED.
    fn run_ok(&self, template: &str, params: &[(&str, &str)]) -> Output {
        self.validate_rendered(template, params);
        let (out, status) = self.run_template(template, params);
        assert_eq!(
            status["status"],
            "SUCCEEDED",
            "{template}: {status}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{template}: exit {:?}", out.status);
        out
    }
}

fn mkdir(dir: &Path) {
    fs::create_dir(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

fn write_exe(path: &Path, content: &[u8]) {
    let _guard = SPAWN_LOCK.write().unwrap();
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o755))
        .unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn aws_install_application_installs_each_package_with_apt_get() {
    let dev = Device::new();
    let me = harness::whoami();
    dev.run_ok(
        "AWS-Install-Application",
        &[("packages", "curl jq"), ("runAsUser", &me)],
    );
    assert_eq!(
        dev.calls(),
        ["apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold curl jq"]
    );
}

#[test]
fn aws_remove_application_purges_the_packages() {
    let dev = Device::new();
    dev.run_ok("AWS-Remove-Application", &[("packages", "curl jq")]);
    assert_eq!(dev.calls(), ["apt-get remove -y -q --purge curl jq"]);
}

#[test]
fn aws_start_stop_and_restart_application_drive_systemctl() {
    for (template, verb) in [
        ("AWS-Start-Application", "start"),
        ("AWS-Stop-Application", "stop"),
        ("AWS-Restart-Application", "restart"),
    ] {
        let dev = Device::new();
        dev.run_ok(template, &[("services", "nginx cron")]);
        assert_eq!(
            dev.calls(),
            [
                format!("systemctl {verb} nginx"),
                format!("systemctl {verb} cron")
            ],
            "{template}"
        );
    }
}

#[test]
fn aws_download_file_copies_a_file_url_to_the_destination() {
    let dev = Device::new();
    let src = dev.path("firmware.bin");
    fs::write(&src, b"firmware v2\n").unwrap();
    let dest = dev.path("downloads/fw/firmware.bin");
    let url = format!("file://{}", src.display());
    let out = dev.run_ok(
        "AWS-Download-File",
        &[("downloadUrl", &url), ("filePath", dest.to_str().unwrap())],
    );
    assert_eq!(fs::read(&dest).unwrap(), b"firmware v2\n");
    assert!(
        !dev.path("downloads/fw/firmware.bin.part").exists(),
        "temp file left behind"
    );
    assert!(
        stdout(&out).contains("[Download-File] download-file.sh: downloaded"),
        "{}",
        stdout(&out)
    );
    // A file:// URL needs no downloader (and nothing else ran).
    assert_eq!(dev.calls(), Vec::<String>::new());
}

#[test]
fn aws_reboot_requests_the_reboot() {
    let dev = Device::new();
    // Under run-job the handler gets no IOTJOBS_REBOOT_STATE_DIR, so reboot.sh keeps its
    // idempotency marker in its default place. A marker left by an earlier run before the
    // last boot would make it report "reboot completed" without rebooting: drop that one.
    let marker = PathBuf::from(format!("/var/tmp/iotjobs-reboot-{}/pending", uid()));
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let ours = |text: &str| text.contains("job=run-job execution=1 step=Reboot");
    if let Ok(text) = fs::read_to_string(&marker) {
        if ours(&text) && !text.starts_with(&boot_id) {
            let _ = fs::remove_file(&marker);
        }
    }

    let out = dev.run_ok("AWS-Reboot", &[]);

    let written = fs::read_to_string(&marker).unwrap_or_default();
    if ours(&written) {
        let _ = fs::remove_file(&marker);
    }
    // reboot.sh prefers systemctl only when systemd is the init system.
    let expected = if Path::new("/run/systemd/system").is_dir() {
        "systemctl reboot"
    } else {
        "reboot"
    };
    assert_eq!(dev.calls(), [expected]);
    assert!(
        stdout(&out).contains("[Reboot] reboot.sh: reboot requested"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn aws_run_command_runs_the_command_found_in_the_handler_path() {
    let dev = Device::new();
    let command = r"fw-update,--channel,stable,--note,a\,b c";
    let checked = dev.validate_rendered("AWS-Run-Command", &[("command", command)]);
    assert!(
        checked.contains(&format!(
            "'Run-Command': runs {}",
            dev.path("shims/fw-update").display()
        )),
        "{checked}"
    );
    let out = dev.run_ok("AWS-Run-Command", &[("command", command)]);
    assert_eq!(dev.calls(), ["fw-update --channel stable --note a,b c"]);
    assert!(
        stdout(&out).contains("[Run-Command] shim fw-update ran\n"),
        "{}",
        stdout(&out)
    );
}

/// Keeps this file in step with the catalogue: a new managed template needs a test here.
#[test]
fn every_managed_template_is_covered() {
    let source = include_str!("templates_run_job.rs");
    for t in MANAGED_TEMPLATES {
        assert!(
            source.contains(&format!("\"{}\"", t.name)),
            "{} is not run by this test",
            t.name
        );
    }
}

fn uid() -> String {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
