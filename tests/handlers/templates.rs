//! Every AWS managed template, rendered with `iotjobs::jobs::templates`, calls a shipped
//! handler with the arguments it expects: the action's handler and args are run the way the
//! engine runs them (`[handler, runAsUser, args...]`), with shims for the system tools.
//! (Running the same documents through `iotjobsd run-job` is the engine's test.)

use std::collections::BTreeMap;
use std::fs;

use iotjobs::jobs::templates::{find, MANAGED_TEMPLATES};
use serde_json::Value;

use crate::harness::{Run, Sandbox};
use crate::http_server::{Route, Server};

fn render(name: &str, params: &[(&str, &str)]) -> Value {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let doc = find(name).unwrap().render(&params).unwrap();
    serde_json::from_str(&doc).unwrap()
}

/// Runs the document's single runHandler step in the sandbox, as the engine would.
fn run_step(sb: &Sandbox, doc: &Value) -> Run {
    let action = &doc["steps"][0]["action"];
    assert_eq!(action["type"], "runHandler");
    let handler = action["input"]["handler"].as_str().unwrap();
    let mut argv = vec![action["runAsUser"].as_str().unwrap().to_owned()];
    if let Some(args) = action["input"]["args"].as_array() {
        argv.extend(args.iter().map(|a| a.as_str().unwrap().to_owned()));
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    sb.run(handler, &argv)
}

#[test]
fn package_and_service_templates_drive_the_right_tools() {
    const APT: &str = "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
    let cases: [(&str, &str, Vec<String>); 5] = [
        (
            "AWS-Install-Application",
            "packages",
            vec![format!("{APT} curl jq")],
        ),
        (
            "AWS-Remove-Application",
            "packages",
            vec!["apt-get remove -y -q --purge curl jq".into()],
        ),
        (
            "AWS-Start-Application",
            "services",
            vec!["systemctl start curl".into(), "systemctl start jq".into()],
        ),
        (
            "AWS-Stop-Application",
            "services",
            vec!["systemctl stop curl".into(), "systemctl stop jq".into()],
        ),
        (
            "AWS-Restart-Application",
            "services",
            vec![
                "systemctl restart curl".into(),
                "systemctl restart jq".into(),
            ],
        ),
    ];
    for (template, key, expected) in cases {
        let sb = Sandbox::new();
        sb.shim("apt-get");
        sb.shim("systemctl");
        let doc = render(template, &[(key, "curl jq")]);
        run_step(&sb, &doc).expect(0);
        assert_eq!(sb.calls(), expected, "{template}");
    }
}

#[test]
fn aws_download_file_downloads_with_the_templates_argument_order() {
    let sb = Sandbox::with_tools(&["curl"]);
    let server = Server::start();
    server.route(
        "/index.html",
        Route {
            body: b"<html>hi</html>\n".to_vec(),
            ..Route::default()
        },
    );
    let dest = sb.path("www/index.html");
    let doc = render(
        "AWS-Download-File",
        &[
            ("downloadUrl", &server.url("/index.html")),
            ("filePath", dest.to_str().unwrap()),
        ],
    );
    run_step(&sb, &doc).expect(0);
    assert_eq!(fs::read(&dest).unwrap(), b"<html>hi</html>\n");
}

#[test]
fn aws_reboot_requests_a_reboot() {
    let mut sb = Sandbox::new();
    fs::write(sb.path("boot_id"), "boot-a\n").unwrap();
    let boot = sb.path("boot_id");
    let state = sb.path("state");
    let nosd = sb.path("no-systemd");
    sb.env("IOTJOBS_BOOT_ID_FILE", boot.to_str().unwrap())
        .env("IOTJOBS_REBOOT_STATE_DIR", state.to_str().unwrap())
        .env("IOTJOBS_SYSTEMD_DIR", nosd.to_str().unwrap())
        .env("IOTJOBS_JOB_ID", "reboot-1")
        .env("IOTJOBS_EXECUTION_NUMBER", "1")
        .env("IOTJOBS_STEP", "1");
    sb.shim("reboot");
    let doc = render("AWS-Reboot", &[]);
    run_step(&sb, &doc).expect(0);
    assert_eq!(sb.calls(), ["reboot"]);
}

#[test]
fn every_run_handler_template_names_a_shipped_handler() {
    for t in MANAGED_TEMPLATES {
        let doc: Value = serde_json::from_str(t.document).unwrap();
        let action = &doc["steps"][0]["action"];
        if action["type"] == "runCommand" {
            // AWS-Run-Command: the engine's runCommand, no script.
            continue;
        }
        let handler = action["input"]["handler"].as_str().unwrap();
        assert!(
            crate::harness::handlers_dir().join(handler).is_file(),
            "{}: {handler} missing",
            t.name
        );
    }
}
