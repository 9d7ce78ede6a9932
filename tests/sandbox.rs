//! The handler sandbox with real processes in temporary directories: exit codes and
//! reasons, signals, timeouts and cancellation that leave no process behind, handler
//! refusals, the environment and descriptors a step gets, bounded output capture, and
//! native user switching (when the tests run as root, as in CI).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use iotjobs::sandbox::{
    work_root, HandlerDir, LineSink, OutputLine, Program, Sandbox, SandboxConfig, SandboxError,
    StepOutcome, StepRequest, Stream, Termination, STEP_PATH,
};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single step in these tests; a hang fails instead of blocking CI.
const STEP_DEADLINE: Duration = Duration::from_secs(180);

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    handlers: PathBuf,
    state: PathBuf,
    // Last: released after the temporary directory is gone.
    _process: ProcessGuard,
}

/// Tests that observe something process-wide run alone in this test process: peak
/// memory (VmHWM counts every concurrent test), and log capture with a thread-local
/// subscriber (tracing caches each callsite's interest process-wide, so another test
/// logging through the same callsites at the same time decides what is captured).
/// They hold this lock for writing; every other test holds it for reading.
static PROCESS: RwLock<()> = RwLock::new(());

#[allow(dead_code)] // held for its Drop
enum ProcessGuard {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

impl Fixture {
    fn new() -> Self {
        let guard = PROCESS.read().unwrap_or_else(PoisonError::into_inner);
        Self::with_guard(ProcessGuard::Shared(guard))
    }

    /// A fixture for a test that must run alone in the process (see [`PROCESS`]).
    fn alone() -> Self {
        let guard = PROCESS.write().unwrap_or_else(PoisonError::into_inner);
        Self::with_guard(ProcessGuard::Alone(guard))
    }

    fn with_guard(process: ProcessGuard) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        // Searchable for other users (the user-switch test runs handlers as one).
        chmod(&root, 0o755);
        let handlers = root.join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        chmod(&handlers, 0o755);
        let state = root.join("state");
        std::fs::create_dir(&state).unwrap();
        Fixture {
            _process: process,
            _tmp: tmp,
            root,
            handlers,
            state,
        }
    }

    fn config(&self) -> SandboxConfig {
        SandboxConfig {
            handler_dir: self.handlers.clone(),
            allowed_handler_dirs: Vec::new(),
            allowed_users: Vec::new(),
            handlers_switch_user: false,
            kill_grace: Duration::from_secs(1),
            max_open_files: 0,
            max_processes: 0,
            work_root: work_root(&self.state),
            step_path: STEP_PATH.into(),
        }
    }

    fn sandbox(&self) -> Sandbox {
        Sandbox::new(self.config())
    }

    /// Writes an executable script into the handler directory.
    fn handler(&self, name: &str, body: &str) -> PathBuf {
        write_file(&self.handlers.join(name), body, 0o755)
    }

    /// A fresh, empty directory under the fixture (mode 0755).
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o755);
        d
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write_file(path: &Path, body: &str, mode: u32) -> PathBuf {
    std::fs::write(path, body).unwrap();
    chmod(path, mode);
    path.to_path_buf()
}

fn handler(name: &str) -> Program {
    Program::Handler {
        name: name.into(),
        dir: HandlerDir::Default,
    }
}

fn command(argv: &[&str]) -> Program {
    Program::Command(argv.iter().map(|s| s.to_string()).collect())
}

fn request(program: Program) -> StepRequest {
    StepRequest {
        job_id: "job-1".into(),
        execution_number: 7,
        step_index: 1,
        step_name: "Install".into(),
        thing_name: "thing-a".into(),
        program,
        args: Vec::new(),
        run_as_user: None,
        timeout: Duration::from_secs(120),
        extra_env: Vec::new(),
    }
}

async fn run_with(
    sandbox: &Sandbox,
    req: &StepRequest,
    sink: Option<LineSink>,
    cancel: &CancellationToken,
) -> StepOutcome {
    tokio::time::timeout(STEP_DEADLINE, sandbox.run_step(req, sink, cancel))
        .await
        .expect("step did not finish within the test deadline")
}

async fn run(sandbox: &Sandbox, req: &StepRequest) -> StepOutcome {
    run_with(sandbox, req, None, &CancellationToken::new()).await
}

