//! `iotjobsd run-job` and `iotjobsd validate-job` with the real binary, real handler
//! scripts in a temporary handler directory and a configuration file pointing at it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tempfile::TempDir;

struct Env {
    dir: TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let handlers = dir.path().join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        std::fs::set_permissions(&handlers, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[jobs]\nhandler_dir = {:?}\ndefault_step_timeout_secs = 60\n\n[paths]\nstate_dir = {:?}\n\n[log]\nfile = \"\"\n",
                handlers,
                dir.path().join("state")
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    fn handler(&self, name: &str, body: &str) {
        let path = self.dir.path().join("handlers").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn document(&self, doc: &Value) -> PathBuf {
        let path = self.dir.path().join("job.json");
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        path
    }

    fn iotjobsd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_iotjobsd"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn run_job(&self, doc: &Path, extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["run-job", doc.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.iotjobsd(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let status: Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "last stdout line is not the status JSON ({e}):\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, status)
    }
}

fn handler_step(name: &str, handler: &str, args: &[&str]) -> Value {
    json!({"action": {"name": name, "type": "runHandler",
        "input": {"handler": handler, "args": args, "path": "default"}}})
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_job_prints_step_output_live_and_the_final_status() {
    let env = Env::new();
    env.handler(
        "greet.sh",
        r#"shift; echo "hello $1"; echo "step $IOTJOBS_STEP" "#,
    );
    env.handler("count.sh", "echo one; echo two >&2; echo three");
    let doc = env.document(&json!({"version": "1.0", "includeStdOut": true, "steps": [
        handler_step("Greet", "greet.sh", &["world"]),
        handler_step("Count", "count.sh", &[])
    ]}));
    let (out, status) = env.run_job(&doc, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("[Greet] hello world\n"), "{printed}");
    assert!(printed.contains("[Greet] step Greet\n"), "{printed}");
    assert!(
        printed.contains("[Count] one\n[Count] three\n"),
        "{printed}"
    );
    assert!(stderr(&out).contains("[Count] two\n"));
    assert!(stderr(&out).contains("==> step 2/2 Count"));
    assert_eq!(status["status"], "SUCCEEDED");
    assert_eq!(status["statusDetails"]["reason"], "all 2 steps succeeded");
    assert_eq!(
        status["statusDetails"]["stdout"],
        "hello world step Greet one three"
    );
    assert_eq!(status["statusDetails"]["stderr"], "two");
}

#[test]
fn run_job_reports_a_failing_step_and_runs_its_rollback() {
    let env = Env::new();
    let log = env.dir.path().join("ran.log");
    env.handler("ok.sh", &format!("echo \"$0 $2\" >> {}", log.display()));
    env.handler("fail.sh", "echo 'disk full' >&2; exit 4");
    let mut first = handler_step("Prepare", "ok.sh", &["prepare"]);
    first["rollback"] = handler_step("Unprepare", "ok.sh", &["unprepare"]);
    let doc = env.document(&json!({"version": "1.0", "steps": [
        first,
        handler_step("Install", "fail.sh", &[]),
        handler_step("Never", "ok.sh", &["never"])
    ], "finalStep": handler_step("Final", "ok.sh", &["final"])}));
    let (out, status) = env.run_job(&doc, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status["status"], "FAILED");
    assert_eq!(
        status["statusDetails"]["reason"],
        "step 'Install' exited with status 4"
    );
    assert_eq!(status["statusDetails"]["stderr"], "disk full");
    assert_eq!(
        status["statusDetails"]["rollback"],
        "1 rollback step succeeded"
    );
    assert!(
        status["statusDetails"].get("stdout").is_none(),
        "no includeStdOut"
    );
    let ran = std::fs::read_to_string(&log).unwrap();
    let args: Vec<&str> = ran.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(args, ["prepare", "unprepare"]);
}

#[test]
fn run_job_substitutes_parameters() {
    let env = Env::new();
    env.handler("echo.sh", "shift; echo \"$@\"");
    let doc = env.document(
        &json!({"version": "1.0", "includeStdOut": "true", "steps": [
            handler_step("Echo", "echo.sh", &["${aws:iot:parameter:message}"])
        ]}),
    );
    let (out, status) = env.run_job(&doc, &["--param", "message=quoted \"text\" here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status["statusDetails"]["stdout"], "quoted \"text\" here");

    let missing = env.iotjobsd(&["run-job", doc.to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("message"), "{}", stderr(&missing));
}

#[test]
fn run_job_runs_an_aws_managed_template_by_name() {
    let env = Env::new();
    let (out, status) = env.run_job(
        Path::new("AWS-Run-Command"),
        &["--param", "command=echo,from a template"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("[Run-Command] from a template\n"));
    assert_eq!(status["status"], "SUCCEEDED");
}

#[test]
fn run_job_rejects_an_invalid_document_without_running_anything() {
    let env = Env::new();
    let marker = env.dir.path().join("ran");
    env.handler("touch.sh", &format!("touch {}", marker.display()));
    let doc = env.document(&json!({"version": "1.0", "steps": [
        handler_step("Touch", "touch.sh", &[]),
        {"action": {"name": "NoInput", "type": "runHandler"}}
    ]}));
    let (out, status) = env.run_job(&doc, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(status["status"], "REJECTED");
    let reason = status["statusDetails"]["reason"].as_str().unwrap();
    assert!(reason.contains("steps[1].action.input"), "{reason}");
    assert!(!marker.exists());
}

#[test]
fn run_job_refuses_a_handler_outside_the_handler_directory() {
    let env = Env::new();
    let doc = env.document(&json!({"version": "1.0", "steps": [
        handler_step("Escape", "../config.toml", &[])
    ]}));
    let (out, status) = env.run_job(&doc, &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        matches!(status["status"].as_str(), Some("REJECTED" | "FAILED")),
        "{status}"
    );
}

#[test]
fn validate_job_prints_the_plan_or_every_problem() {
    let env = Env::new();
    env.handler("install.sh", "exit 0");
    let mut step = handler_step("Install", "install.sh", &["wget"]);
    step["action"]["ignoreStepFailure"] = json!("true");
    step["timeoutSeconds"] = json!(30);
    let doc = env.document(&json!({"version": "1.0", "steps": [step],
        "finalStep": {"action": {"name": "List", "type": "runCommand",
                                  "input": {"command": "ls,-la,/tmp"}}}}));
    let out = env.iotjobsd(&["validate-job", doc.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("valid"), "{printed}");
    assert!(
        printed.contains("step 1/2: 'Install' runs handler install.sh in handler directory \"wget\", failure ignored, timeout 30 s"),
        "{printed}"
    );
    assert!(
        printed.contains("step 2/2 (finalStep): 'List' runs command \"ls\" \"-la\" \"/tmp\""),
        "{printed}"
    );

    let bad = env.document(&json!({"version": "1.0", "steps": [
        {"action": {"name": "", "type": "runCommand", "input": {"command": "ls"}}},
        {"action": {"name": "b", "type": "runHandler", "input": {"handler": 7}}}
    ]}));
    let out = env.iotjobsd(&["validate-job", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let problems = stderr(&out);
    assert!(problems.contains("steps[0].action.name"), "{problems}");
    assert!(
        problems.contains("steps[1].action.input.handler"),
        "{problems}"
    );
}
