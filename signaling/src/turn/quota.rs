//! Allocation limits: per credential (one participant's join) and in total.
//!
//! A browser opens one allocation per PeerConnection, per TURN URL and per local
//! network interface (two PeerConnections × three URLs × an interface or two), so the
//! per-user default leaves room for that and little more. The total bounds the relay
//! sockets — file descriptors — the TURN server may hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Which limit a refused allocation hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// This user already holds its maximum.
    User,
    /// The server holds its maximum.
    Total,
}

/// Counts allocations by user and in total.
#[derive(Debug)]
pub(crate) struct Quota {
    max_total: usize,
    max_per_user: usize,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
}

/// A slot taken for an allocation being created. Dropping it gives the slot back;
/// [`Reservation::keep`] keeps it until [`Quota::release`] for that user.
#[derive(Debug)]
pub(crate) struct Reservation {
    quota: Arc<Quota>,
    user: Option<String>,
}

impl Quota {
    pub fn new(max_total: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Quota {
            max_total,
            max_per_user,
            inner: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `user`, or says which limit is reached.
    pub fn reserve(self: &Arc<Self>, user: &str) -> Result<Reservation, Exceeded> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Exceeded::Total);
        }
        let held = counts.per_user.get(user).copied().unwrap_or(0);
        if held >= self.max_per_user {
            return Err(Exceeded::User);
        }
        counts.total += 1;
        counts.per_user.insert(user.to_owned(), held + 1);
        Ok(Reservation {
            quota: self.clone(),
            user: Some(user.to_owned()),
        })
    }

    /// An allocation of `user` ended. False if `user` held none.
    pub fn release(&self, user: &str) -> bool {
        let mut counts = self.lock();
        let Some(held) = counts.per_user.get_mut(user) else {
            return false;
        };
        *held -= 1;
        if *held == 0 {
            counts.per_user.remove(user);
        }
        counts.total -= 1;
        true
    }

    /// Allocations held now.
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

impl Reservation {
    /// The allocation exists: keep the slot until it ends.
    pub fn keep(mut self) {
        self.user = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let _ = self.quota.release(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_in_total() {
        let quota = Quota::new(3, 2);
        quota.reserve("a").unwrap().keep();
        quota.reserve("a").unwrap().keep();
        assert_eq!(quota.reserve("a").unwrap_err(), Exceeded::User);
        quota.reserve("b").unwrap().keep();
        assert_eq!(quota.reserve("c").unwrap_err(), Exceeded::Total);
        assert_eq!(quota.total(), 3);

        assert!(quota.release("a"));
        quota.reserve("c").unwrap().keep();
        assert_eq!(quota.total(), 3);
    }

    #[test]
    fn a_dropped_reservation_gives_its_slot_back() {
        let quota = Quota::new(1, 1);
        let r = quota.reserve("a").unwrap();
        assert_eq!(quota.reserve("b").unwrap_err(), Exceeded::Total);
        drop(r);
        assert_eq!(quota.total(), 0);
        quota.reserve("b").unwrap().keep();
        // Releasing an unknown user changes nothing.
        assert!(!quota.release("nobody"));
        assert_eq!(quota.total(), 1);
    }
}