fn refusal(outcome: &StepOutcome) -> &SandboxError {
    match &outcome.termination {
        Termination::SpawnFailed(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// (state, pgid) of a process, read independently of the sandbox's own code.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f[0].chars().next()?, f[2].parse().ok()?))
}

/// A process that is still running (zombies have released everything but their pid).
fn running(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Running processes whose process group is `pgid`.
fn running_in_group(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((s, g)) if g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn daemon_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A sink that forwards lines to a channel the test can wait on.
fn channel_sink() -> (
    LineSink,
    tokio::sync::mpsc::UnboundedReceiver<(Stream, String)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: LineSink = Arc::new(move |l: OutputLine<'_>| {
        let _ = tx.send((l.stream, l.text.to_string()));
    });
    (sink, rx)
}

async fn wait_for_line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Stream, String)>,
    want: &str,
) {
    tokio::time::timeout(STEP_DEADLINE, async {
        while let Some((_, line)) = rx.recv().await {
            if line == want {
                return;
            }
        }
        panic!("output ended before {want:?}");
    })
    .await
    .expect("line did not appear");
}

// ---------------------------------------------------------------- exit and signals

#[tokio::test]
async fn exit_status_tails_and_reason() {
    let fx = Fixture::new();
    fx.handler(
        "fail.sh",
        "#!/bin/sh\necho out-1\necho err-1 >&2\necho out-2\necho err-2 >&2\nexit 2\n",
    );
    let out = run(&fx.sandbox(), &request(handler("fail.sh"))).await;
    assert_eq!(out.termination, Termination::Exited(2));
    assert!(!out.succeeded());
    assert_eq!(out.reason("Install"), "step 'Install' exited with status 2");
    assert_eq!(out.stdout_tail, "out-1\nout-2\n");
    assert_eq!(out.stderr_tail, "err-1\nerr-2\n");
    assert!(out.stderr_seen);
    assert_eq!(out.stderr_lines, 2);
}

#[tokio::test]
async fn success_without_stderr() {
    let fx = Fixture::new();
    fx.handler("ok.sh", "#!/bin/sh\necho fine\n");
    let out = run(&fx.sandbox(), &request(handler("ok.sh"))).await;
    assert!(out.succeeded(), "{:?}", out.termination);
    assert_eq!(out.stdout_tail, "fine\n");
    assert!(!out.stderr_seen);
    assert_eq!(out.stderr_lines, 0);
}

#[tokio::test]
async fn handler_gets_aws_argv() {
    let fx = Fixture::new();
    let path = fx.handler("args.sh", "#!/bin/sh\nprintf '%s|' \"$0\" \"$#\" \"$@\"\n");
    let canonical = std::fs::canonicalize(&path).unwrap();
    let sandbox = fx.sandbox();

    let mut req = request(handler("args.sh"));
    req.args = vec!["a b".into(), "c".into()];
    let out = run(&sandbox, &req).await;
    // No runAsUser: argv[1] is still there, empty.
    assert_eq!(
        out.stdout_tail,
        format!("{}|3||a b|c|", canonical.display())
    );

    // runAsUser is passed as argv[1] as given.
    req.run_as_user = Some(daemon_user());
    let out = run(&sandbox, &req).await;
    assert_eq!(
        out.stdout_tail,
        format!("{}|3|{}|a b|c|", canonical.display(), daemon_user())
    );
}

#[tokio::test]
async fn run_command_uses_fixed_path_and_argv_as_given() {
    let fx = Fixture::new();
    let sandbox = fx.sandbox();
    let mut req = request(command(&["echo", "hello"]));
    req.args = vec!["world".into()];
    let out = run(&sandbox, &req).await;
    assert!(out.succeeded());
    assert_eq!(out.stdout_tail, "hello world\n");

    let out = run(&sandbox, &request(command(&["no-such-command-iotjobs"]))).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!("command 'no-such-command-iotjobs' not found in PATH ({STEP_PATH})")
    );
    let out = run(&sandbox, &request(command(&[]))).await;
    assert_eq!(refusal(&out), &SandboxError::EmptyCommand);
}

#[tokio::test]
async fn death_by_signal_is_a_failure_with_the_signal_named() {
    let fx = Fixture::new();
    fx.handler("die.sh", "#!/bin/sh\necho dying\nkill -9 $$\n");
    let out = run(&fx.sandbox(), &request(handler("die.sh"))).await;
    assert_eq!(out.termination, Termination::Signaled(9));
    assert!(!out.succeeded());
    assert_eq!(
        out.reason("Install"),
        "step 'Install' killed by signal 9 (SIGKILL)"
    );
    assert_eq!(out.stdout_tail, "dying\n");
}

#[tokio::test]
async fn script_without_shebang_runs_with_bin_sh() {
    let fx = Fixture::new();
    fx.handler("plain.sh", "echo no-shebang \"$1\" \"$2\"\nexit 3\n");
    let mut req = request(handler("plain.sh"));
    req.args = vec!["arg".into()];
    let out = run(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Exited(3));
    assert_eq!(out.stdout_tail, "no-shebang  arg\n");
}

