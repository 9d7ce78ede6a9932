//! start-services.sh, stop-services.sh, restart-services.sh.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::Sandbox;

#[test]
fn systemctl_is_preferred_and_every_service_is_handled() {
    for action in ["start", "stop", "restart"] {
        for args in [vec!["", "nginx mosquitto"], vec!["", "nginx", "mosquitto"]] {
            let sb = Sandbox::new();
            sb.shim("systemctl");
            sb.shim("service");
            let r = sb.run(&format!("{action}-services.sh"), &args);
            r.expect(0);
            assert_eq!(
                sb.calls(),
                [
                    format!("systemctl {action} nginx"),
                    format!("systemctl {action} mosquitto"),
                ]
            );
        }
    }
}

#[test]
fn service_is_used_when_systemctl_is_missing() {
    for action in ["start", "stop", "restart"] {
        let sb = Sandbox::new();
        sb.shim("service");
        sb.run(&format!("{action}-services.sh"), &["", "nginx mosquitto"])
            .expect(0);
        assert_eq!(
            sb.calls(),
            [
                format!("service nginx {action}"),
                format!("service mosquitto {action}"),
            ]
        );
    }
}

#[test]
fn no_service_manager_is_an_error_not_a_silent_success() {
    for action in ["start", "stop", "restart"] {
        let sb = Sandbox::new();
        let r = sb.run(&format!("{action}-services.sh"), &["", "nginx"]);
        r.expect(3);
        assert!(
            r.stderr
                .contains("neither systemctl nor service is installed"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn a_failing_service_is_reported_after_trying_all_of_them() {
    let sb = Sandbox::new();
    sb.shim_with("systemctl", "[ \"$2\" = bad ] && exit 5\nexit 0\n");
    let r = sb.run("start-services.sh", &["", "a bad c"]);
    r.expect(1);
    assert_eq!(
        sb.calls(),
        [
            "systemctl start a",
            "systemctl start bad",
            "systemctl start c"
        ]
    );
    assert!(
        r.stderr.contains("systemctl bad failed (status 5)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("could not start: bad"), "{}", r.stderr);
}

#[test]
fn stopping_iotjobsd_itself_is_refused_before_anything_stops() {
    for name in ["iotjobsd", "iotjobsd.service"] {
        let sb = Sandbox::new();
        sb.shim("systemctl");
        let r = sb.run("stop-services.sh", &["", &format!("nginx {name}")]);
        r.expect(5);
        assert!(r.stderr.contains("refusing to stop"), "{}", r.stderr);
        assert!(sb.calls().is_empty(), "{:?}", sb.calls());
    }
}

#[test]
fn restarting_iotjobsd_itself_is_queued_last_and_marked_for_the_daemon() {
    let mut sb = Sandbox::new();
    sb.shim("systemctl");
    let marker = sb.path("self-restart");
    sb.env("IOTJOBS_SELF_RESTART_FILE", marker.to_str().unwrap())
        .env("IOTJOBS_JOB_ID", "job-7")
        .env("IOTJOBS_STEP", "2");
    let r = sb.run("restart-services.sh", &["", "iotjobsd nginx"]);
    r.expect(0);
    assert_eq!(
        sb.calls(),
        [
            "systemctl restart nginx",
            "systemctl --no-block restart iotjobsd"
        ]
    );
    let text = fs::read_to_string(&marker).unwrap();
    assert!(text.contains("job job-7 step 2"), "{text}");
}

#[test]
fn restarting_iotjobsd_without_a_marker_file_still_works() {
    let sb = Sandbox::new();
    sb.shim("systemctl");
    sb.run("restart-services.sh", &["", "iotjobsd.service"])
        .expect(0);
    assert_eq!(
        sb.calls(),
        ["systemctl --no-block restart iotjobsd.service"]
    );
}

#[test]
fn iotjobsd_is_not_restarted_when_another_service_failed() {
    let mut sb = Sandbox::new();
    sb.shim_with("systemctl", "[ \"$2\" = bad ] && exit 1\nexit 0\n");
    let marker = sb.path("self-restart");
    sb.env("IOTJOBS_SELF_RESTART_FILE", marker.to_str().unwrap());
    let r = sb.run("restart-services.sh", &["", "iotjobsd bad"]);
    r.expect(1);
    assert_eq!(sb.calls(), ["systemctl restart bad"]);
    assert!(!marker.exists());
    assert!(r.stderr.contains("iotjobsd not restarted"), "{}", r.stderr);
}

#[test]
fn an_unwritable_marker_file_prevents_the_self_restart() {
    let mut sb = Sandbox::new();
    sb.shim("systemctl");
    let marker = sb.path("no/such/dir/marker");
    sb.env("IOTJOBS_SELF_RESTART_FILE", marker.to_str().unwrap());
    let r = sb.run("restart-services.sh", &["", "iotjobsd"]);
    r.expect(5);
    assert!(sb.calls().is_empty(), "{:?}", sb.calls());
}

#[test]
fn with_service_the_self_restart_runs_detached() {
    let sb = Sandbox::new();
    sb.link("setsid");
    sb.shim("service");
    let r = sb.run("restart-services.sh", &["", "iotjobsd"]);
    r.expect(0);
    // Detached: the call lands after the script has exited.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.calls().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sb.calls(), ["service iotjobsd restart"]);
}
