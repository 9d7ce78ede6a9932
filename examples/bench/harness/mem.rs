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

/// CPU time (user + system) of `pid` and of its reaped children, in milliseconds.
pub fn cpu_ms(pid: u32) -> io::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat");
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // Fields after the command name start at field 3 (state); utime is field 14.
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().map_err(|_| bad()))
        .collect::<io::Result<_>>()?;
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let ms = |t: u64| t as f64 * 1000.0 / tick;
    Ok((ms(f[0] + f[1]), ms(f[2] + f[3])))
}
