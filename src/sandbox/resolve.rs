//! Handler and command resolution with the permission checks that decide whether a
//! file may be run at all. Pure file-system inspection: nothing here runs anything.
//!
//! A handler is trusted only if nobody but root or the daemon's user could have put it
//! there: its directory must be allowed by configuration, the file must stay inside that
//! directory after following symlinks, and neither the file, nor any directory between it
//! and the handler directory, nor the handler directory or its ancestors may be group- or
//! world-writable or owned by someone else (root-owned sticky directories excepted).

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::config::{HandlerDir, SandboxConfig};
use super::error::SandboxError;

/// Resolves a runHandler action to the canonical path of a file that passed every check.
pub(crate) fn resolve_handler(
    config: &SandboxConfig,
    daemon_uid: u32,
    name: &str,
    dir: &HandlerDir,
) -> Result<PathBuf, SandboxError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(SandboxError::BadHandlerName {
            name: name.to_string(),
        });
    }
    let dir = canonical_handler_dir(config, dir)?;
    check_dir(&dir, daemon_uid)?;
    check_ancestors(&dir, daemon_uid)?;

    let path = dir.join(name);
    let target = std::fs::canonicalize(&path).map_err(|e| SandboxError::HandlerNotFound {
        path: path.clone(),
        reason: io_reason(&e),
    })?;
    if !target.starts_with(&dir) {
        return Err(SandboxError::OutsideDir { path, target, dir });
    }
    // A symlink may point into a subdirectory; each directory on the way must be as
    // trustworthy as the handler directory itself.
    let mut parent = target.parent();
    while let Some(p) = parent {
        if p == dir || !p.starts_with(&dir) {
            break;
        }
        check_dir(p, daemon_uid)?;
        parent = p.parent();
    }

    let meta = metadata(&target, "handler")?;
    if !meta.is_file() {
        return Err(SandboxError::NotRegularFile { path: target });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o111 == 0 {
        return Err(SandboxError::NotExecutable { path: target, mode });
    }
    check_trusted(&target, &meta, "handler", daemon_uid)?;
    Ok(target)
}

/// Resolves runCommand's `argv[0]`: a bare name is searched in `step_path` (the configured
/// step PATH, never the daemon's own); a name with a '/' is used as given.
pub(crate) fn resolve_command(argv0: &str, step_path: &str) -> Result<PathBuf, SandboxError> {
    if argv0.is_empty() {
        return Err(SandboxError::EmptyCommand);
    }
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    step_path
        .split(':')
        .map(|d| Path::new(d).join(argv0))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| SandboxError::CommandNotFound {
            name: argv0.to_string(),
            path: step_path.to_string(),
        })
}

/// The canonical directory a handler is looked up in, after the allow-list check.
fn canonical_handler_dir(
    config: &SandboxConfig,
    dir: &HandlerDir,
) -> Result<PathBuf, SandboxError> {
    let default = || canonicalize_dir(&config.handler_dir);
    match dir {
        HandlerDir::Default => default(),
        HandlerDir::Path(p) if p.as_os_str().is_empty() => default(),
        HandlerDir::Path(p) => {
            let not_allowed = || SandboxError::DirNotAllowed { dir: p.clone() };
            if !p.is_absolute() {
                return Err(not_allowed());
            }
            // Compare canonical forms so `/opt/h/` and `/opt/./h` match `/opt/h`, and a
            // symlinked alias of an allowed directory is accepted for what it points to.
            let wanted = std::fs::canonicalize(p).map_err(|_| not_allowed())?;
            let allowed = std::iter::once(&config.handler_dir)
                .chain(config.allowed_handler_dirs.iter())
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .any(|d| d == wanted);
            if allowed {
                Ok(wanted)
            } else {
                Err(not_allowed())
            }
        }
    }
}

fn canonicalize_dir(dir: &Path) -> Result<PathBuf, SandboxError> {
    std::fs::canonicalize(dir).map_err(|e| SandboxError::DirUnusable {
        dir: dir.to_path_buf(),
        reason: io_reason(&e),
    })
}

fn check_dir(dir: &Path, daemon_uid: u32) -> Result<(), SandboxError> {
    let meta = metadata(dir, "handler directory")?;
    if !meta.is_dir() {
        return Err(SandboxError::DirUnusable {
            dir: dir.to_path_buf(),
            reason: "not a directory".to_string(),
        });
    }
    check_trusted(dir, &meta, "handler directory", daemon_uid)
}

/// Whoever can rename an ancestor of the handler directory can swap the directory, so
/// every ancestor must be trusted too (as sshd's StrictModes). A sticky directory owned
/// by root (like /tmp) is fine although world-writable: there only an entry's owner can
/// rename it, and the entry below is checked itself.
fn check_ancestors(dir: &Path, daemon_uid: u32) -> Result<(), SandboxError> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = metadata(ancestor, "parent directory")?;
        let sticky_root = meta.uid() == 0 && meta.permissions().mode() & 0o1000 != 0;
        if !sticky_root {
            check_trusted(
                ancestor,
                &meta,
                "parent directory of the handler directory",
                daemon_uid,
            )?;
        }
    }
    Ok(())
}

fn check_trusted(
    path: &Path,
    meta: &Metadata,
    what: &'static str,
    daemon_uid: u32,
) -> Result<(), SandboxError> {
    let mode = meta.permissions().mode() & 0o7777;
    let who = if mode & 0o002 != 0 {
        Some("world")
    } else if mode & 0o020 != 0 {
        Some("group")
    } else {
        None
    };
    if let Some(who) = who {
        return Err(SandboxError::Writable {
            what,
            path: path.to_path_buf(),
            who,
            mode,
        });
    }
    let owner = meta.uid();
    if owner != 0 && owner != daemon_uid {
        return Err(SandboxError::BadOwner {
            what,
            path: path.to_path_buf(),
            owner,
            daemon_uid,
        });
    }
    Ok(())
}

fn metadata(path: &Path, what: &'static str) -> Result<Metadata, SandboxError> {
    std::fs::metadata(path).map_err(|e| {
        if what == "handler" {
            SandboxError::HandlerNotFound {
                path: path.to_path_buf(),
                reason: io_reason(&e),
            }
        } else {
            SandboxError::DirUnusable {
                dir: path.to_path_buf(),
                reason: io_reason(&e),
            }
        }
    })
}

/// An io::Error as a short lower-case phrase ("no such file or directory").
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}
