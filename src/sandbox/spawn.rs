//! Process creation. Everything the child needs (argv, environment, directory, ids,
//! limits) is turned into C strings and arrays in the parent by [`ExecPlan::new`]; the
//! code that runs in the child ([`child_exec`]) only makes async-signal-safe system
//! calls and never allocates, because the parent is multi-threaded (and, on the vfork
//! path, shares its memory with the child).
//!
//! The child execs the program itself with `execve` instead of letting the standard
//! library call `execvp`, so that the shebang-less fallback (`ENOEXEC` → `/bin/sh`,
//! as glibc's execvp does) does not depend on the C library.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::net::unix::pipe;

use super::error::SandboxError;
use super::user::Target;
use super::vfork::{self, VforkChild};

const SHELL: &str = "/bin/sh";
/// The step's umask: files it creates are not group- or world-writable.
const STEP_UMASK: libc::mode_t = 0o022;

/// A NULL-terminated array of C strings, kept together with the strings it points to.
struct CStringArray {
    _items: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_items`, which is owned by the same value and never
// mutated after construction; the array is only read (by the child after fork).
unsafe impl Send for CStringArray {}
unsafe impl Sync for CStringArray {}

impl CStringArray {
    fn new(items: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const c_char> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray {
            _items: items,
            ptrs,
        }
    }
}

/// Identity switch performed in the child.
struct Switch {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// Everything needed to start one step, prepared before fork.
pub(crate) struct ExecPlan {
    program_path: PathBuf,
    program: CString,
    argv: CStringArray,
    /// `[/bin/sh, program, argv[1..]...]` for a file without a shebang.
    sh_argv: CStringArray,
    envp: CStringArray,
    cwd: CString,
    switch: Option<Switch>,
    max_open_files: u64,
    max_processes: u64,
}

fn cstring(s: &[u8]) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::NulInArgument {
        arg: String::from_utf8_lossy(s).into_owned(),
    })
}

impl ExecPlan {
    /// `argv[0]` is the program path; `env` is the complete environment.
    pub fn new(
        program: &Path,
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        target: &Target,
        max_open_files: u64,
        max_processes: u64,
    ) -> Result<Self, SandboxError> {
        let program_c = cstring(program.as_os_str().as_bytes())?;
        let argv_c = argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sh_argv = vec![cstring(SHELL.as_bytes())?, program_c.clone()];
        sh_argv.extend(argv_c.iter().skip(1).cloned());
        let envp = env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let switch = target.switch.then(|| Switch {
            uid: target.identity.uid,
            gid: target.identity.gid,
            groups: target.groups.clone(),
        });
        Ok(ExecPlan {
            program_path: program.to_path_buf(),
            program: program_c,
            argv: CStringArray::new(argv_c),
            sh_argv: CStringArray::new(sh_argv),
            envp: CStringArray::new(envp),
            cwd: cstring(cwd.as_os_str().as_bytes())?,
            switch,
            max_open_files,
            max_processes,
        })
    }

    /// Starts the step. stdin is /dev/null, stdout and stderr are pipes. An error from
    /// any step in the child (setuid, chdir, execve...) is returned here. Without a user
    /// switch the cheap vfork-like path is taken (`vfork.rs`); a switch forks.
    pub fn spawn(self) -> io::Result<StepChild> {
        if self.switch.is_none() && vfork::available() {
            return vfork::spawn(&self).map(StepChild::Vforked);
        }
        self.fork().map(StepChild::Forked)
    }

    /// Forks and execs through the standard library (which forks because of the
    /// `pre_exec` closure).
    fn fork(self) -> io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.program_path);
        cmd.env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        // SAFETY: `child_exec` only makes async-signal-safe calls on data prepared
        // before fork, and does not allocate.
        unsafe {
            cmd.pre_exec(move || child_exec(&self));
        }
        cmd.spawn()
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A started step's main process, from either spawn path.
#[derive(Debug)]
pub(crate) enum StepChild {
    Forked(tokio::process::Child),
    Vforked(VforkChild),
}

impl StepChild {
    /// The process id, which is also the step's process group and session id; 0 once
    /// reaped (0 disables every group signal, see kill.rs).
    pub fn id(&self) -> i32 {
        match self {
            StepChild::Forked(child) => child.id().map(|id| id as i32).unwrap_or_default(),
            StepChild::Vforked(child) => child.id(),
        }
    }

    pub fn take_stdout(&mut self) -> Option<pipe::Receiver> {
        match self {
            StepChild::Forked(child) => receiver(child.stdout.take()?.into_owned_fd()),
            StepChild::Vforked(child) => child.stdout.take(),
        }
    }

    pub fn take_stderr(&mut self) -> Option<pipe::Receiver> {
        match self {
            StepChild::Forked(child) => receiver(child.stderr.take()?.into_owned_fd()),
            StepChild::Vforked(child) => child.stderr.take(),
        }
    }

    /// Waits for the main process to exit. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            StepChild::Forked(child) => child.wait().await,
            StepChild::Vforked(child) => child.wait().await,
        }
    }
}

fn receiver(fd: io::Result<OwnedFd>) -> Option<pipe::Receiver> {
    fd.and_then(pipe::Receiver::from_owned_fd).ok()
}

/// Runs in the child between fork (or clone) and exec. Returns only on failure.
pub(super) fn child_exec(plan: &ExecPlan) -> io::Result<()> {
    // SAFETY: plain system calls on valid, NUL-terminated data owned by `plan`.
    unsafe {
        // Start from default signal handling: an ignored SIGTERM or a blocked mask
        // would otherwise survive exec and make the handler unkillable by SIGTERM.
        // Dispositions first: the vfork path clones with every signal blocked, and a
        // handler of the daemon must never run in the child.
        // Every signal, real-time ones included; the raw system call because the C
        // library refuses the two it reserves for its threads (32, 33).
        let dfl = KernelSigaction::default();
        for sig in 1..=KERNEL_NSIG {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        // Own session and process group: the whole step can be signalled as a group
        // and it has no controlling terminal.
        check(libc::setsid())?;
        libc::umask(STEP_UMASK);
        set_limit(libc::RLIMIT_NOFILE, plan.max_open_files)?;
        set_limit(libc::RLIMIT_NPROC, plan.max_processes)?;
        // Before dropping privileges: root may enter a directory the user cannot reach
        // by path (the state directory is not necessarily searchable for it).
        check(libc::chdir(plan.cwd.as_ptr()))?;
        if let Some(s) = &plan.switch {
            check(libc::setgroups(s.groups.len(), s.groups.as_ptr()))?;
            check(libc::setgid(s.gid))?;
            check(libc::setuid(s.uid))?;
        }
        mark_fds_cloexec();

        libc::execve(
            plan.program.as_ptr(),
            plan.argv.ptrs.as_ptr(),
            plan.envp.ptrs.as_ptr(),
        );
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOEXEC) {
            libc::execve(
                plan.sh_argv.ptrs[0],
                plan.sh_argv.ptrs.as_ptr(),
                plan.envp.ptrs.as_ptr(),
            );
            return Err(io::Error::last_os_error());
        }
        Err(err)
    }
}

/// Highest signal number of the kernel (`_NSIG`).
const KERNEL_NSIG: libc::c_int = 64;

/// The kernel's `struct sigaction` (not the C library's); all zero is SIG_DFL with no
/// flags and an empty mask.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Sets soft and hard limit; 0 leaves the inherited limit.
unsafe fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    if value == 0 {
        return Ok(());
    }
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    check(unsafe { libc::setrlimit(resource, &lim) })
}

/// Every descriptor above stderr gets close-on-exec, so the step inherits nothing but
/// 0, 1 and 2. Marking instead of closing keeps the standard library's error pipe
/// working until exec (it reports a failed exec to the parent).
unsafe fn mark_fds_cloexec() {
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    // Kernels before 5.11: walk the descriptor table up to the soft limit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        (lim.rlim_cur as u64).min(1 << 20) as libc::c_int
    } else {
        1024
    };
    for fd in 3..max {
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
