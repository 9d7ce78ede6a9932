//! The device packages (`packaging/build.sh`): what the .deb and .rpm contain, with which
//! modes and control data, whether the unit verifies, lintian's verdict on the .deb, and
//! a trial install of the .rpm into a scratch root.
//!
//! Building packages takes minutes (cargo-deb, cargo-generate-rpm, a release build), so
//! these tests only run when asked:
//! - `IOTJOBS_PACKAGES_DIR=DIR`: use the packages already built below DIR (CI runs
//!   `packaging/build.sh` first and points this at `target`);
//! - `IOTJOBS_BUILD_PACKAGES=1`: run `packaging/build.sh` once for this test binary.
//!
//! Otherwise every package test prints why it skipped and passes; the checks of the unit
//! and the package metadata against the daemon's defaults (end of file) always run. Tools that may be missing
//! (`rpm`, `lintian`, `systemd-analyze`) skip their test too, unless
//! `IOTJOBS_REQUIRE_PACKAGING_TOOLS=1`, which turns a missing tool into a failure.
//! Nothing here installs into the real system: `dpkg -i`/purge are exercised in the
//! booted-systemd test (`packaging/vm-test.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = "/usr/bin/iotjobsd";
const CONFIG: &str = "/etc/iotjobsd/config.toml";
const HANDLER_DIR: &str = "/usr/libexec/iotjobsd/handlers";
const DOC_DIR: &str = "/usr/share/doc/iotjobsd";
const DEB_UNIT: &str = "/lib/systemd/system/iotjobsd.service";
const RPM_UNIT: &str = "/usr/lib/systemd/system/iotjobsd.service";

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built packages, or `None` (with a note) when this run did not ask for them.
fn packages() -> Option<&'static Packages> {
    static PACKAGES: OnceLock<Option<Packages>> = OnceLock::new();
    PACKAGES
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("IOTJOBS_PACKAGES_DIR") {
                return Some(find_packages(Path::new(&dir)));
            }
            if std::env::var("IOTJOBS_BUILD_PACKAGES").as_deref() == Ok("1") {
                return Some(build_packages());
            }
            None
        })
        .as_ref()
        .or_else(|| {
            eprintln!(
                "skipped: set IOTJOBS_PACKAGES_DIR=target (after packaging/build.sh) or \
                 IOTJOBS_BUILD_PACKAGES=1 to test the packages"
            );
            None
        })
}

