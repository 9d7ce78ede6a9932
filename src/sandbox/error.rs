//! Why a step could not be started. Every variant's `Display` is a complete sentence
//! an operator can act on: the jobs engine puts it verbatim into the FAILED status
//! `reason`, so it names the offending path, user or setting.

use std::path::PathBuf;

/// A step refused or failed before its program ran. The daemon carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("handler name '{name}' must be a plain file name (no '/', '.' or '..')")]
    BadHandlerName { name: String },

    #[error("handler directory '{}' is not listed in jobs.allowed_handler_dirs", dir.display())]
    DirNotAllowed { dir: PathBuf },

    #[error("handler directory '{}' is not usable: {reason}", dir.display())]
    DirUnusable { dir: PathBuf, reason: String },

    #[error("handler '{}' not found: {reason}", path.display())]
    HandlerNotFound { path: PathBuf, reason: String },

    #[error(
        "handler '{}' resolves to '{}', outside its directory '{}'",
        path.display(),
        target.display(),
        dir.display()
    )]
    OutsideDir {
        path: PathBuf,
        target: PathBuf,
        dir: PathBuf,
    },

    #[error("handler '{}' is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },

    #[error("handler '{}' is not executable (mode {mode:03o})", path.display())]
    NotExecutable { path: PathBuf, mode: u32 },

    /// `what` is "handler" or "handler directory".
    #[error(
        "{what} '{}' is {who}-writable (mode {mode:03o}); remove the write permission (chmod go-w)",
        path.display()
    )]
    Writable {
        what: &'static str,
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },

    #[error(
        "{what} '{}' is owned by uid {owner}; it must be owned by root or by the daemon's user (uid {daemon_uid})",
        path.display()
    )]
    BadOwner {
        what: &'static str,
        path: PathBuf,
        owner: u32,
        daemon_uid: u32,
    },

    #[error("command is empty")]
    EmptyCommand,

    #[error("command '{name}' not found in PATH ({path})")]
    CommandNotFound { name: String, path: String },

    #[error("runAsUser '{user}' is not allowed (allowed users: {allowed}); add it to jobs.allowed_users")]
    UserNotAllowed { user: String, allowed: String },

    #[error("runAsUser '{user}' does not exist on this device")]
    UnknownUser { user: String },

    #[error("cannot look up user '{user}': {reason}")]
    UserLookup { user: String, reason: String },

    #[error(
        "cannot run as user '{user}': iotjobsd runs as '{daemon_user}', not root, and switches user only when it runs as root"
    )]
    CannotSwitchUser { user: String, daemon_user: String },

    #[error("job id '{job_id}' cannot name a working directory (allowed: letters, digits, '_', '-', '.'; at most 128)")]
    BadJobId { job_id: String },

    #[error("cannot prepare working directory '{}': {reason}", dir.display())]
    WorkDir { dir: PathBuf, reason: String },

    #[error("argument contains a NUL byte: {arg:?}")]
    NulInArgument { arg: String },

    #[error("could not start '{}' as user '{user}': {reason}", program.display())]
    Exec {
        program: PathBuf,
        user: String,
        reason: String,
    },
}
