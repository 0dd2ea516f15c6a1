//! Facts about this process and machine: wall-clock time, memory use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Memory in use and available to this process: the cgroup (v2) limit when one is
/// set, as in a Kubernetes pod, else the whole machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryUsage {
    pub fn read() -> Option<Self> {
        Self::from_cgroup().or_else(Self::from_meminfo)
    }

    /// Share of the total in use, 0.0..=1.0.
    pub fn ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.total_bytes as f64
        }
    }

    fn from_cgroup() -> Option<Self> {
        let max = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
        let total_bytes = max.trim().parse::<u64>().ok()?; // "max" means no limit
        let current: u64 = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The working set, as the kubelet counts it: page cache the kernel can drop
        // (inactive files: segment files written, the embedded stores) is not in use.
        let inactive_file = std::fs::read_to_string("/sys/fs/cgroup/memory.stat")
            .ok()
            .and_then(|stat| stat_field(&stat, "inactive_file"))
            .unwrap_or(0);
        Some(Self {
            used_bytes: current.saturating_sub(inactive_file),
            total_bytes,
        })
    }

    fn from_meminfo() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_meminfo(&text)
    }
}

/// A `name value` line of a cgroup `memory.stat`.
fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

fn parse_meminfo(text: &str) -> Option<MemoryUsage> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some(MemoryUsage {
        used_bytes: total.saturating_sub(available),
        total_bytes: total,
    })
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:    4000 kB\n";
        let m = parse_meminfo(text).expect("parsed");
        assert_eq!(m.total_bytes, 16000 * 1024);
        assert_eq!(m.used_bytes, 12000 * 1024);
        assert!((m.ratio() - 0.75).abs() < 1e-9);
        assert!(parse_meminfo("junk").is_none());
    }

    #[test]
    fn cgroup_stat_fields_are_read() {
        let stat = "anon 1000\nfile 5000\ninactive_file 4000\nactive_file 1000\n";
        assert_eq!(stat_field(stat, "inactive_file"), Some(4000));
        assert_eq!(stat_field(stat, "file"), Some(5000));
        assert_eq!(stat_field(stat, "shmem"), None);
        assert_eq!(stat_field("inactive_file x", "inactive_file"), None);
    }

    #[test]
    fn this_machine_reports_memory() {
        let m = MemoryUsage::read().expect("memory readable on Linux");
        assert!(m.total_bytes > 0 && m.used_bytes <= m.total_bytes);
    }
}
