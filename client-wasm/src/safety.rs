//! The safety number: five groups of four digits that are equal for every member exactly when
//! all members see the same roster of (id, public key) pairs.

use sha2::{Digest, Sha256};

use crate::identity::PUBLIC_KEY_LEN;

/// Label that starts the safety number's digest.
pub const SAFETY_LABEL: &[u8] = b"sealed v1 safety";

/// The safety number of a roster given as (id, public key) pairs **in ascending id order**,
/// self included.
///
/// `digest = SHA-256("sealed v1 safety" ‖ for each member: id u64 BE ‖ public key)`;
/// group `i` (0..5) is the big-endian u32 of `digest[4i..4i+4]` mod 10000, zero-padded to
/// four digits; groups are joined by single spaces.
pub fn safety_number<'a>(
    members: impl IntoIterator<Item = (u64, &'a [u8; PUBLIC_KEY_LEN])>,
) -> String {
    let mut h = Sha256::new();
    h.update(SAFETY_LABEL);
    for (id, pk) in members {
        h.update(id.to_be_bytes());
        h.update(pk);
    }
    let digest: [u8; 32] = h.finalize().into();
    let groups: Vec<String> = digest
        .chunks_exact(4)
        .take(5)
        .map(|c| {
            format!(
                "{:04}",
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]) % 10_000
            )
        })
        .collect();
    groups.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_sensitivity() {
        let a = [4u8; 65];
        let b = [5u8; 65];
        let code = safety_number([(1, &a), (2, &b)]);
        assert_eq!(code.len(), 24);
        assert!(
            code.split(' ')
                .all(|g| g.len() == 4 && g.bytes().all(|c| c.is_ascii_digit()))
        );
        assert_ne!(code, safety_number([(1, &a), (2, &a)]));
        assert_ne!(code, safety_number([(1, &a), (3, &b)]));
        assert_eq!(code, safety_number([(1, &a), (2, &b)]));
    }
}
