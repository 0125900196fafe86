//! Producer rate limits: a token bucket per client IP (HTTP) or per connection
//! (`/ingest`), refilled at the configured states per second with one second of burst.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` states per second.
    pub(super) fn new(rate: u32) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Takes one token; when none is left, how long until one is.
    pub(super) fn take(&mut self, rate: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Buckets by client IP.
#[derive(Debug)]
pub struct RateLimiter {
    /// States per second; 0 means no limit.
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Past this many tracked IPs, buckets idle for a while are forgotten.
const MAX_TRACKED: usize = 4096;

impl RateLimiter {
    /// A limiter of `rate` states per second per IP (0: unlimited).
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate (0: unlimited).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Counts one state from `ip`.
    ///
    /// # Errors
    /// How long to wait when `ip` is over its rate.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            // A full bucket after 1 s idle is the same as a new one: forget those.
            buckets.retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(1));
        }
        buckets
            .entry(ip)
            .or_insert_with(|| Bucket::new(self.rate))
            .take(self.rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Bucket {
            tokens: 10.0,
            last: start,
        };
        for _ in 0..10 {
            assert!(b.take(10, start).is_ok());
        }
        let wait = b.take(10, start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(10, start + Duration::from_millis(100)).is_ok());
        assert!(b.take(10, start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn limiter_is_per_ip_and_zero_is_unlimited() {
        let l = RateLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        assert!(l.check(a).is_err());
        assert!(l.check(b).is_ok());
        let open = RateLimiter::new(0);
        assert!((0..10_000).all(|_| open.check(a).is_ok()));
    }
}
