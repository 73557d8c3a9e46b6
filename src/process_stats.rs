//! Process CPU, memory and file descriptors, read from Linux's `/proc/self` (or
//! `/proc/<pid>` of another process, for benchmarks).
//!
//! Values are 0 where `/proc` is not available; the metrics still render.

/// A snapshot of this process's resource use.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub resident_bytes: f64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// Process start, seconds since the epoch.
    pub start_time_seconds: f64,
}

// Linux reports times in clock ticks and memory in pages; both are fixed at 100 Hz and
// 4 KiB on the platforms promflow ships for (x86_64, aarch64 Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: f64 = 4096.0;

/// Reads the current values.
pub fn read() -> ProcessStats {
    read_process("self")
}

/// Reads the current values of process `pid` (`"self"` for this one).
pub fn read_process(pid: &str) -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // Indices relative to field 3 (state): utime=14, stime=15, starttime=22, vsize=23, rss=24.
            stats.cpu_seconds = (field(11) + field(12)) / CLOCK_TICKS_PER_SECOND;
            stats.virtual_bytes = field(20);
            stats.resident_bytes = field(21) * PAGE_SIZE;
            let boot_time = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("btime ")
                            .and_then(|v| v.trim().parse::<f64>().ok())
                    })
                })
                .unwrap_or(0.0);
            stats.start_time_seconds = boot_time + field(19) / CLOCK_TICKS_PER_SECOND;
        }
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        stats.open_fds = dir.count() as f64;
    }
    stats
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_plausible_values_on_linux() {
        let s = super::read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(s.resident_bytes > 0.0);
            assert!(s.open_fds > 0.0);
            assert!(s.start_time_seconds > 1_000_000_000.0);
        }
    }
}