fn find_packages(dir: &Path) -> Packages {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    // The packages sit in target/debian and target/generate-rpm; two levels suffice
    // and keep the walk out of target/release's thousands of files.
    for _depth in 0..2 {
        let mut next = Vec::new();
        for d in pending {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    next.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        pending = next;
    }
    let version = env!("CARGO_PKG_VERSION");
    let pick = |prefix: &str, suffix: &str| {
        let matches: Vec<&PathBuf> = found
            .iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
            .collect();
        assert_eq!(
            matches.len(),
            1,
            "expected exactly one {prefix}*{suffix} below {}, found {matches:?}",
            dir.display()
        );
        matches[0].clone()
    };
    Packages {
        deb: pick(&format!("iotjobsd_{version}-"), ".deb"),
        rpm: pick(&format!("iotjobsd-{version}-"), ".rpm"),
    }
}

fn build_packages() -> Packages {
    let out = Command::new("bash")
        .arg(repo().join("packaging/build.sh"))
        .output()
        .expect("run packaging/build.sh");
    assert!(
        out.status.success(),
        "packaging/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "build.sh printed {stdout:?}");
    let abs = |p: &str| repo().join(p);
    Packages {
        deb: abs(lines[lines.len() - 2]),
        rpm: abs(lines[lines.len() - 1]),
    }
}

/// True when `tool` runs; false (skip) when it is missing and not required.
fn have_tool(tool: &str) -> bool {
    let present = Command::new(tool).arg("--version").output().is_ok();
    if !present {
        assert!(
            std::env::var("IOTJOBS_REQUIRE_PACKAGING_TOOLS").as_deref() != Ok("1"),
            "IOTJOBS_REQUIRE_PACKAGING_TOOLS=1 but {tool} is not installed"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    present
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The handler scripts in the repository: every one must be shipped.
fn handler_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("handlers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sh"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no handlers/*.sh in the repository");
    names
}

fn example_dropins() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("systemd/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    names
}

/// Path → permission string (`-rwxr-xr-x`) of every regular file a package must hold.
fn expected_files(unit: &str, deb_extras: bool) -> BTreeMap<String, &'static str> {
    const EXEC: &str = "-rwxr-xr-x";
    const DATA: &str = "-rw-r--r--";
    let mut files = BTreeMap::new();
    files.insert(BIN.to_string(), EXEC);
    for name in handler_names() {
        files.insert(format!("{HANDLER_DIR}/{name}"), EXEC);
    }
    files.insert(CONFIG.to_string(), DATA);
    files.insert(unit.to_string(), DATA);
    files.insert(format!("{DOC_DIR}/README.md"), DATA);
    files.insert(format!("{DOC_DIR}/handlers/README.md"), DATA);
    for name in example_dropins() {
        files.insert(format!("{DOC_DIR}/examples/{name}"), DATA);
    }
    if deb_extras {
        // Generated by cargo-deb; Debian policy requires both.
        files.insert(format!("{DOC_DIR}/copyright"), DATA);
        files.insert(format!("{DOC_DIR}/changelog.Debian.gz"), DATA);
    }
    files
}

/// `dpkg-deb -c` → path → (mode, owner) for regular files.
fn deb_listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').to_string();
            (path, (fields[0].to_string(), fields[1].to_string()))
        })
        .collect()
}

fn extract_deb(deb: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
    root
}

#[test]
fn deb_holds_exactly_the_expected_files_with_their_modes() {
    let Some(p) = packages() else { return };
    let listing = deb_listing(&p.deb);
    let expected = expected_files(DEB_UNIT, true);
    let got: Vec<&String> = listing.keys().collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(got, want, "file list of {}", p.deb.display());
    for (path, (mode, owner)) in &listing {
        assert_eq!(mode, expected[path], "mode of {path}");
        // dpkg-deb prints names or, for cargo-deb's numeric tar headers, ids.
        assert!(
            owner == "root/root" || owner == "0/0",
            "owner of {path}: {owner}"
        );
    }
}

#[test]
fn deb_control_declares_libc_dependency_conffile_and_scripts() {
    let Some(p) = packages() else { return };
    let field = |name: &str| {
        run(Command::new("dpkg-deb").arg("-f").arg(&p.deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "iotjobsd");
    assert!(
        field("Version").starts_with(env!("CARGO_PKG_VERSION")),
        "Version {}",
        field("Version")
    );
    let depends = field("Depends");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    assert!(!field("Maintainer").is_empty());

    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&p.deb)
        .arg("conffiles"));
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), vec![CONFIG]);

    // The maintainer scripts are ours, not generated ones that would start an
    // unconfigured service or stop a running job on upgrade.
    let postinst = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&p.deb)
        .arg("postinst"));
    assert!(postinst.contains("iotjobsd check-config"), "{postinst}");
    assert!(postinst.contains("--no-block try-restart"), "{postinst}");
    let prerm = run(Command::new("dpkg-deb").arg("-I").arg(&p.deb).arg("prerm"));
    assert!(prerm.contains(r#""$1" = "remove""#), "{prerm}");
    let postrm = run(Command::new("dpkg-deb").arg("-I").arg(&p.deb).arg("postrm"));
    assert!(postrm.contains("rm -rf /var/lib/iotjobsd /var/log/iotjobsd"));
}

#[test]
fn deb_ships_the_repository_files_and_a_runnable_daemon() {
    let Some(p) = packages() else { return };
    let root = extract_deb(&p.deb);
    let shipped = |path: &str| std::fs::read(root.path().join(path.trim_start_matches('/')));
    assert_eq!(
        shipped(CONFIG).unwrap(),
        std::fs::read(repo().join("packaging/config.toml")).unwrap(),
        "the conffile is packaging/config.toml"
    );
    assert_eq!(
        shipped(DEB_UNIT).unwrap(),
        std::fs::read(repo().join("systemd/iotjobsd.service")).unwrap()
    );
    for name in handler_names() {
        assert_eq!(
            shipped(&format!("{HANDLER_DIR}/{name}")).unwrap(),
            std::fs::read(repo().join("handlers").join(&name)).unwrap(),
            "{name}"
        );
    }
    let bin = root.path().join(BIN.trim_start_matches('/'));
    let version = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("iotjobsd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unit_in_the_deb_passes_systemd_analyze_verify() {
    let Some(p) = packages() else { return };
    if !have_tool("systemd-analyze") {
        return;
    }
    let root = extract_deb(&p.deb);
    // verify checks that ExecStart= is executable: point it at the packaged binary,
    // since nothing is installed at /usr/bin/iotjobsd on this machine.
    let bin = root.path().join(BIN.trim_start_matches('/'));
    let unit = std::fs::read_to_string(root.path().join(DEB_UNIT.trim_start_matches('/'))).unwrap();
    assert!(unit.contains(&format!("ExecStart={BIN} ")), "{unit}");
    let rewritten = unit.replace(
        &format!("ExecStart={BIN} "),
        &format!("ExecStart={} ", bin.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iotjobsd.service");
    std::fs::write(&path, rewritten).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // verify exits 0 on some warnings; any line about our unit is a finding.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("iotjobsd.service"))
        .collect();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn lintian_finds_no_errors_in_the_deb() {
    let Some(p) = packages() else { return };
    if !have_tool("lintian") {
        return;
    }
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&p.deb)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = stdout.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    // lintian exits non-zero for errors only (its default --fail-on error).
    assert!(
        out.status.success(),
        "lintian failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rpm --qf` over the file list: path → (mode, user:group, flags).
fn rpm_listing(args: &[&str], pkg_arg: &Path) -> BTreeMap<String, (String, String, String)> {
    let mut cmd = Command::new("rpm");
    cmd.args(args).arg("--qf").arg(
        "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags}. %{FILENAMES}\n]",
    );
    cmd.arg(pkg_arg);
    run(&mut cmd)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            (
                fields[3].to_string(),
                (
                    fields[0].to_string(),
                    fields[1].to_string(),
                    fields[2].trim_end_matches('.').to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn rpm_holds_the_same_files_modes_and_a_noreplace_config() {
    let Some(p) = packages() else { return };
    if !have_tool("rpm") {
        return;
    }
    let listing = rpm_listing(&["-qp"], &p.rpm);
    let expected = expected_files(RPM_UNIT, false);
    let got: Vec<&String> = listing.keys().collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(got, want, "file list of {}", p.rpm.display());
    for (path, (mode, owner, flags)) in &listing {
        assert_eq!(mode, expected[path], "mode of {path}");
        assert_eq!(owner, "root:root", "owner of {path}");
        if path == CONFIG {
            assert!(
                flags.contains('c') && flags.contains('n'),
                "{path} must be %config(noreplace), flags {flags:?}"
            );
        } else if path.starts_with(DOC_DIR) {
            assert!(flags.contains('d'), "{path} must be %doc, flags {flags:?}");
        }
    }
    // `rpm -qlp` (the plain listing users run) agrees, directories aside.
    let plain = run(Command::new("rpm").arg("-qlp").arg(&p.rpm));
    for path in expected.keys() {
        assert!(plain.lines().any(|l| l == path), "rpm -qlp lacks {path}");
    }
    let scripts = run(Command::new("rpm").arg("-qp").arg("--scripts").arg(&p.rpm));
    for section in [
        "postinstall scriptlet",
        "preuninstall scriptlet",
        "postuninstall scriptlet",
    ] {
        assert!(scripts.contains(section), "no {section}:\n{scripts}");
    }
    assert!(scripts.contains("iotjobsd check-config"), "{scripts}");
    let requires = run(Command::new("rpm").arg("-qp").arg("--requires").arg(&p.rpm));
    assert!(requires.contains("libc.so.6"), "Requires: {requires}");
}

#[test]
fn rpm_installs_into_a_scratch_root_with_the_same_files() {
    let Some(p) = packages() else { return };
    if !have_tool("rpm") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // The database lives inside the scratch root (rpm prefixes --dbpath with --root).
    let root_arg = root.to_str().unwrap();
    run(Command::new("rpm").args(["--root", root_arg, "--initdb"]));
    run(Command::new("rpm")
        .args(["--root", root_arg, "-i", "--nodeps", "--noscripts"])
        .arg(&p.rpm));
    let installed = rpm_listing(&["--root", root_arg, "-q"], Path::new("iotjobsd"));
    let expected = expected_files(RPM_UNIT, false);
    let got: Vec<&String> = installed.keys().collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(got, want, "installed file list");
    use std::os::unix::fs::PermissionsExt;
    for path in expected.keys() {
        let on_disk = root.join(path.trim_start_matches('/'));
        let meta = std::fs::metadata(&on_disk)
            .unwrap_or_else(|e| panic!("{} not installed: {e}", on_disk.display()));
        let want_mode = if expected[path] == "-rwxr-xr-x" {
            0o755
        } else {
            0o644
        };
        assert_eq!(meta.permissions().mode() & 0o7777, want_mode, "{path}");
    }
    let version = run(Command::new(root.join("usr/bin/iotjobsd")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("iotjobsd {}", env!("CARGO_PKG_VERSION"))
    );
}

// --- The unit and the package metadata against the daemon's defaults (always run) -----

/// `Key=value` settings of the unit, by key (the last one wins, as in systemd).
fn unit_settings() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("systemd/iotjobsd.service")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn seconds(value: &str) -> u64 {
    value
        .strip_suffix('s')
        .unwrap_or(value)
        .parse()
        .unwrap_or_else(|_| panic!("not whole seconds: {value}"))
}

#[test]
fn unit_stop_timeout_covers_the_daemons_shutdown_budget() {
    let unit = unit_settings();
    let jobs = iotjobs::config::JobsConfig::default();
    // With on_shutdown = "finish" the daemon waits stop_timeout_secs for the step, then
    // stops it with kill_grace_secs before SIGKILL; systemd must not SIGKILL first.
    let budget = jobs.stop_timeout_secs + jobs.kill_grace_secs;
    let stop = seconds(&unit["TimeoutStopSec"]);
    assert!(
        stop > budget,
        "TimeoutStopSec={stop}s must exceed stop_timeout_secs + kill_grace_secs = {budget}s"
    );
    // SIGTERM to the daemon alone, so it decides the step's fate.
    assert_eq!(unit["KillMode"], "mixed");
    assert_eq!(unit["Type"], "notify");
    assert_eq!(unit["NotifyAccess"], "main");
    assert!(seconds(&unit["WatchdogSec"]) > 0);
    assert_eq!(unit["Restart"], "on-failure");
}

#[test]
fn unit_directories_match_the_daemons_default_paths() {
    let unit = unit_settings();
    let config = iotjobs::config::Config::default();
    let dir = |key: &str, base: &str| Path::new(base).join(&unit[key]);
    assert_eq!(dir("StateDirectory", "/var/lib"), config.paths.state_dir);
    assert_eq!(dir("RuntimeDirectory", "/run"), config.paths.runtime_dir);
    assert_eq!(
        Some(dir("LogsDirectory", "/var/log").as_path()),
        config.log.file.as_deref().and_then(Path::parent)
    );
    assert_eq!(
        dir("ConfigurationDirectory", "/etc"),
        Path::new(iotjobs::config::DEFAULT_CONFIG_DIR)
    );
    assert_eq!(unit["ExecStart"].split(' ').next(), Some(BIN));
}

#[test]
fn packages_install_handlers_where_the_daemon_looks_for_them() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let metadata = &manifest["package"]["metadata"];
    let handler_dir = iotjobs::config::JobsConfig::default().handler_dir;
    let handler_dir = handler_dir.to_str().unwrap();
    let deb_dest = metadata["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a[0].as_str() == Some("handlers/*.sh"))
        .map(|a| format!("/{}", a[1].as_str().unwrap().trim_end_matches('/')))
        .expect("the .deb ships handlers/*.sh");
    assert_eq!(deb_dest, handler_dir);
    let rpm_dest = metadata["generate-rpm"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"].as_str() == Some("handlers/*.sh"))
        .map(|a| {
            a["dest"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .expect("the .rpm ships handlers/*.sh");
    assert_eq!(rpm_dest, handler_dir);
    assert_eq!(HANDLER_DIR, handler_dir);
    // The device packages are built without the local service.
    assert_eq!(metadata["deb"]["default-features"].as_bool(), Some(false));
}
