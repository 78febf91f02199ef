//! Sources of randomness. The engine takes one as a parameter so that tests can be
//! deterministic; production code uses [`OsRandom`].

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Something that fills buffers with random bytes.
///
/// `Send`, so that a [`Session`](crate::Session) can move between threads (e.g. live in a
/// tokio task).
pub trait RandomSource: Send {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's (or, in the browser, `crypto.getRandomValues`') randomness.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // Failure of the platform RNG leaves no safe way to continue: no key may be made.
        #[allow(clippy::expect_used)]
        getrandom::fill(buf).expect("the platform random number generator failed");
    }
}

/// A deterministic generator for tests, fixtures and benchmarks: SHA-256(seed ‖ counter).
///
/// **Never use it for real sessions**: its output is predictable from the seed.
#[derive(Clone)]
pub struct DeterministicRandom {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl DeterministicRandom {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: &[u8]) -> DeterministicRandom {
        DeterministicRandom {
            seed: Sha256::digest(seed).into(),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RandomSource for DeterministicRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

impl Drop for DeterministicRandom {
    fn drop(&mut self) {
        self.seed.zeroize();
        self.block.zeroize();
    }
}

impl std::fmt::Debug for DeterministicRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeterministicRandom")
            .finish_non_exhaustive()
    }
}
