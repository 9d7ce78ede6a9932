//! install-packages.sh, remove-packages.sh, verify-packages-installed.sh,
//! verify-packages-removed.sh: detection order, exact commands, failures.

use crate::harness::Sandbox;

const MANAGERS: &[&str] = &["apt-get", "dnf", "yum", "zypper", "apk"];

const APT_INSTALL: &str =
    "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

fn expected_install(pm: &str) -> String {
    match pm {
        "apt-get" => format!("{APT_INSTALL} curl jq"),
        "dnf" => "dnf install -y curl jq".into(),
        "yum" => "yum install -y curl jq".into(),
        "zypper" => "zypper --non-interactive install curl jq".into(),
        "apk" => "apk add curl jq".into(),
        _ => unreachable!(),
    }
}

fn expected_remove(pm: &str) -> String {
    match pm {
        "apt-get" => "apt-get remove -y -q --purge curl jq".into(),
        "dnf" => "dnf remove -y curl jq".into(),
        "yum" => "yum remove -y curl jq".into(),
        "zypper" => "zypper --non-interactive remove curl jq".into(),
        "apk" => "apk del curl jq".into(),
        _ => unreachable!(),
    }
}

/// For each manager, the sandbox holds it and every manager after it in the detection order:
/// the first one present must be the one used, with the packages as one or several arguments.
#[test]
fn install_and_remove_use_the_first_package_manager_in_detection_order() {
    let me = crate::harness::whoami();
    let arg_sets: Vec<Vec<&str>> = vec![
        vec!["", "curl jq"],
        // runAsUser equal to the current user: no switch.
        vec![me.as_str(), "curl", "jq"],
        vec!["", " curl  jq "],
    ];
    for (i, pm) in MANAGERS.iter().enumerate() {
        for args in &arg_sets {
            for (script, expected) in [
                ("install-packages.sh", expected_install(pm)),
                ("remove-packages.sh", expected_remove(pm)),
            ] {
                let sb = Sandbox::new();
                for later in &MANAGERS[i..] {
                    sb.shim(later);
                }
                let r = sb.run(script, args);
                r.expect(0);
                assert_eq!(sb.calls(), [expected], "{script} {args:?} with {pm}");
                assert!(r.stdout.contains(&format!("with {pm}")), "{}", r.stdout);
            }
        }
    }
}

#[test]
fn apt_get_runs_non_interactive() {
    let sb = Sandbox::new();
    sb.shim("apt-get");
    sb.run("install-packages.sh", &["", "curl"]).expect(0);
    sb.run("remove-packages.sh", &["", "curl"]).expect(0);
    assert_eq!(
        sb.call_envs(),
        [
            "apt-get DEBIAN_FRONTEND=noninteractive",
            "apt-get DEBIAN_FRONTEND=noninteractive"
        ]
    );
}

#[test]
fn no_package_manager_is_a_clear_error_with_exit_3() {
    for script in [
        "install-packages.sh",
        "remove-packages.sh",
        "verify-packages-installed.sh",
        "verify-packages-removed.sh",
    ] {
        let sb = Sandbox::new();
        let r = sb.run(script, &["", "curl"]);
        r.expect(3);
        assert!(
            r.stderr.contains("apt-get, dnf, yum, zypper, apk")
                || r.stderr.contains("dpkg-query, rpm, apk"),
            "{script}: {}",
            r.stderr
        );
    }
}