// ---------------------------------------------------------------- timeout and cancel

/// Records "<own pid> <child pid> <own process group>" in the file named by $2.
const SLEEPER: &str =
    "#!/bin/sh\nsleep 1000 &\necho \"$$ $! $(ps -o pgid= -p $$)\" > \"$2\"\necho started\nwait\n";

/// The step's processes recorded by [`SLEEPER`] are gone, and it led its own group.
fn assert_sleeper_gone(pidfile: &Path, pgid: i32) {
    let pids = pids_in(pidfile);
    assert_eq!(pids.len(), 3);
    assert_eq!(pids[0], pgid, "the outcome names the handler's group");
    assert_eq!(pids[2], pids[0], "the handler leads its own process group");
    for pid in &pids[..2] {
        assert!(!running(*pid), "process {pid} of the step survived");
    }
    assert_eq!(running_in_group(pgid), Vec::<i32>::new());
}

#[tokio::test]
async fn timeout_stops_the_whole_process_group() {
    let fx = Fixture::new();
    fx.handler("sleeper.sh", SLEEPER);
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("sleeper.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];
    req.timeout = Duration::from_secs(2);

    let out = run(&fx.sandbox(), &req).await;
    assert_eq!(
        out.termination,
        Termination::TimedOut(Duration::from_secs(2))
    );
    assert_eq!(out.reason("Install"), "step 'Install' timed out after 2 s");
    let pgid = out.pgid.unwrap();
    // On a badly overloaded machine the shell may not even have reached its first line
    // within 2 s; then there is no child to check, only the (empty) group.
    if out.stdout_tail == "started\n" {
        assert_sleeper_gone(&pidfile, pgid);
    } else {
        eprintln!("note: the handler was stopped before it started its child");
        assert_eq!(running_in_group(pgid), Vec::<i32>::new());
    }
}

/// Runs `req` and cancels it once the handler printed "started".
async fn cancel_when_started(sandbox: &Sandbox, req: &StepRequest) -> StepOutcome {
    let cancel = CancellationToken::new();
    let (sink, mut rx) = channel_sink();
    let step = run_with(sandbox, req, Some(sink), &cancel);
    let canceller = async {
        wait_for_line(&mut rx, "started").await;
        cancel.cancel();
    };
    let (out, ()) = tokio::join!(step, canceller);
    out
}

#[tokio::test]
async fn processes_ignoring_sigterm_are_killed_after_the_grace_period() {
    let fx = Fixture::new();
    fx.handler(
        "stubborn.sh",
        &SLEEPER.replace("#!/bin/sh\n", "#!/bin/sh\ntrap '' TERM\n"),
    );
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("stubborn.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];

    let out = cancel_when_started(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Cancelled);
    assert_sleeper_gone(&pidfile, out.pgid.unwrap());
}

#[tokio::test]
async fn cancellation_stops_the_whole_process_group() {
    let fx = Fixture::new();
    fx.handler("sleeper.sh", SLEEPER);
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("sleeper.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];

    let out = cancel_when_started(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Cancelled);
    assert_eq!(out.reason("Install"), "step 'Install' was cancelled");
    assert_sleeper_gone(&pidfile, out.pgid.unwrap());
}

#[tokio::test]
async fn a_stopped_handler_gets_sigterm_first_and_can_clean_up() {
    let fx = Fixture::new();
    fx.handler(
        "graceful.sh",
        "#!/bin/sh\ntrap 'echo got-term > \"$2\"; exit 0' TERM\nsleep 1000 &\necho started\nwait\n",
    );
    let marker = fx.root.join("marker");
    let mut req = request(handler("graceful.sh"));
    req.args = vec![marker.to_string_lossy().into_owned()];
    let out = cancel_when_started(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Cancelled);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "got-term\n");
    assert_eq!(running_in_group(out.pgid.unwrap()), Vec::<i32>::new());
}

#[tokio::test]
async fn abandoning_a_running_step_kills_its_group() {
    let fx = Fixture::new();
    fx.handler("sleeper.sh", SLEEPER);
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("sleeper.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];
    let sandbox = fx.sandbox();
    let (sink, mut rx) = channel_sink();
    let cancel = CancellationToken::new();
    tokio::select! {
        _ = sandbox.run_step(&req, Some(sink), &cancel) => panic!("the step cannot end by itself"),
        _ = wait_for_line(&mut rx, "started") => {}
    }
    // The run_step future is dropped here; its guard sends SIGKILL to the group.
    let pids = pids_in(&pidfile);
    let pgid = pids[0];
    let gone = tokio::time::timeout(STEP_DEADLINE, async {
        while !running_in_group(pgid).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "processes {:?} survived",
        running_in_group(pgid)
    );
    assert!(!running(pids[1]));
}

#[tokio::test]
async fn background_processes_left_by_a_finished_step_are_stopped() {
    let fx = Fixture::new();
    fx.handler(
        "leaves.sh",
        "#!/bin/sh\nsleep 1000 &\necho $! > \"$2\"\necho done\nexit 0\n",
    );
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("leaves.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];
    let out = run(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Exited(0));
    assert_eq!(out.stdout_tail, "done\n");
    let background = pids_in(&pidfile)[0];
    assert!(
        !running(background),
        "background process {background} survived"
    );
    assert_eq!(running_in_group(out.pgid.unwrap()), Vec::<i32>::new());
}

/// Documents the limit of process groups: a process that starts its own session
/// escapes. The step still ends (its output is abandoned after a bounded wait).
#[tokio::test]
async fn a_process_that_calls_setsid_escapes_but_does_not_hold_the_step() {
    let fx = Fixture::new();
    fx.handler(
        "escape.sh",
        "#!/bin/sh\nsetsid sh -c 'echo $$ > \"$1\"; exec sleep 1000' escaper \"$2\" &\n\
         while [ ! -s \"$2\" ]; do sleep 0.05; done\necho leader-done\n",
    );
    let pidfile = fx.root.join("pids");
    let mut req = request(handler("escape.sh"));
    req.args = vec![pidfile.to_string_lossy().into_owned()];
    let out = run(&fx.sandbox(), &req).await;
    assert_eq!(out.termination, Termination::Exited(0));
    assert_eq!(out.stdout_tail, "leader-done\n");
    let escaped = pids_in(&pidfile)[0];
    let still_running = running(escaped);
    // Clean up before asserting.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(escaped),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        still_running,
        "the escaped process is outside the group's reach"
    );
    assert_eq!(running_in_group(out.pgid.unwrap()), Vec::<i32>::new());
}

// ---------------------------------------------------------------- refusals

#[tokio::test]
async fn handler_names_with_path_components_are_refused() {
    let fx = Fixture::new();
    write_file(&fx.root.join("x"), "#!/bin/sh\necho escaped\n", 0o755);
    let sandbox = fx.sandbox();
    for name in ["../x", "sub/x", "..", ".", ""] {
        let out = run(&sandbox, &request(handler(name))).await;
        assert_eq!(
            refusal(&out).to_string(),
            format!("handler name '{name}' must be a plain file name (no '/', '.' or '..')")
        );
        assert_eq!(out.pgid, None, "nothing ran");
    }
}

#[tokio::test]
async fn symlink_out_of_the_handler_directory_is_refused() {
    let fx = Fixture::new();
    let other = fx.dir("other");
    let target = write_file(&other.join("evil.sh"), "#!/bin/sh\necho evil\n", 0o755);
    std::os::unix::fs::symlink(&target, fx.handlers.join("link.sh")).unwrap();
    let out = run(&fx.sandbox(), &request(handler("link.sh"))).await;
    let err = refusal(&out);
    assert!(matches!(err, SandboxError::OutsideDir { .. }), "{err:?}");
    let canon_handlers = std::fs::canonicalize(&fx.handlers).unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "handler '{}' resolves to '{}', outside its directory '{}'",
            canon_handlers.join("link.sh").display(),
            std::fs::canonicalize(&target).unwrap().display(),
            canon_handlers.display()
        )
    );
    assert!(out.stdout_tail.is_empty());

    // A symlink that stays inside the directory is fine.
    fx.handler("real.sh", "#!/bin/sh\necho real\n");
    std::os::unix::fs::symlink("real.sh", fx.handlers.join("alias.sh")).unwrap();
    let out = run(&fx.sandbox(), &request(handler("alias.sh"))).await;
    assert_eq!(out.stdout_tail, "real\n");
}

#[tokio::test]
async fn writable_handlers_and_directories_are_refused() {
    let fx = Fixture::new();
    let h = fx.handler("open.sh", "#!/bin/sh\necho hi\n");
    chmod(&h, 0o777);
    let sandbox = fx.sandbox();
    let out = run(&sandbox, &request(handler("open.sh"))).await;
    let canon = std::fs::canonicalize(&h).unwrap();
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "handler '{}' is world-writable (mode 777); remove the write permission (chmod go-w)",
            canon.display()
        )
    );
    chmod(&h, 0o775);
    let out = run(&sandbox, &request(handler("open.sh"))).await;
    assert!(refusal(&out)
        .to_string()
        .contains("is group-writable (mode 775)"));

    // A group-writable directory listed in allowed_handler_dirs.
    let extra = fx.dir("extra");
    write_file(&extra.join("h.sh"), "#!/bin/sh\necho extra\n", 0o755);
    chmod(&extra, 0o775);
    let mut cfg = fx.config();
    cfg.allowed_handler_dirs = vec![extra.clone()];
    let sandbox = Sandbox::new(cfg);
    let req = request(Program::Handler {
        name: "h.sh".into(),
        dir: HandlerDir::Path(extra.clone()),
    });
    let out = run(&sandbox, &req).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "handler directory '{}' is group-writable (mode 775); remove the write permission (chmod go-w)",
            std::fs::canonicalize(&extra).unwrap().display()
        )
    );
    // Fixed permissions: the same step runs.
    chmod(&extra, 0o755);
    let out = run(&sandbox, &req).await;
    assert_eq!(out.stdout_tail, "extra\n");
}

