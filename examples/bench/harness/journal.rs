//! Figure 8: the cost of one durable journal write on this disk, through
//! `jobs::journal` itself (what the daemon pays before a side effect, network aside):
//! a 2,500-byte record (the size of a one-step job's record) appended with `fdatasync`,
//! `n` times, to a fresh journal in the work directory; the file's rotations (temp file,
//! fsync, rename, directory fsync, every ~400 writes of this size) are included.

use std::path::Path;
use std::time::Instant;

use iotjobs::jobs::journal::Journal;

use super::stats::Samples;

/// Bytes of the record written.
pub const RECORD_BYTES: usize = 2500;

/// Milliseconds per write, `writes` samples.
pub async fn run(work: &Path, writes: usize) -> anyhow::Result<Samples> {
    let dir = work.join("journal-write");
    let samples = tokio::task::spawn_blocking(move || -> anyhow::Result<Samples> {
        let mut journal = Journal::open(&dir)?;
        let payload = vec![b' '; RECORD_BYTES];
        let mut ms = Vec::with_capacity(writes);
        for _ in 0..writes {
            let began = Instant::now();
            journal.append(&payload, true)?;
            ms.push(began.elapsed().as_secs_f64() * 1e3);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(Samples::new(ms))
    })
    .await??;
    Ok(samples)
}