#[test]
fn apt_get_refreshes_the_package_lists_once_when_install_fails() {
    let sb = Sandbox::new();
    // Fails to install until `apt-get update` has run.
    sb.shim_with(
        "apt-get",
        r#"[ "$1" = update ] && : >"$SHIM_LOG.updated" && exit 0
[ -f "$SHIM_LOG.updated" ] || { echo "E: Unable to locate package curl" >&2; exit 100; }
exit 0
"#,
    );
    let r = sb.run("install-packages.sh", &["", "curl"]);
    r.expect(0);
    assert_eq!(
        sb.calls(),
        [
            format!("{APT_INSTALL} curl"),
            "apt-get update -q".to_owned(),
            format!("{APT_INSTALL} curl"),
        ]
    );
    assert!(
        r.stdout.contains("running apt-get update and trying again"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_failing_package_manager_gives_exit_1_with_its_status() {
    let sb = Sandbox::new();
    sb.shim_with("apt-get", "[ \"$1\" = install ] && exit 100\nexit 0\n");
    let r = sb.run("install-packages.sh", &["", "nosuch"]);
    r.expect(1);
    assert!(
        r.stderr
            .contains("apt-get failed to install nosuch (status 100)"),
        "{}",
        r.stderr
    );
    // install, update, install again: then it gives up.
    assert_eq!(sb.calls().len(), 3, "{:?}", sb.calls());

    let sb = Sandbox::new();
    sb.shim_with("apt-get", "exit 100\n");
    let r = sb.run("install-packages.sh", &["", "curl"]);
    r.expect(1);
    assert!(
        r.stderr.contains("apt-get update failed (status 100)"),
        "{}",
        r.stderr
    );

    let sb = Sandbox::new();
    sb.shim_with("dnf", "exit 1\n");
    let r = sb.run("remove-packages.sh", &["", "curl"]);
    r.expect(1);
    assert!(
        r.stderr.contains("dnf failed to remove curl (status 1)"),
        "{}",
        r.stderr
    );
}

/// Package databases: SHIM_INSTALLED and SHIM_CONFIG_FILES (space-separated) say what exists.
fn database_shims(sb: &Sandbox, tool: &str) {
    let body = match tool {
        "dpkg-query" => {
            r#"for p; do :; done
case " $SHIM_INSTALLED " in *" $p "*) echo installed; exit 0;; esac
case " ${SHIM_CONFIG_FILES:-} " in *" $p "*) echo config-files; exit 0;; esac
echo "dpkg-query: no packages found matching $p" >&2; exit 1
"#
        }
        "rpm" | "apk" => {
            r#"for p; do :; done
case " $SHIM_INSTALLED " in *" $p "*) exit 0;; esac
exit 1
"#
        }
        _ => unreachable!(),
    };
    sb.shim_with(tool, body);
}

#[test]
fn verify_installed_checks_every_package_with_the_right_database() {
    for (tools, expected) in [
        (
            &["dpkg-query", "rpm", "apk"][..],
            "dpkg-query -W -f=${db:Status-Status}\\n",
        ),
        (&["rpm", "apk"][..], "rpm -q --quiet"),
        (&["apk"][..], "apk info -e"),
    ] {
        let mut sb = Sandbox::new();
        for t in tools {
            database_shims(&sb, t);
        }
        sb.env("SHIM_INSTALLED", "curl")
            .env("SHIM_CONFIG_FILES", "jq");
        let r = sb.run("verify-packages-installed.sh", &["", "curl jq wget"]);
        r.expect(1);
        assert_eq!(
            sb.calls(),
            [
                format!("{expected} curl"),
                format!("{expected} jq"),
                format!("{expected} wget"),
            ]
        );
        assert!(r.stdout.contains("curl: installed"), "{}", r.stdout);
        assert!(r.stdout.contains("jq: NOT installed"), "{}", r.stdout);
        assert!(r.stderr.contains("not installed: jq wget"), "{}", r.stderr);

        sb.run("verify-packages-installed.sh", &["", "curl"])
            .expect(0);
    }
}

#[test]
fn verify_removed_fails_on_installed_packages_and_accepts_config_files_leftovers() {
    for tool in ["dpkg-query", "rpm", "apk"] {
        let mut sb = Sandbox::new();
        database_shims(&sb, tool);
        sb.env("SHIM_INSTALLED", "curl")
            .env("SHIM_CONFIG_FILES", "jq");
        let r = sb.run("verify-packages-removed.sh", &["", "jq", "wget"]);
        r.expect(0);
        assert!(r.stdout.contains("jq: not installed"), "{}", r.stdout);
        let r = sb.run("verify-packages-removed.sh", &["", "jq curl wget"]);
        r.expect(1);
        assert!(r.stdout.contains("curl: STILL installed"), "{}", r.stdout);
        assert!(r.stderr.contains("still installed: curl"), "{}", r.stderr);
        // Every package is checked even after a failure.
        assert_eq!(sb.calls().len(), 5, "{tool}: {:?}", sb.calls());
    }
}