#[tokio::test]
async fn a_writable_parent_of_the_handler_directory_is_refused() {
    let fx = Fixture::new();
    let outer = fx.dir("outer");
    let inner = outer.join("handlers");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    write_file(&inner.join("h.sh"), "#!/bin/sh\necho inner\n", 0o755);
    chmod(&outer, 0o777);
    let mut cfg = fx.config();
    cfg.handler_dir = inner.clone();
    let sandbox = Sandbox::new(cfg);
    let out = run(&sandbox, &request(handler("h.sh"))).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "parent directory of the handler directory '{}' is world-writable (mode 777); remove the write permission (chmod go-w)",
            outer.canonicalize().unwrap().display()
        )
    );
    // The fixture itself lives in /tmp: a sticky root-owned directory is accepted.
    chmod(&outer, 0o755);
    let out = run(&sandbox, &request(handler("h.sh"))).await;
    assert_eq!(out.stdout_tail, "inner\n");
}

#[tokio::test]
async fn directories_not_listed_are_refused_and_the_sandbox_carries_on() {
    let fx = Fixture::new();
    let other = fx.dir("other");
    write_file(&other.join("h.sh"), "#!/bin/sh\necho other\n", 0o755);
    fx.handler("ok.sh", "#!/bin/sh\necho ok\n");
    let sandbox = fx.sandbox();
    let req = request(Program::Handler {
        name: "h.sh".into(),
        dir: HandlerDir::Path(other.clone()),
    });
    let out = run(&sandbox, &req).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "handler directory '{}' is not listed in jobs.allowed_handler_dirs",
            other.display()
        )
    );
    let relative = request(Program::Handler {
        name: "h.sh".into(),
        dir: HandlerDir::Path("handlers".into()),
    });
    assert!(matches!(
        refusal(&run(&sandbox, &relative).await),
        SandboxError::DirNotAllowed { .. }
    ));

    // The next step still runs.
    let out = run(&sandbox, &request(handler("ok.sh"))).await;
    assert_eq!(out.stdout_tail, "ok\n");

    // Listed (in a different spelling): allowed.
    let mut cfg = fx.config();
    cfg.allowed_handler_dirs = vec![other.join(".")];
    let out = run(&Sandbox::new(cfg), &req).await;
    assert_eq!(out.stdout_tail, "other\n");
}

