//! A per-connection token bucket.
//!
//! Each connection may send `rate` messages a second on average and `burst` at once.
//! Every incoming WebSocket message (text, binary, ping) costs one token. When the
//! bucket is empty the message is dropped unread.
//!
//! A *flood* starts with the first dropped message and ends only when the bucket is
//! full again, i.e. when the client has kept below its rate long enough to earn the
//! whole burst back (2 s at the defaults). Its first drop earns the client one
//! `rate_limited` error (not one per dropped message: answering every message of a
//! flood would make us the amplifier), and more than `close_after` drops in one flood
//! close the connection. A token regained in the middle of a flood does not end it:
//! otherwise a client sending at four times the rate would regain a token every few
//! messages, never be closed, and earn a `rate_limited` error each time.
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
        if self.tokens >= self.burst {
            // The client paused long enough to refill the bucket: the flood is over.
            self.dropped_in_flood = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
    fn a_long_flood_closes_and_only_a_full_bucket_ends_a_flood() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, 2, 3, t0);
        assert_eq!(limiter.check(t0), Verdict::Allow);
        assert_eq!(limiter.check(t0), Verdict::Allow);
        assert_eq!(limiter.check(t0), Verdict::Drop { notify: true });
        // A token comes back, but the bucket is not full: still the same flood.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(t1), Verdict::Allow);
        assert_eq!(limiter.check(t1), Verdict::Drop { notify: false });
        // A pause that refills the bucket ends it; the next flood is told again.
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!(limiter.check(t2), Verdict::Allow);
        assert_eq!(limiter.check(t2), Verdict::Allow);
        assert_eq!(limiter.check(t2), Verdict::Drop { notify: true });
        assert_eq!(limiter.check(t2), Verdict::Drop { notify: false });
        assert_eq!(limiter.check(t2), Verdict::Drop { notify: false });
        assert_eq!(limiter.check(t2), Verdict::Close);
    }

    /// Sends `per_second` messages a second for up to `seconds` at the default limits;
    /// returns when the limiter closed (if it did) and how many notices it sent.
    fn flood(per_second: u32, seconds: u32) -> (Option<Duration>, u32) {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(50, 100, 200, t0);
        let mut notices = 0;
        for i in 0..per_second * seconds {
            let at = Duration::from_secs_f64(f64::from(i) / f64::from(per_second));
            match limiter.check(t0 + at) {
                Verdict::Allow => {}
                Verdict::Drop { notify } => notices += u32::from(notify),
                Verdict::Close => return (Some(at), notices),
            }
        }
        (None, notices)
    }

    #[test]
    fn floods_above_the_rate_close_after_200_drops_with_one_notice() {
        // 200/s: 150 drops a second after the burst is spent.
        let (closed, notices) = flood(200, 10);
        let closed = closed.expect("a 200/s flood must close");
        assert!(closed < Duration::from_secs(3), "{closed:?}");
        assert_eq!(notices, 1);
        for rate in [1000, 2000, 10_000] {
            let (closed, notices) = flood(rate, 10);
            assert!(closed.expect("must close") < Duration::from_secs(1));
            assert_eq!(notices, 1, "{rate}/s");
        }
        // At the rate: never a drop.
        assert_eq!(flood(50, 30), (None, 0));
    }
}
