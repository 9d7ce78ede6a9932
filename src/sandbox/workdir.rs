//! Per-job working directories: `<state_dir>/jobs/<job_id>/`, created before a step
//! runs and owned by the user the step runs as.

use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::SandboxError;
use super::resolve::io_reason;
use super::user::Target;

const ROOT_MODE: u32 = 0o755;
/// Private to the step's user...
const PRIVATE_MODE: u32 = 0o700;
/// ...except in AWS mode, where the handler hands work to another user (`sudo -u`)
/// that must still be able to use its working directory.
const SHARED_MODE: u32 = 0o755;

/// The directory name for a job id, refusing anything that could escape `root`.
pub(crate) fn job_dir(root: &Path, job_id: &str) -> Result<PathBuf, SandboxError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 128
        && !job_id.starts_with('.')
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(root.join(job_id))
    } else {
        Err(SandboxError::BadJobId {
            job_id: job_id.to_string(),
        })
    }
}

/// Creates (or re-uses) the job's directory and hands it to the step's user.
pub(crate) fn prepare(
    root: &Path,
    job_id: &str,
    target: &Target,
    shared: bool,
) -> Result<PathBuf, SandboxError> {
    let dir = job_dir(root, job_id)?;
    let fail = |d: &Path, reason: String| SandboxError::WorkDir {
        dir: d.to_path_buf(),
        reason,
    };
    if !root.is_dir() {
        fs::create_dir_all(root).map_err(|e| fail(root, io_reason(&e)))?;
        fs::set_permissions(root, fs::Permissions::from_mode(ROOT_MODE))
            .map_err(|e| fail(root, io_reason(&e)))?;
    }
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail(&dir, "exists and is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(&dir).map_err(|e| fail(&dir, io_reason(&e)))?
        }
        Err(e) => return Err(fail(&dir, io_reason(&e))),
    }
    let mode = if shared { SHARED_MODE } else { PRIVATE_MODE };
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
        .map_err(|e| fail(&dir, io_reason(&e)))?;
    if target.switch {
        lchown(&dir, Some(target.identity.uid), Some(target.identity.gid))
            .map_err(|e| fail(&dir, format!("changing its owner: {}", io_reason(&e))))?;
    }
    Ok(dir)
}

/// Removes a job's directory and everything in it (the engine calls this when the
/// job is over). A missing directory is fine.
pub(crate) fn remove(root: &Path, job_id: &str) -> Result<(), SandboxError> {
    let dir = job_dir(root, job_id)?;
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::WorkDir {
            dir,
            reason: io_reason(&e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_that_could_escape_are_refused() {
        let root = Path::new("/state/jobs");
        assert_eq!(job_dir(root, "job-1_a.b").unwrap(), root.join("job-1_a.b"));
        for bad in [
            "",
            "..",
            ".",
            "../x",
            "a/b",
            ".hidden",
            "a\0b",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(job_dir(root, bad), Err(SandboxError::BadJobId { .. })),
                "{bad:?}"
            );
        }
    }
}