#[tokio::test]
async fn missing_and_non_executable_handlers_are_refused() {
    let fx = Fixture::new();
    let sandbox = fx.sandbox();
    let out = run(&sandbox, &request(handler("absent.sh"))).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "handler '{}' not found: no such file or directory",
            fx.handlers
                .canonicalize()
                .unwrap()
                .join("absent.sh")
                .display()
        )
    );
    let h = fx.handler("noexec.sh", "#!/bin/sh\n");
    chmod(&h, 0o644);
    let out = run(&sandbox, &request(handler("noexec.sh"))).await;
    assert!(matches!(
        refusal(&out),
        SandboxError::NotExecutable { mode: 0o644, .. }
    ));
    std::fs::create_dir(fx.handlers.join("adir")).unwrap();
    let out = run(&sandbox, &request(handler("adir"))).await;
    assert!(matches!(refusal(&out), SandboxError::NotRegularFile { .. }));
}

#[tokio::test]
async fn handlers_owned_by_another_user_are_refused() {
    if !is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let fx = Fixture::new();
    let h = fx.handler("foreign.sh", "#!/bin/sh\n");
    std::os::unix::fs::chown(&h, Some(54321), None).unwrap();
    let out = run(&fx.sandbox(), &request(handler("foreign.sh"))).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "handler '{}' is owned by uid 54321; it must be owned by root or by the daemon's user (uid 0)",
            h.canonicalize().unwrap().display()
        )
    );
}

