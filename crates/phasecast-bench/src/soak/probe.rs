//! The soak's view of the server process, from `/proc`: resident memory (`VmRSS`, and
//! its anonymous part `RssAnon`, which is the heap), the high-water mark `VmHWM`, open
//! descriptors and threads.

/// One reading of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// `VmRSS`, MB.
    pub(crate) rss_mb: f64,
    /// `RssAnon`, MB: what the allocator holds, without the mapped binary.
    pub(crate) anon_mb: f64,
    /// `VmHWM`, MB: the largest `VmRSS` since the process started, sampled or not.
    pub(crate) hwm_mb: f64,
    /// Open file descriptors.
    pub(crate) fds: f64,
    /// Threads.
    pub(crate) threads: f64,
}

/// Reads the server with process id `pid`; NaN for what cannot be read.
pub(crate) fn read(pid: u32) -> Reading {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Reading {
        rss_mb: kb_field(&status, "VmRSS:") / 1000.0,
        anon_mb: kb_field(&status, "RssAnon:") / 1000.0,
        hwm_mb: kb_field(&status, "VmHWM:") / 1000.0,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64),
        threads: number_field(&status, "Threads:"),
    }
}

/// A `/proc/<pid>/status` field in kB (`VmRSS:   16252 kB`, which the kernel means as
/// KiB), in thousands of bytes.
fn kb_field(status: &str, name: &str) -> f64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0 / 1000.0)
}

fn number_field(status: &str, name: &str) -> f64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let r = super::read(std::process::id());
        assert!(r.rss_mb > 1.0 && r.anon_mb > 0.0, "{r:?}");
        assert!(r.hwm_mb >= r.rss_mb, "{r:?}");
        assert!(r.fds >= 3.0 && r.threads >= 1.0, "{r:?}");
    }

    #[test]
    fn fields_in_kib_are_read_in_thousands_of_bytes() {
        let status = "Name:\tx\nVmHWM:\t   2000 kB\nVmRSS:\t   1000 kB\nThreads:\t3\n";
        assert_eq!(super::kb_field(status, "VmRSS:"), 1024.0);
        assert!(super::kb_field(status, "RssAnon:").is_nan());
        assert_eq!(super::number_field(status, "Threads:"), 3.0);
    }
}
