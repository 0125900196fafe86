//! Scheduling hints for the threads that accept states.
//!
//! On a loaded machine the threads that take a producer's state compete for a core
//! with the fan-out's workers (and whatever else runs there). Linux's scheduler
//! (EEVDF, 6.6 and later) lets a thread ask for a shorter time slice: its deadlines
//! come sooner, so when it wakes (a `POST` arrived) it preempts a long-running
//! thread within a fraction of a millisecond instead of waiting out that thread's
//! slice. Its share of the CPU does not change, so the fan-out loses nothing but the
//! moment. Elsewhere (other systems, older kernels) the hint does nothing.

use std::{io, time::Duration};

/// The slice the ingest runtime's threads ask for.
pub const INGEST_SLICE: Duration = Duration::from_micros(200);

/// Asks the scheduler for `slice` as the calling thread's time slice.
///
/// # Errors
/// When the system refuses (an old kernel ignores the field and succeeds), or on
/// systems other than Linux.
pub fn request_slice(slice: Duration) -> io::Result<()> {
    imp::request_slice(slice)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use std::{io, time::Duration};

    /// `struct sched_attr` (`include/uapi/linux/sched/types.h`, version 1: 56 bytes).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        /// For `SCHED_OTHER`, the requested slice in nanoseconds (0: the default).
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }

    pub(super) fn request_slice(slice: Duration) -> io::Result<()> {
        // SAFETY: getpriority has no memory effects; it reads the calling thread's
        // nice value, which sched_setattr would otherwise reset to 0.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            deadline: 0,
            period: 0,
            util_min: 0,
            util_max: 0,
        };
        // SAFETY: `attr` is a valid, initialised sched_attr whose `size` is its own
        // size; the kernel only reads it. Pid 0 is the calling thread.
        let r =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::from_ref(&attr), 0u32) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::{io, time::Duration};

    pub(super) fn request_slice(_: Duration) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_slice_is_what_the_kernel_reports() {
        // On its own thread: the hint stays with the thread that asked.
        std::thread::spawn(|| {
            request_slice(Duration::from_micros(300)).unwrap();
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
            // Kernels with EEVDF report the slice; older ones accept and ignore it.
            if let Some(line) = sched.lines().find(|l| l.starts_with("se.slice")) {
                let value = line.split(':').nth(1).unwrap().trim();
                assert_eq!(value, "300000", "{line}");
            }
        })
        .join()
        .unwrap();
    }
}