#[tokio::test]
async fn users_not_allowed_are_refused() {
    let fx = Fixture::new();
    fx.handler("ok.sh", "#!/bin/sh\necho ok\n");
    let mut req = request(handler("ok.sh"));
    req.run_as_user = Some("not-an-allowed-user".into());
    let out = run(&fx.sandbox(), &req).await;
    let err = refusal(&out);
    assert!(
        matches!(err, SandboxError::UserNotAllowed { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("runAsUser 'not-an-allowed-user' is not allowed (allowed users: root"));
    assert_eq!(out.pgid, None);
}

// ---------------------------------------------------------------- what a step gets

#[tokio::test]
async fn environment_is_clean_and_describes_the_step() {
    let fx = Fixture::new();
    let mut req = request(command(&["env"]));
    req.job_id = "env-job".into();
    let out = run(&fx.sandbox(), &req).await;
    assert!(out.succeeded());
    let env: BTreeSet<String> = out.stdout_tail.lines().map(str::to_string).collect();
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap();
    let expected: BTreeSet<String> = [
        format!("PATH={STEP_PATH}"),
        "LANG=C.UTF-8".into(),
        format!("HOME={}", me.dir.display()),
        format!("USER={}", me.name),
        format!("LOGNAME={}", me.name),
        "IOTJOBS_JOB_ID=env-job".into(),
        "IOTJOBS_EXECUTION_NUMBER=7".into(),
        "IOTJOBS_STEP=Install".into(),
        "IOTJOBS_STEP_INDEX=1".into(),
        "IOTJOBS_THING_NAME=thing-a".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, expected);
    // The test process has variables of its own that did not leak.
    let names: BTreeSet<String> = env
        .iter()
        .map(|l| l.split('=').next().unwrap().into())
        .collect();
    assert!(std::env::vars().any(|(k, _)| !names.contains(&k)));
}

#[tokio::test]
async fn stdin_is_dev_null() {
    let fx = Fixture::new();
    let out = run(
        &fx.sandbox(),
        &request(command(&["readlink", "/proc/self/fd/0"])),
    )
    .await;
    assert_eq!(out.stdout_tail, "/dev/null\n");
    // A handler reading stdin gets EOF instead of hanging.
    let out = run(&fx.sandbox(), &request(command(&["cat"]))).await;
    assert!(out.succeeded());
    assert_eq!(out.stdout_tail, "");
}

#[tokio::test]
async fn descriptors_of_the_daemon_are_not_inherited() {
    // A descriptor without close-on-exec, as a careless library might leave one.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2);
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC,
        0
    );

    let fx = Fixture::new();
    let out = run(
        &fx.sandbox(),
        &request(command(&["/bin/sh", "-c", "ls /proc/$$/fd; exit 0"])),
    )
    .await;
    unsafe { libc::close(fd) };
    assert!(out.succeeded(), "{:?} {}", out.termination, out.stderr_tail);
    let fds: Vec<&str> = out.stdout_tail.lines().collect();
    assert_eq!(fds, ["0", "1", "2"]);
}

#[tokio::test]
async fn working_directory_umask_and_session() {
    let fx = Fixture::new();
    fx.handler(
        "where.sh",
        "#!/bin/sh\npwd\ntouch made\nstat -c %a made\nps -o sid= -o pgid= -p $$\n",
    );
    let mut req = request(handler("where.sh"));
    req.job_id = "job-wd".into();
    let sandbox = fx.sandbox();
    let out = run(&sandbox, &req).await;
    assert!(out.succeeded(), "{}", out.stderr_tail);
    let lines: Vec<&str> = out.stdout_tail.lines().collect();
    let dir = fx.state.join("jobs").join("job-wd");
    assert_eq!(lines[0], dir.to_str().unwrap());
    assert_eq!(lines[1], "644", "umask 022");
    let pgid = out.pgid.unwrap().to_string();
    let ids: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(ids, [pgid.as_str(), pgid.as_str()], "own session and group");
    assert!(dir.join("made").is_file());

    assert_eq!(sandbox.job_dir("job-wd").unwrap(), dir);
    sandbox.remove_job_dir("job-wd").unwrap();
    assert!(!dir.exists());
    sandbox.remove_job_dir("job-wd").unwrap();

    let mut bad = request(handler("where.sh"));
    bad.job_id = "../escape".into();
    assert!(matches!(
        refusal(&run(&sandbox, &bad).await),
        SandboxError::BadJobId { .. }
    ));
}

#[tokio::test]
async fn signals_ignored_or_blocked_by_the_daemon_are_reset_for_the_step() {
    // SIGHUP ignored process-wide (harmless for the other tests) and SIGUSR2 blocked on
    // this (the spawning) thread: a step must start with neither, on every spawn path.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let fx = Fixture::new();
    let out = run(
        &fx.sandbox(),
        &request(command(&[
            "grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status",
        ])),
    )
    .await;
    assert!(out.succeeded(), "{}", out.stderr_tail);
    let lines: Vec<&str> = out.stdout_tail.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout_tail);
    for line in lines {
        let mask = line.split_whitespace().nth(1).unwrap();
        assert!(mask.chars().all(|c| c == '0'), "{line}");
    }
}

