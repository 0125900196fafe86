//! How the process's allocator treats large blocks.
//!
//! Most of what the memory budget (`memory.rs`) counts is large blocks: a retained
//! state's view (half a megabyte at 65,536 oscillators) and its encoded frames (up to
//! 1.4 MB). glibc's allocator takes blocks above a threshold straight from the
//! system and returns them when freed, but it raises that threshold each time such a
//! block is freed, up to 32 MiB. After the first few frames every large block then
//! comes from its heap, where short-lived frames and long-lived views interleave, and
//! freed space between live blocks stays resident. With states of 65,536 oscillators
//! that was about 50 MiB above the budget (`tests/it/memory.rs`).
//!
//! Setting the threshold once, at start, keeps it fixed: blocks of [`LARGE_BLOCK`]
//! and more are mapped and unmapped with their owner, so resident memory follows
//! what the budget counts. Smaller blocks (every state of up to about 16,000
//! oscillators) are untouched. glibc's own `MALLOC_MMAP_THRESHOLD_`, when set, is
//! left to decide. Other allocators and systems keep their defaults.

use std::io;

/// Blocks this large or larger are mapped from the system and returned when freed.
pub const LARGE_BLOCK: usize = 256 << 10;

/// Makes blocks of `threshold` bytes or more come straight from the system, unless
/// glibc was told otherwise through its environment.
///
/// # Errors
/// When the allocator refuses, or is not glibc's.
pub fn map_large_blocks(threshold: usize) -> io::Result<()> {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return Ok(());
    }
    imp::map_large_blocks(threshold)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    use std::io;

    pub(super) fn map_large_blocks(threshold: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(threshold)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "threshold too large"))?;
        // SAFETY: mallopt only sets a tunable of the allocator; it is thread-safe and
        // has no other effect on memory already allocated.
        match unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) } {
            1 => Ok(()),
            _ => Err(io::Error::other("mallopt(M_MMAP_THRESHOLD) refused")),
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use std::io;

    pub(super) fn map_large_blocks(_: usize) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc accepts the threshold. Its effect, resident memory that follows the
    /// budget, is what `tests/it/memory.rs` measures on the real binary.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_threshold() {
        map_large_blocks(LARGE_BLOCK).unwrap();
    }
}
