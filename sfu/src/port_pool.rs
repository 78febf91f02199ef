//! The UDP port pool: one port per PeerConnection, taken from the configured range and
//! returned when the connection is gone.
//!
//! webrtc-rs 0.21 binds one socket per PeerConnection (it has no single-port UDP mux), so
//! the range bounds how many connections the SFU can hold: two per participant with media
//! (taken when media starts, not at join). A lease is a value ([`PortLease`]); dropping it
//! returns the port. When a mux arrives, the pool becomes one shared socket and leases
//! become cheap tokens — callers do not change.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// Free ports of the configured range.
#[derive(Debug)]
pub(crate) struct PortPool {
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    free: BTreeSet<u16>,
    /// Where the next search starts: ports are handed out round-robin so a just-freed port
    /// (whose old peer may still send to it for a moment) is reused last.
    next: u16,
}

/// A port taken from the pool; returned on drop.
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
    pool: Arc<PortPool>,
}

impl PortPool {
    /// A pool holding every port of `range` (empty if the range is empty).
    pub fn new(range: RangeInclusive<u16>) -> Arc<Self> {
        let next = *range.start();
        Arc::new(Self {
            state: Mutex::new(PoolState {
                free: range.collect(),
                next,
            }),
        })
    }

    /// Takes a free port, or `None` if all are leased.
    pub fn acquire(self: &Arc<Self>) -> Option<PortLease> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let port = state
            .free
            .range(state.next..)
            .next()
            .or_else(|| state.free.iter().next())
            .copied()?;
        state.free.remove(&port);
        state.next = port.wrapping_add(1);
        Some(PortLease {
            port,
            pool: Arc::clone(self),
        })
    }

    /// How many ports are free right now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .len()
    }

    fn release(&self, port: u16) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .insert(port);
    }
}

impl PortLease {
    /// The leased port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_and_returned_on_drop() {
        let pool = PortPool::new(5000..=5002);
        let a = pool.acquire().expect("a");
        let b = pool.acquire().expect("b");
        let c = pool.acquire().expect("c");
        let mut ports = vec![a.port(), b.port(), c.port()];
        ports.sort_unstable();
        assert_eq!(ports, vec![5000, 5001, 5002]);
        assert!(pool.acquire().is_none(), "exhausted");
        drop(b);
        assert_eq!(pool.available(), 1);
        let d = pool.acquire().expect("returned port is reusable");
        assert_eq!(d.port(), 5001);
        drop((a, c, d));
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn round_robin_reuses_freed_ports_last() {
        let pool = PortPool::new(6000..=6002);
        let a = pool.acquire().expect("a");
        assert_eq!(a.port(), 6000);
        drop(a);
        let b = pool.acquire().expect("b");
        assert_eq!(b.port(), 6001, "6000 was just freed: reuse it last");
    }

    #[test]
    fn empty_range_gives_nothing() {
        #[allow(clippy::reversed_empty_ranges)]
        let pool = PortPool::new(10..=9);
        assert!(pool.acquire().is_none());
    }
}