#[tokio::test]
async fn rlimits_are_applied() {
    let fx = Fixture::new();
    let mut cfg = fx.config();
    cfg.max_open_files = 64;
    cfg.max_processes = 777;
    let out = run(
        &Sandbox::new(cfg),
        &request(command(&["cat", "/proc/self/limits"])),
    )
    .await;
    let limit = |name: &str| -> Vec<String> {
        let line = out
            .stdout_tail
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in {}", out.stdout_tail));
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(limit("Max open files"), ["64", "64"]);
    assert_eq!(limit("Max processes"), ["777", "777"]);
}

// ---------------------------------------------------------------- output volume

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Counts what reaches the sink: bytes including the newlines of complete lines.
fn counting_sink() -> (LineSink, Arc<[AtomicU64; 2]>) {
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let c = counts.clone();
    let sink: LineSink = Arc::new(move |l: OutputLine<'_>| {
        assert!(l.text.len() <= iotjobs::sandbox::MAX_LINE_BYTES);
        let i = (l.stream == Stream::Stderr) as usize;
        c[i].fetch_add(l.text.len() as u64 + l.complete as u64, Ordering::Relaxed);
    });
    (sink, counts)
}

const HUNDRED_MB: u64 = 100_000_000;
/// Memory the capture may add to this process; far below what it reads.
const MEMORY_BOUND_KIB: u64 = 32 * 1024;

#[tokio::test]
async fn a_100_mb_line_is_captured_with_bounded_memory() {
    let fx = Fixture::alone();
    let before = vm_hwm_kib();
    let (sink, counts) = counting_sink();
    let req = request(command(&[
        "/bin/sh",
        "-c",
        r"head -c 100000000 /dev/zero | tr '\0' x; printf TAIL-MARK; echo oops >&2",
    ]));
    let out = run_with(&fx.sandbox(), &req, Some(sink), &CancellationToken::new()).await;
    let growth = vm_hwm_kib().saturating_sub(before);

    assert_eq!(
        out.termination,
        Termination::Exited(0),
        "never killed for printing a lot"
    );
    let expected_tail = format!("{}TAIL-MARK", "x".repeat(1024 - 9));
    assert_eq!(out.stdout_tail, expected_tail);
    assert_eq!(out.stderr_tail, "oops\n");
    assert_eq!(counts[0].load(Ordering::Relaxed), HUNDRED_MB + 9);
    assert!(
        growth < MEMORY_BOUND_KIB,
        "peak memory grew by {growth} KiB while reading 100 MB"
    );
}

#[tokio::test]
async fn a_100_mb_flood_of_lines_on_both_streams_is_captured_with_bounded_memory() {
    let fx = Fixture::alone();
    let line_out = format!("{}-out", "o".repeat(95)); // 99 characters + newline
    let line_err = format!("{}-err", "e".repeat(95));
    let script = format!(
        "(yes {line_err} | head -c {HUNDRED_MB} >&2) & yes {line_out} | head -c {HUNDRED_MB}; wait"
    );
    let before = vm_hwm_kib();
    let (sink, counts) = counting_sink();
    let req = request(command(&["/bin/sh", "-c", &script]));
    let out = run_with(&fx.sandbox(), &req, Some(sink), &CancellationToken::new()).await;
    let growth = vm_hwm_kib().saturating_sub(before);

    assert_eq!(out.termination, Termination::Exited(0));
    let tail_of = |line: &str| {
        let many = format!("{line}\n").repeat(11);
        many[many.len() - 1024..].to_string()
    };
    assert_eq!(out.stdout_tail, tail_of(&line_out));
    assert_eq!(out.stderr_tail, tail_of(&line_err));
    assert_eq!(out.stderr_lines, HUNDRED_MB / 100);
    assert_eq!(counts[0].load(Ordering::Relaxed), HUNDRED_MB);
    assert_eq!(counts[1].load(Ordering::Relaxed), HUNDRED_MB);
    assert!(
        growth < MEMORY_BOUND_KIB,
        "peak memory grew by {growth} KiB while reading 2 x 100 MB"
    );
}

