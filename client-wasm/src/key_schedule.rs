//! Every derivation of Sealed's key schedule, as pure functions (byte layouts in
//! `docs/PROTOCOL.md`).
//!
//! ```text
//! pairwise key  = HKDF-SHA256(salt = M, ikm = ECDH x, info = "sealed v1 pairwise" ‖ room ‖ 0x00 ‖ lo_pk ‖ hi_pk, L = 32)
//! base_key      = HKDF-SHA256-Expand(PRK = E_n, info = "sealed v2 sender" ‖ sender_id u64 BE ‖ n u64 BE, L = 16)
//! KID           = sender_id << 8 | (n mod 256)
//! roster hash   = SHA-256("sealed v1 roster" ‖ for each member ascending: id u64 BE ‖ 65-byte public key)
//! ```

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::identity::PUBLIC_KEY_LEN;
use crate::secret::{BaseKey, EpochSecret, MeetingSecret, PairwiseKey};

/// Sender ids must be below this bound: the KID is `sender_id << 8 | epoch mod 256` in 64 bits.
pub const SENDER_ID_LIMIT: u64 = 1 << 56;

/// Label of the pairwise key's HKDF info.
pub const PAIRWISE_LABEL: &[u8] = b"sealed v1 pairwise";
/// Label of the sender base key's HKDF info.
pub const SENDER_LABEL: &[u8] = b"sealed v2 sender";
/// Label of the roster hash.
pub const ROSTER_LABEL: &[u8] = b"sealed v1 roster";
/// Label that starts the associated data of every key message.
pub const KEY_MESSAGE_LABEL: &[u8] = b"sealed v1 key message";
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// The pairwise key two members share.
///
/// `shared_x` is the x-coordinate of the P-256 ECDH result; the two public keys may be given
/// in either order (they are sorted bytewise here).
pub fn pairwise_key(
    meeting_secret: &MeetingSecret,
    room: &str,
    shared_x: &[u8; 32],
    public_a: &[u8; PUBLIC_KEY_LEN],
    public_b: &[u8; PUBLIC_KEY_LEN],
) -> PairwiseKey {
    let (lo, hi) = if public_a <= public_b {
        (public_a, public_b)
    } else {
        (public_b, public_a)
    };
    let hk = Hkdf::<Sha256>::new(Some(meeting_secret.as_bytes()), shared_x);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 × 32 limit.
    let expanded = hk.expand_multi_info(&[PAIRWISE_LABEL, room.as_bytes(), &[0], lo, hi], &mut okm);
    debug_assert!(expanded.is_ok());
    let key = PairwiseKey::from_bytes(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    key
}

/// The SFrame base key of `sender_id` in epoch `epoch`, whose secret is `epoch_secret`.
///
/// The epoch number is bound in, so epochs `n` and `n + 256` (same KIDs) never share a key
/// even if a secret were reused.
pub fn base_key(epoch_secret: &EpochSecret, sender_id: u64, epoch: u64) -> BaseKey {
    let okm = expand_epoch_secret(
        epoch_secret,
        &[SENDER_LABEL, &sender_id.to_be_bytes(), &epoch.to_be_bytes()],
    );
    BaseKey::from_bytes(*okm)
}

/// `HKDF-SHA256-Expand(PRK = epoch secret, info = the parts concatenated, L = 16)`: the
/// derivation of every per-sender key of an epoch (frames and chat).
pub(crate) fn expand_epoch_secret(
    epoch_secret: &EpochSecret,
    info: &[&[u8]],
) -> zeroize::Zeroizing<[u8; 16]> {
    let mut okm = zeroize::Zeroizing::new([0u8; 16]);
    // A 32-byte PRK is exactly SHA-256's length, so `from_prk` cannot fail; neither can a
    // 16-byte expand.
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(epoch_secret.as_bytes()) {
        let expanded = hk.expand_multi_info(info, okm.as_mut());
        debug_assert!(expanded.is_ok());
    }
    okm
}

/// The SFrame KID of `sender_id` in `epoch`.
pub fn kid(sender_id: u64, epoch: u64) -> Result<u64, EngineError> {
    check_sender_id(sender_id)?;
    Ok(sender_id << 8 | (epoch & 0xff))
}

/// Refuses sender ids that do not fit the KID layout.
pub fn check_sender_id(sender_id: u64) -> Result<(), EngineError> {
    if sender_id >= SENDER_ID_LIMIT {
        return Err(EngineError::SenderIdTooLarge(sender_id));
    }
    Ok(())
}

/// SHA-256 over a roster given as (id, public key) pairs in ascending id order.
pub fn roster_hash<'a>(
    members: impl IntoIterator<Item = (u64, &'a [u8; PUBLIC_KEY_LEN])>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ROSTER_LABEL);
    for (id, pk) in members {
        h.update(id.to_be_bytes());
        h.update(pk);
    }
    h.finalize().into()
}

/// The associated data of a key message from `from` to `to`: the label, the room, both ids
/// and the message's clear bytes (everything before its nonce).
pub fn key_message_aad(room: &str, from: u64, to: u64, clear: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(KEY_MESSAGE_LABEL.len() + room.len() + 17 + clear.len());
    aad.extend_from_slice(KEY_MESSAGE_LABEL);
    aad.extend_from_slice(room.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&from.to_be_bytes());
    aad.extend_from_slice(&to.to_be_bytes());
    aad.extend_from_slice(clear);
    aad
}

/// AES-256-GCM encryption: returns `ciphertext ‖ tag`.
pub fn seal(key: &PairwiseKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    // Encryption only fails for plaintexts beyond 2^36 bytes; ours are at most 32.
    match cipher.encrypt_inout_detached(&Nonce::from(*nonce), aad, out.as_mut_slice().into()) {
        Ok(tag) => out.extend_from_slice(&tag),
        Err(_) => out.clear(),
    }
    out
}

/// AES-256-GCM decryption of `ciphertext ‖ tag`; `None` when it does not authenticate.
pub fn open(
    key: &PairwiseKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let tag = Tag::try_from(tag).ok()?;
    let mut out = zeroize::Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, out.as_mut_slice().into(), &tag)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_layout() {
        assert_eq!(kid(1, 0).unwrap(), 0x100);
        assert_eq!(kid(0x1234, 0x1ff).unwrap(), 0x1234ff);
        assert_eq!(kid(SENDER_ID_LIMIT - 1, 3).unwrap(), u64::MAX - 0xff + 3);
        assert_eq!(
            kid(SENDER_ID_LIMIT, 0),
            Err(EngineError::SenderIdTooLarge(SENDER_ID_LIMIT))
        );
    }

    #[test]
    fn base_keys_differ_per_sender_and_secret() {
        let e1 = EpochSecret::from_bytes([1; 32]);
        let e2 = EpochSecret::from_bytes([2; 32]);
        assert_ne!(
            base_key(&e1, 1, 0).as_bytes(),
            base_key(&e1, 2, 0).as_bytes()
        );
        assert_ne!(
            base_key(&e1, 1, 0).as_bytes(),
            base_key(&e2, 1, 0).as_bytes()
        );
    }

    #[test]
    fn base_keys_differ_for_epochs_with_the_same_kid() {
        let e = EpochSecret::from_bytes([1; 32]);
        for n in [0u64, 7, 255, 1 << 40] {
            assert_eq!(kid(3, n).unwrap(), kid(3, n + 256).unwrap());
            assert_ne!(
                base_key(&e, 3, n).as_bytes(),
                base_key(&e, 3, n + 256).as_bytes()
            );
        }
    }

    #[test]
    fn pairwise_key_ignores_argument_order_but_not_room_or_secret() {
        let m = MeetingSecret::from_bytes([9; 32]);
        let x = [3u8; 32];
        let a = [4u8; 65];
        let mut b = [4u8; 65];
        b[64] = 5;
        let k = pairwise_key(&m, "room", &x, &a, &b);
        assert_eq!(k, pairwise_key(&m, "room", &x, &b, &a));
        assert_ne!(k, pairwise_key(&m, "room2", &x, &a, &b));
        assert_ne!(
            k,
            pairwise_key(&MeetingSecret::from_bytes([8; 32]), "room", &x, &a, &b)
        );
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = PairwiseKey::from_bytes([5; 32]);
        let n = [6; 12];
        let sealed = seal(&k, &n, b"aad", &[7; 32]);
        assert_eq!(sealed.len(), 48);
        assert_eq!(open(&k, &n, b"aad", &sealed).unwrap().as_slice(), &[7; 32]);
        assert!(open(&k, &n, b"aaD", &sealed).is_none());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(open(&k, &n, b"aad", &bad).is_none());
        assert!(open(&k, &n, b"aad", &sealed[..10]).is_none());
    }
}
