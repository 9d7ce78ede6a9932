//! Memory of a process from /proc: RSS and PSS from `smaps_rollup`, RssAnon (private,
//! anonymous: heap and stacks) from `status`. All in KiB.

use std::io;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub anon_kib: u64,
}

fn field(text: &str, name: &str) -> io::Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {name} in /proc")))
}

pub fn sample(pid: u32) -> io::Result<Mem> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Mem {
        rss_kib: field(&rollup, "Rss:")?,
        pss_kib: field(&rollup, "Pss:")?,
        anon_kib: field(&status, "RssAnon:")?,
    })
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.2} MiB, PSS {:.2} MiB, RssAnon {:.2} MiB",
            mib(self.rss_kib),
            mib(self.pss_kib),
            mib(self.anon_kib)
        )
    }
}
