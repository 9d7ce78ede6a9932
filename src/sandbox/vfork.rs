//! The cheap spawn path: `clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn does, instead
//! of fork. The child borrows the daemon's address space until it execs, so no page
//! tables are copied and no copy-on-write faults follow; the calling thread is
//! suspended meanwhile. Unlike posix_spawn, the child still runs the sandbox's own setup
//! ([`child_exec`]: signal reset, setsid, umask, rlimits, chdir, descriptor closing,
//! the `/bin/sh` fallback), so a step gets exactly the same guarantees on either path.
//!
//! Only used when no user switch is needed: glibc's `setuid` wrappers would broadcast
//! the change to the threads they believe share the process, which in a child sharing
//! our memory are the daemon's threads. The switch keeps the fork path (`spawn.rs`).
//!
//! The child must not allocate, lock or touch anything the suspended thread may hold:
//! everything it uses is prepared here before the clone, and it reports a failure by
//! storing the errno in memory the parent reads once the clone returns.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::spawn::{child_exec, ExecPlan};

/// The child only runs a handful of system calls before exec.
const CHILD_STACK: usize = 64 * 1024;

/// True when the kernel has pidfds (5.3+), which the parent needs to await the child.
pub(super) fn available() -> bool {
    static PIDFD: OnceLock<bool> = OnceLock::new();
    *PIDFD.get_or_init(|| {
        // SAFETY: plain system call; the descriptor is closed by OwnedFd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        if fd < 0 {
            return false;
        }
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        true
    })
}

/// What the child reads (prepared before the clone) and writes (its errno).
struct ChildCtx<'a> {
    plan: &'a ExecPlan,
    /// Descriptors for 0, 1 and 2, all above 2 and close-on-exec.
    stdio: [RawFd; 3],
    errno: AtomicI32,
}

extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildCtx the parent keeps alive while it is suspended.
    let ctx = unsafe { &*(arg as *const ChildCtx) };
    let result = (|| {
        for (target, fd) in ctx.stdio.iter().enumerate() {
            // dup2 clears close-on-exec on the copy; the sources are all above 2.
            if unsafe { libc::dup2(*fd, target as libc::c_int) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        child_exec(ctx.plan)
    })();
    let errno = result
        .err()
        .and_then(|e| e.raw_os_error())
        .unwrap_or(libc::EINVAL);
    ctx.errno.store(errno, Ordering::SeqCst);
    // SAFETY: exits the child only; no destructors or atexit handlers of the parent run.
    unsafe { libc::_exit(127) }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `fd` moved above 2 (a daemon started with closed stdio gets low numbers back).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let dup = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r, above_stdio(w)?))
}

fn nonblocking_receiver(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// Starts `plan` (which must not switch user). stdin is /dev/null, stdout and stderr
/// are pipes. Any failure in the child (chdir, setrlimit, execve...) is returned here.
pub(super) fn spawn(plan: &ExecPlan) -> io::Result<VforkChild> {
    let devnull =
        cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    let devnull = above_stdio(unsafe { OwnedFd::from_raw_fd(devnull) })?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // Registered before the child exists, so nothing can fail between its start and
    // handing it over except `watch`, which stops it.
    let (stdout, stderr) = (nonblocking_receiver(out_r)?, nonblocking_receiver(err_r)?);
    let ctx = ChildCtx {
        plan,
        stdio: [devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        errno: AtomicI32::new(0),
    };
    // Only the child writes it (its stack), so it needs no initialising.
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: the stack grows down from its (16-byte aligned) end and outlives the
    // child's use of it (CLONE_VFORK: we resume only after exec or exit). All signals
    // are blocked around the clone so no handler of the daemon runs on the child's
    // stack; the child resets every disposition before unblocking (child_exec).
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as usize & !15;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &ctx as *const ChildCtx as *mut c_void,
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid == -1 {
            return Err(clone_err);
        }
        pid
    };
    drop(stack);
    drop((devnull, out_w, err_w));
    let errno = ctx.errno.load(Ordering::SeqCst);
    if errno != 0 {
        // The child has exited (127) without exec: reap it, report why.
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    let pidfd = match watch(pid) {
        Ok(pidfd) => pidfd,
        Err(err) => {
            // Cannot await it: do not leave it running unsupervised.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(err);
        }
    };
    Ok(VforkChild {
        pid,
        pidfd: Some(pidfd),
        status: None,
        stdout: Some(stdout),
        stderr: Some(stderr),
    })
}

/// A pidfd of our (not yet reaped) child `pid`, registered with the runtime.
fn watch(pid: i32) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own; the OwnedFd keeps it open (and the same) for
    // as long as the AsyncFd that holds it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// A step's main process started by [`spawn`]; awaited through its pidfd.
#[derive(Debug)]
pub(crate) struct VforkChild {
    pid: i32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

/// Reaps `pid` if it has exited.
fn try_reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    match cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })? {
        0 => Ok(None),
        _ => Ok(Some(ExitStatus::from_raw(status))),
    }
}

