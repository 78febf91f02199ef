//! A per-connection token bucket.
//!
//! Each connection may send `rate` messages a second on average and `burst` at once.
//! Every incoming WebSocket message (text, binary, ping) costs one token. When the
//! bucket is empty the message is dropped unread; the first drop of a flood earns the
//! client one `rate_limited` error (not one per dropped message: answering every
//! message of a flood would make us the amplifier), and a flood that goes on for
//! `close_after` messages without a single token regained closes the connection.
//!
//! Sans-IO: the caller passes the current time, so tests need no sleeping. A
//! dedicated crate (`governor`) exists, but its keyed, lock-free, multi-threaded
//! machinery buys nothing for one bucket owned by one task.

use tokio::time::Instant;

/// What to do with one incoming message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Allow,
    /// Drop it; if `notify`, tell the client with a `rate_limited` error.
    Drop {
        /// First drop of this flood.
        notify: bool,
    },
    /// The flood went on too long: close the connection.
    Close,
}

/// A token bucket with flood detection.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    rate_per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    dropped_in_flood: u32,
    close_after: u32,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilling at `rate_per_second`.
    pub fn new(rate_per_second: u32, burst: u32, close_after: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate_per_second: f64::from(rate_per_second),
            burst,
            tokens: burst,
            last: now,
            dropped_in_flood: 0,
            close_after,
        }
    }

    /// Charges one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.dropped_in_flood = 0;
            return Verdict::Allow;
        }
        self.dropped_in_flood = self.dropped_in_flood.saturating_add(1);
        if self.dropped_in_flood > self.close_after {
            Verdict::Close
        } else {
            Verdict::Drop {
                notify: self.dropped_in_flood == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_messages_are_dropped_with_one_notice() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(50, 100, 1000, t0);
        for _ in 0..100 {
            assert_eq!(limiter.check(t0), Verdict::Allow);
        }
        assert_eq!(limiter.check(t0), Verdict::Drop { notify: true });
        for _ in 0..10 {
            assert_eq!(limiter.check(t0), Verdict::Drop { notify: false });
        }
    }

    #[test]
    fn tokens_refill_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(50, 100, 1000, t0);
        for _ in 0..100 {
            limiter.check(t0);
        }
        // 100 ms at 50/s = 5 tokens.
        let t1 = t0 + Duration::from_millis(100);
        for _ in 0..5 {
            assert_eq!(limiter.check(t1), Verdict::Allow);
        }
        assert_eq!(limiter.check(t1), Verdict::Drop { notify: true });
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..100 {
            assert_eq!(limiter.check(t2), Verdict::Allow);
        }
        assert!(matches!(limiter.check(t2), Verdict::Drop { .. }));
    }

    #[test]
    fn a_long_flood_closes_and_a_regained_token_resets_the_flood() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, 1, 3, t0);
        assert_eq!(limiter.check(t0), Verdict::Allow);
        assert_eq!(limiter.check(t0), Verdict::Drop { notify: true });
        assert_eq!(limiter.check(t0), Verdict::Drop { notify: false });
        // A token comes back: the flood is over, the count starts again.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(t1), Verdict::Allow);
        assert_eq!(limiter.check(t1), Verdict::Drop { notify: true });
        assert_eq!(limiter.check(t1), Verdict::Drop { notify: false });
        assert_eq!(limiter.check(t1), Verdict::Drop { notify: false });
        assert_eq!(limiter.check(t1), Verdict::Close);
    }
}