// ---------------------------------------------------------------- user switching

/// A throw-away system user, deleted on drop.
struct TempUser {
    name: String,
}

impl TempUser {
    fn create() -> Self {
        let name = format!("ijt{}x{}", std::process::id(), fastrand::u32(..100_000));
        let status = std::process::Command::new("useradd")
            .args([
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name} failed");
        TempUser { name }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}

#[tokio::test]
async fn run_as_user_switches_natively_to_an_unprivileged_user() {
    if !is_root() {
        eprintln!("skipped: switching user needs root (CI runs the tests as root)");
        return;
    }
    let user = TempUser::create();
    let pw = nix::unistd::User::from_name(&user.name).unwrap().unwrap();
    let fx = Fixture::new();
    fx.handler(
        "whoami.sh",
        "#!/bin/sh\nid -u; id -g; id -G; echo \"$1|$HOME|$USER|$LOGNAME\"\n\
         touch made; stat -c '%U %a' made; stat -c %U .\n",
    );
    let mut cfg = fx.config();
    cfg.allowed_users = vec![user.name.clone(), "root".into()];
    let mut req = request(handler("whoami.sh"));
    req.run_as_user = Some(user.name.clone());

    let out = run(&Sandbox::new(cfg.clone()), &req).await;
    assert!(
        out.succeeded(),
        "{:?}: {}",
        out.termination,
        out.stderr_tail
    );
    let lines: Vec<&str> = out.stdout_tail.lines().collect();
    assert_eq!(lines[0], pw.uid.to_string());
    assert_eq!(lines[1], pw.gid.to_string());
    assert_eq!(
        lines[2],
        pw.gid.to_string(),
        "only the user's own groups, not root's"
    );
    assert_eq!(
        lines[3],
        format!("{0}|{1}|{0}|{0}", user.name, pw.dir.display())
    );
    assert_eq!(lines[4], format!("{} 644", user.name));
    assert_eq!(
        lines[5], user.name,
        "the working directory belongs to the user"
    );

    // runCommand switches the same way.
    let mut cmd_req = request(command(&["id", "-un"]));
    cmd_req.run_as_user = Some(user.name.clone());
    let out = run(&Sandbox::new(cfg.clone()), &cmd_req).await;
    assert_eq!(out.stdout_tail, format!("{}\n", user.name));

    // AWS mode: the handler runs as the daemon's user and gets runAsUser as $1.
    cfg.handlers_switch_user = true;
    let out = run(&Sandbox::new(cfg.clone()), &req).await;
    assert!(out.succeeded(), "{}", out.stderr_tail);
    let lines: Vec<&str> = out.stdout_tail.lines().collect();
    assert_eq!(lines[0], "0");
    assert!(lines[3].starts_with(&format!("{}|", user.name)));

    // Not in allowed_users: refused, nothing runs.
    cfg.handlers_switch_user = false;
    cfg.allowed_users = vec!["root".into()];
    let out = run(&Sandbox::new(cfg), &req).await;
    assert_eq!(
        refusal(&out).to_string(),
        format!(
            "runAsUser '{}' is not allowed (allowed users: root); add it to jobs.allowed_users",
            user.name
        )
    );
}

// ---------------------------------------------------------------- logging

/// A tracing writer that appends to a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn each_output_line_is_logged_with_job_and_step() {
    let fx = Fixture::alone();
    fx.handler(
        "talk.sh",
        "#!/bin/sh\necho 'hello out'\nprintf 'bad\\033[31m\\r\\n' >&2\n",
    );
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded, so the reader tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = run(&fx.sandbox(), &request(handler("talk.sh"))).await;
    assert!(out.succeeded());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line_of = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not logged in:\n{text}"))
            .to_string()
    };
    let out_line = line_of("hello out");
    for field in ["job_id=job-1", "step=Install", "stream=\"stdout\""] {
        assert!(out_line.contains(field), "{field} missing: {out_line}");
    }
    // Control characters cannot garble the log.
    let err_line = line_of("bad");
    assert!(err_line.contains("bad\\u{1b}[31m\\r"), "{err_line}");
    assert!(err_line.contains("stream=\"stderr\""), "{err_line}");
    assert!(text.contains("step finished"));
}
