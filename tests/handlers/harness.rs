//! Runs a handler script with `sh` in a sandbox whose PATH holds only (1) shims that record
//! their arguments and (2) symlinks to the few real tools the scripts need. A tool that is
//! neither shimmed nor linked does not exist for the script, which is how detection order
//! and "missing tool" paths are tested.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::RwLock;

use tempfile::TempDir;

/// Held for writing while a test writes an executable, and for reading while a test forks.
/// Without it, a child forked by another test thread can inherit the write descriptor and the
/// shim's exec fails with ETXTBSY ("Text file busy").
static SPAWN_LOCK: RwLock<()> = RwLock::new(());

/// Real tools every handler may use (POSIX utilities, not the ones under test).
pub const BASE_TOOLS: &[&str] = &[
    "sh",
    "id",
    "cat",
    "mv",
    "rm",
    "mkdir",
    "cp",
    "tr",
    "wc",
    "df",
    "sha256sum",
    "sleep",
];

pub fn handlers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("handlers")
}

pub fn scripts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(handlers_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    v.sort();
    v
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Writes a file under the spawn lock (see [`SPAWN_LOCK`]).
pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    let _guard = SPAWN_LOCK.write().unwrap();
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.set_permissions(fs::Permissions::from_mode(mode)).unwrap();
    drop(f);
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit status\n--- stdout:\n{}--- stderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub struct Sandbox {
    pub dir: TempDir,
    shims: PathBuf,
    tools: PathBuf,
    log: PathBuf,
    envs: Vec<(String, String)>,
}

const RECORD: &str = r#"#!/bin/sh
{ printf '%s' "${0##*/}"; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'; } >>"$SHIM_LOG"
printf '%s DEBIAN_FRONTEND=%s\n' "${0##*/}" "${DEBIAN_FRONTEND-}" >>"$SHIM_LOG.env"
"#;

impl Sandbox {
    /// A sandbox with the base tools only.
    pub fn new() -> Sandbox {
        Sandbox::with_tools(&[])
    }

    /// A sandbox with the base tools and `extra` real tools (e.g. curl).
    pub fn with_tools(extra: &[&str]) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let shims = dir.path().join("shims");
        let tools = dir.path().join("tools");
        fs::create_dir(&shims).unwrap();
        fs::create_dir(&tools).unwrap();
        let log = dir.path().join("calls.log");
        let sb = Sandbox {
            dir,
            shims,
            tools,
            log,
            envs: Vec::new(),
        };
        for t in BASE_TOOLS.iter().chain(extra) {
            sb.link(t);
        }
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Makes a real tool available (panics when this machine lacks it).
    pub fn link(&self, tool: &str) {
        let real = which(tool).unwrap_or_else(|| panic!("test needs the real `{tool}`"));
        symlink(real, self.tools.join(tool)).unwrap();
    }

    /// Makes `real` available under the name `name` (e.g. busybox as wget).
    pub fn link_as(&self, name: &str, real: &Path) {
        symlink(real, self.tools.join(name)).unwrap();
    }

    /// A shim that records its arguments and exits 0.
    pub fn shim(&self, name: &str) {
        self.shim_with(name, "exit 0\n");
    }

    /// A shim that records its arguments, then runs `body` (sh, may use "$@").
    pub fn shim_with(&self, name: &str, body: &str) {
        let text = format!("{RECORD}{body}");
        write_file(&self.shims.join(name), text.as_bytes(), 0o755);
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `sh handlers/<script> args...` with a clean environment.
    pub fn run(&self, script: &str, args: &[&str]) -> Run {
        let sh = which("sh").unwrap();
        let mut cmd = Command::new(sh);
        cmd.arg(handlers_dir().join(script))
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!("{}:{}", self.shims.display(), self.tools.display()),
            )
            .env("SHIM_LOG", &self.log)
            .env("LANG", "C")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child = {
            let _guard = SPAWN_LOCK.read().unwrap();
            cmd.spawn().unwrap()
        };
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every shim call so far, one "name arg arg..." line each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// "name DEBIAN_FRONTEND=value" per shim call.
    pub fn call_envs(&self) -> Vec<String> {
        fs::read_to_string(self.log.with_extension("log.env"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
