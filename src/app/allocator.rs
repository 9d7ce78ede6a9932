//! glibc malloc settings of the daemon process. Owns the one allocator decision the
//! daemon makes (per-thread cache off); it must not touch the environment of anything
//! but the daemon itself (steps get an environment built from scratch by the sandbox).
//!
//! Why: measured with the benchmark harness (issue 9, figure 2b), the daemon's heap grew
//! by ~230 KiB over its first jobs and then stayed there (a plateau, not a leak: +232 KiB
//! after 1,201 jobs, +256 KiB after 5,001). heaptrack showed the live heap growing by
//! only ~20-30 KB; the rest was glibc's per-thread cache (tcache): up to seven freed
//! chunks per size class up to 1 KiB are kept outside the arena, so they neither
//! coalesce nor get reused for other sizes, and each job's short-lived allocations of
//! many sizes push the heap's high-water mark up. With `glibc.malloc.tcache_count=0` the
//! growth after 1,201 jobs was ~+100 KiB, and with [`release_free_heap`] when the daemon
//! goes idle ~+60 KiB. The cache cannot be turned off from inside a running process (no
//! `mallopt` for it; tunables are read once, when the image starts), so `iotjobsd run`
//! re-executes itself once with the tunable added, before the log writer thread, the
//! lock or the connection exist. Cost (callgrind, 121 jobs): malloc and free take ~70k
//! more instructions per job, ~2% of the daemon's instructions; plus one `execve` at
//! start-up.

use std::ffi::{OsStr, OsString};

/// The environment variable glibc reads its tunables from.
pub const TUNABLES_ENV: &str = "GLIBC_TUNABLES";
/// The per-thread cache's tunable; an operator's own value of it is respected.
const TCACHE_COUNT: &str = "glibc.malloc.tcache_count";

/// The `GLIBC_TUNABLES` value to re-execute with, or `None` when the current one already
/// says how large the per-thread cache is (our own re-execution, or the operator's choice).
pub fn tunables_without_tcache(current: Option<&OsStr>) -> Option<OsString> {
    let mut value = OsString::new();
    if let Some(current) = current.filter(|c| !c.is_empty()) {
        let text = current.to_string_lossy();
        let chosen = text
            .split(':')
            .any(|setting| setting.split('=').next() == Some(TCACHE_COUNT));
        if chosen {
            return None;
        }
        value.push(current);
        value.push(":");
    }
    value.push(TCACHE_COUNT);
    value.push("=0");
    Some(value)
}

/// Replaces the process with itself, same arguments, with glibc's per-thread cache off.
/// Returns only when that is not needed (already done, chosen otherwise, not glibc) or
/// when `execve` failed; the daemon then runs with glibc's defaults. Call it before any
/// thread is started: the image is replaced, so nothing opened before survives
/// other than inherited descriptors.
pub fn reexec_without_tcache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        let Some(tunables) = tunables_without_tcache(std::env::var_os(TUNABLES_ENV).as_deref())
        else {
            restore_name();
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| "iotjobsd".into());
        // /proc/self/exe, not argv[0]: the very binary that runs, even if the package
        // manager has replaced the file on disk meanwhile.
        let err = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env(TUNABLES_ENV, tunables)
            .exec();
        eprintln!("iotjobsd: cannot re-execute with {TCACHE_COUNT}=0 ({err}); continuing");
    }
}

/// After the re-exec through `/proc/self/exe` the kernel names the process "exe"
/// (`/proc/PID/comm`, what `ps`, `top`, `pgrep iotjobsd` and `killall` see). Names it
/// after argv[0] again, as the first exec did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restore_name() {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    if comm.trim_end() != "exe" {
        return;
    }
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    // The kernel keeps 15 bytes and a NUL.
    let mut name = [0u8; 16];
    let len = base.len().min(15);
    name[..len].copy_from_slice(&base[..len]);
    if len > 0 && !name[..len].contains(&0) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        }
    }
}

/// Hands the heap's free pages back to the kernel (glibc `malloc_trim`). The jobs task
/// calls it when it goes idle: the pages a job's short-lived allocations touched are
/// otherwise kept resident until the next job. Cheap (a walk of the free lists and a
/// few `madvise` calls on a heap of a few hundred KiB), and only once per idle period.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the arenas' locks and returns free memory; it has
    // no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Option<OsString>) -> Option<String> {
        v.map(|v| v.into_string().unwrap())
    }

    #[test]
    fn adds_the_setting_when_there_are_no_tunables() {
        assert_eq!(
            s(tunables_without_tcache(None)).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            s(tunables_without_tcache(Some(OsStr::new("")))).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
    }

    #[test]
    fn keeps_the_operators_other_tunables() {
        assert_eq!(
            s(tunables_without_tcache(Some(OsStr::new(
                "glibc.malloc.arena_max=1"
            ))))
            .as_deref(),
            Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0")
        );
    }

    #[test]
    fn does_nothing_once_the_cache_size_is_set() {
        // Our own re-execution: no loop.
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new("glibc.malloc.tcache_count=0"))),
            None
        );
        // The operator's choice wins.
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new(
                "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=7"
            ))),
            None
        );
        // A different tunable with a similar name is not the cache size.
        assert!(
            tunables_without_tcache(Some(OsStr::new("glibc.malloc.tcache_count_x=1"))).is_some()
        );
    }
}