impl VforkChild {
    pub fn id(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let Some(pidfd) = &self.pidfd else {
            return Err(io::Error::other("the step's process is no longer tracked"));
        };
        loop {
            // A pidfd becomes readable when its process exits.
            let mut ready = pidfd.readable().await?;
            if let Some(status) = try_reap(self.pid)? {
                self.status = Some(status);
                return Ok(status);
            }
            ready.clear_ready();
        }
    }
}

impl Drop for VforkChild {
    /// Never leaves a zombie: a child still running when dropped (its group is being
    /// killed by the caller) is reaped in the background once it exits.
    fn drop(&mut self) {
        if self.status.is_some() || matches!(try_reap(self.pid), Ok(Some(_)) | Err(_)) {
            return;
        }
        let (pid, Some(pidfd)) = (self.pid, self.pidfd.take()) else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                while let Ok(mut ready) = pidfd.readable().await {
                    if !matches!(try_reap(pid), Ok(None)) {
                        return;
                    }
                    ready.clear_ready();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spawn::StepChild;
    use super::super::user::{Identity, Target};
    use super::*;
    use std::path::Path;

    fn plan(program: &str, argv: &[&str]) -> ExecPlan {
        let target = Target {
            identity: Identity::current(),
            groups: Vec::new(),
            switch: false,
        };
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        ExecPlan::new(
            Path::new(program),
            &argv,
            &[],
            Path::new("/"),
            &target,
            0,
            0,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_step_without_user_switch_takes_the_vfork_path_and_is_awaited() {
        assert!(
            available(),
            "pidfds are needed for these tests (Linux 5.3+)"
        );
        let child = plan("/bin/sh", &["sh", "-c", "echo out; echo err >&2; exit 3"]).spawn();
        let StepChild::Vforked(mut child) = child.unwrap() else {
            panic!("expected the vfork path");
        };
        let pid = child.id();
        let mut out = String::new();
        let mut err = String::new();
        use tokio::io::AsyncReadExt;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
        assert_eq!(status.code(), Some(3));
        // Reaped: the pid is no longer our child.
        assert_eq!(
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) },
            -1
        );
        // A second wait answers from the stored status.
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
    }

    #[tokio::test]
    async fn an_exec_failure_in_the_child_is_returned_and_leaves_no_process() {
        let err = plan("/nonexistent/program", &["x"]).spawn().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    }

    #[tokio::test]
    async fn a_child_dropped_while_running_is_reaped_when_it_exits() {
        let StepChild::Vforked(child) = plan("/bin/sleep", &["sleep", "0.2"]).spawn().unwrap()
        else {
            panic!("expected the vfork path");
        };
        let pid = child.id();
        drop(child);
        // The background reaper collects it: kill(pid, 0) fails once it is reaped
        // (a zombie would still answer).
        let gone = async {
            while unsafe { libc::kill(pid, 0) } == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), gone)
            .await
            .expect("the dropped child was never reaped");
    }
}
