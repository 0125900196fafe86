//! Reconnection back-off, the same in every client: try `n` waits
//! `min(cap, base · 2^n) · (0.5 + 0.5 · random)`, so that a thousand subscribers
//! dropped by one restart do not come back in lockstep.

use std::time::Duration;

use rand::Rng;

/// Base and cap of the back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait, before jitter.
    pub base: Duration,
    /// The longest wait, before jitter.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before try `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        full.mul_f64(0.5 + 0.5 * rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let full = (b.base * 2u32.saturating_pow(attempt.min(20))).min(b.cap);
            let d = b.delay(attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?} of {full:?}");
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
