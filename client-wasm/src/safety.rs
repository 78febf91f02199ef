//! The safety number: eight groups of five digits that are equal for every member exactly
//! when all members see the same roster of (id, public key) pairs.

use sha2::{Digest, Sha512};

use crate::identity::PUBLIC_KEY_LEN;

/// Label that starts the safety number's digest.
pub const SAFETY_LABEL: &[u8] = b"sealed v2 safety";
/// Number of five-digit groups.
pub const SAFETY_GROUPS: usize = 8;

/// The safety number of a roster given as (id, public key) pairs **in ascending id order**,
/// self included.
///
/// `digest = SHA-512("sealed v2 safety" ‖ for each member: id u64 BE ‖ public key)`;
/// group `i` (0..8) is `digest[5i..5i+5]` as a 40-bit big-endian integer mod 100000,
/// zero-padded to five digits; groups are joined by single spaces. That is 8 × log2(10^5)
/// ≈ 133 bits: finding two rosters with equal numbers costs about 2^66 work, a second roster
/// matching a given one about 2^133.
pub fn safety_number<'a>(
    members: impl IntoIterator<Item = (u64, &'a [u8; PUBLIC_KEY_LEN])>,
) -> String {
    let mut h = Sha512::new();
    h.update(SAFETY_LABEL);
    for (id, pk) in members {
        h.update(id.to_be_bytes());
        h.update(pk);
    }
    let digest = h.finalize();
    let groups: Vec<String> = digest
        .chunks_exact(5)
        .take(SAFETY_GROUPS)
        .map(|c| {
            let value = c.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            format!("{:05}", value % 100_000)
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
        assert_eq!(code.len(), 8 * 5 + 7);
        assert!(
            code.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
        );
        assert_ne!(code, safety_number([(1, &a), (2, &a)]));
        assert_ne!(code, safety_number([(1, &a), (3, &b)]));
        assert_eq!(code, safety_number([(1, &a), (2, &b)]));
    }

    #[test]
    fn groups_are_40_bit_big_endian_mod_100000() {
        // Recomputed by hand from the digest, independently of the fold above.
        let a = [4u8; 65];
        let mut h = Sha512::new();
        h.update(SAFETY_LABEL);
        h.update(1u64.to_be_bytes());
        h.update(a);
        let d = h.finalize();
        let first = (u64::from(d[0]) << 32
            | u64::from(d[1]) << 24
            | u64::from(d[2]) << 16
            | u64::from(d[3]) << 8
            | u64::from(d[4]))
            % 100_000;
        let code = safety_number([(1, &a)]);
        assert_eq!(code.split(' ').next().unwrap(), format!("{first:05}"));
    }
}
