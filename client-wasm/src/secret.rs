//! Fixed-size secrets that are wiped on drop and never printed.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! secret_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        // Secrets compare in constant time, so a comparison never leaks how many leading
        // bytes matched.
        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl Eq for $name {}

        impl $name {
            /// Wraps raw secret bytes.
            pub fn from_bytes(bytes: [u8; $len]) -> $name {
                $name(bytes)
            }

            /// The raw secret bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_bytes!(
    /// A 32-byte epoch secret `E_n`, chosen at random by the leader.
    EpochSecret,
    32
);
secret_bytes!(
    /// The 32-byte AES-256-GCM key shared by two members (see [`crate::key_schedule::pairwise_key`]).
    PairwiseKey,
    32
);
secret_bytes!(
    /// The 32-byte meeting secret `M` from the meeting link.
    MeetingSecret,
    32
);
secret_bytes!(
    /// A 16-byte SFrame base key for one sender in one epoch.
    BaseKey,
    16
);
secret_bytes!(
    /// A 16-byte AES-128-GCM chat key for one sender in one epoch (see [`crate::chat`]).
    ChatKey,
    16
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_bytes() {
        let s = EpochSecret::from_bytes([0xab; 32]);
        let printed = format!("{s:?}");
        assert_eq!(printed, "EpochSecret(<redacted>)");
        assert!(!printed.contains("ab"));
    }
}
