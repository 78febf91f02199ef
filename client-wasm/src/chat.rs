//! End-to-end encrypted chat messages under the epoch secrets of the frame layer.
//!
//! ```text
//! chat_key = HKDF-SHA256-Expand(PRK = E_n, info = "sealed v2 chat" ‖ sender_id u64 ‖ n u64, L = 16)
//! nonce    = 00 00 00 00 ‖ seq u64
//! aad      = "sealed v2 chat" ‖ room ‖ 0x00 ‖ sender_id u64 ‖ n u64 ‖ seq u64
//! payload  = n u64 ‖ seq u64 ‖ AES-128-GCM(chat_key, nonce, aad, plaintext) (ciphertext ‖ tag)
//! ```
//!
//! `seq` counts from 0 per sender and epoch and is never reused, so a (key, nonce) pair never
//! repeats. Receivers accept, per (sender, epoch), only a `seq` above every one they accepted
//! before: the relay (one WebSocket per member) keeps a sender's messages in order, so a lower
//! or equal `seq` can only be a replay or a reordering by the server, and is refused.
//! Byte layouts are in `docs/PROTOCOL.md` ("Chat").

use std::collections::HashMap;

use crate::key_schedule::{TAG_LEN, expand_epoch_secret};
use crate::secret::{ChatKey, EpochSecret};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};

/// Label of the chat key's HKDF info and of the chat associated data.
pub const CHAT_LABEL: &[u8] = b"sealed v2 chat";
/// Largest chat plaintext, in bytes.
pub const MAX_CHAT_PLAINTEXT: usize = 4096;
/// Bytes before the ciphertext in a chat payload: epoch u64 ‖ seq u64.
pub const CHAT_HEADER_LEN: usize = 16;
/// Largest chat payload: header, the largest plaintext and the tag.
pub const MAX_CHAT_PAYLOAD: usize = CHAT_HEADER_LEN + MAX_CHAT_PLAINTEXT + TAG_LEN;

/// Why a chat message could not be encrypted, or was rejected on decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The payload is not `epoch ‖ seq ‖ ciphertext ‖ tag`.
    #[error("malformed chat message")]
    Malformed,
    /// The plaintext is over 4096 bytes (or the payload over its largest size).
    #[error("chat message too large")]
    TooLarge,
    /// This session may not send now: no key yet, or sending is paused.
    #[error("not sending: no usable key")]
    NotSending,
    /// The message's epoch is not held (before we joined, past its grace, or never made).
    #[error("unknown epoch")]
    UnknownEpoch,
    /// The relayed sender is not in the roster of the message's epoch.
    #[error("sender not in the epoch's roster")]
    UnknownSender,
    /// The message failed authentication (wrong key, wrong sender or room, tampered bytes).
    #[error("chat message failed authentication")]
    Auth,
    /// The message's sequence number is not above the last one accepted from its sender
    /// in its epoch.
    #[error("chat message replayed")]
    Replay,
}

impl ChatError {
    /// A stable snake_case code, for the page and logs.
    pub fn code(self) -> &'static str {
        match self {
            ChatError::Malformed => "malformed",
            ChatError::TooLarge => "too_large",
            ChatError::NotSending => "not_sending",
            ChatError::UnknownEpoch => "unknown_epoch",
            ChatError::UnknownSender => "unknown_sender",
            ChatError::Auth => "auth",
            ChatError::Replay => "replay",
        }
    }
}

/// The chat key of `sender_id` in epoch `epoch` whose secret is `epoch_secret`.
pub fn chat_key(epoch_secret: &EpochSecret, sender_id: u64, epoch: u64) -> ChatKey {
    let okm = expand_epoch_secret(
        epoch_secret,
        &[CHAT_LABEL, &sender_id.to_be_bytes(), &epoch.to_be_bytes()],
    );
    ChatKey::from_bytes(*okm)
}

/// The AES-GCM nonce of message `seq`: four zero bytes, then `seq`.
pub fn chat_nonce(seq: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    nonce
}

/// The associated data of message `seq` of `sender_id` in `epoch` in `room`.
pub fn chat_aad(room: &str, sender_id: u64, epoch: u64, seq: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CHAT_LABEL.len() + room.len() + 25);
    aad.extend_from_slice(CHAT_LABEL);
    aad.extend_from_slice(room.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&sender_id.to_be_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

/// `ciphertext ‖ tag` of `plaintext` as message `seq` of `sender_id` in `epoch`.
pub fn seal_chat(
    key: &ChatKey,
    room: &str,
    sender_id: u64,
    epoch: u64,
    seq: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, ChatError> {
    if plaintext.len() > MAX_CHAT_PLAINTEXT {
        return Err(ChatError::TooLarge);
    }
    let cipher = Aes128Gcm::new(key.as_bytes().into());
    let aad = chat_aad(room, sender_id, epoch, seq);
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    // AES-GCM refuses only plaintexts beyond 2^36 bytes; ours are at most 4096.
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::from(chat_nonce(seq)),
            &aad,
            out.as_mut_slice().into(),
        )
        .map_err(|_| ChatError::TooLarge)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The plaintext of `ciphertext ‖ tag`, or [`ChatError::Auth`].
pub fn open_chat(
    key: &ChatKey,
    room: &str,
    sender_id: u64,
    epoch: u64,
    seq: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, ChatError> {
    let split = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(ChatError::Malformed)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).map_err(|_| ChatError::Malformed)?;
    let cipher = Aes128Gcm::new(key.as_bytes().into());
    let aad = chat_aad(room, sender_id, epoch, seq);
    let mut out = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::from(chat_nonce(seq)),
            &aad,
            out.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| ChatError::Auth)?;
    Ok(out)
}

/// A chat payload split into its fields, not yet authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatPayload<'a> {
    /// The epoch whose secret the sender's chat key comes from.
    pub epoch: u64,
    /// The sender's sequence number in that epoch.
    pub seq: u64,
    /// `ciphertext ‖ tag`.
    pub sealed: &'a [u8],
}

impl<'a> ChatPayload<'a> {
    /// Splits `epoch ‖ seq ‖ ciphertext ‖ tag`; never panics, whatever the input.
    pub fn parse(payload: &'a [u8]) -> Result<ChatPayload<'a>, ChatError> {
        if payload.len() > MAX_CHAT_PAYLOAD {
            return Err(ChatError::TooLarge);
        }
        if payload.len() < CHAT_HEADER_LEN + TAG_LEN {
            return Err(ChatError::Malformed);
        }
        let (header, sealed) = payload.split_at(CHAT_HEADER_LEN);
        let (epoch, seq) = header.split_at(8);
        let u64_of = |b: &[u8]| <[u8; 8]>::try_from(b).map(u64::from_be_bytes);
        Ok(ChatPayload {
            epoch: u64_of(epoch).map_err(|_| ChatError::Malformed)?,
            seq: u64_of(seq).map_err(|_| ChatError::Malformed)?,
            sealed,
        })
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHAT_HEADER_LEN + self.sealed.len());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.sealed);
        out
    }
}

/// One session's chat counters: the next `seq` to send and, per (sender, epoch), the last
/// `seq` accepted.
#[derive(Debug, Default)]
pub(crate) struct ChatState {
    /// (epoch, next seq) of our own messages.
    send: Option<(u64, u64)>,
    /// (sender, epoch) → highest seq accepted.
    last_accepted: HashMap<(u64, u64), u64>,
}

impl ChatState {
    /// Encrypts `plaintext` as our next message in `epoch`.
    pub(crate) fn encrypt(
        &mut self,
        room: &str,
        own_id: u64,
        epoch: u64,
        secret: &EpochSecret,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ChatError> {
        if plaintext.len() > MAX_CHAT_PLAINTEXT {
            return Err(ChatError::TooLarge);
        }
        let seq = match self.send {
            Some((e, next)) if e == epoch => next,
            _ => 0,
        };
        // Never reuse a nonce: after 2^64 - 1 messages in one epoch, wait for the next.
        let after = seq.checked_add(1).ok_or(ChatError::NotSending)?;
        let key = chat_key(secret, own_id, epoch);
        let sealed = seal_chat(&key, room, own_id, epoch, seq, plaintext)?;
        self.send = Some((epoch, after));
        Ok(ChatPayload {
            epoch,
            seq,
            sealed: &sealed,
        }
        .to_bytes())
    }

    /// Decrypts a payload relayed from `from`. `epoch_keys` finds an installed epoch's
    /// secret and roster (ascending ids).
    pub(crate) fn decrypt<'k>(
        &mut self,
        room: &str,
        from: u64,
        payload: &[u8],
        epoch_keys: impl Fn(u64) -> Option<(&'k EpochSecret, &'k [u64])>,
    ) -> Result<Vec<u8>, ChatError> {
        let msg = ChatPayload::parse(payload)?;
        if msg.sealed.len() - TAG_LEN > MAX_CHAT_PLAINTEXT {
            return Err(ChatError::TooLarge);
        }
        let (secret, members) = epoch_keys(msg.epoch).ok_or(ChatError::UnknownEpoch)?;
        if members.binary_search(&from).is_err() {
            return Err(ChatError::UnknownSender);
        }
        let slot = (from, msg.epoch);
        if self
            .last_accepted
            .get(&slot)
            .is_some_and(|&last| msg.seq <= last)
        {
            return Err(ChatError::Replay);
        }
        let key = chat_key(secret, from, msg.epoch);
        let plaintext = open_chat(&key, room, from, msg.epoch, msg.seq, msg.sealed)?;
        self.last_accepted.insert(slot, msg.seq);
        Ok(plaintext)
    }

    /// Forgets replay state of epochs that are no longer installed.
    pub(crate) fn retain_epochs(&mut self, installed: impl Fn(u64) -> bool) {
        self.last_accepted.retain(|&(_, epoch), _| installed(epoch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> EpochSecret {
        EpochSecret::from_bytes([3; 32])
    }

    #[test]
    fn keys_differ_by_sender_epoch_and_secret() {
        let k = chat_key(&secret(), 1, 0);
        assert_ne!(k.as_bytes(), chat_key(&secret(), 2, 0).as_bytes());
        assert_ne!(k.as_bytes(), chat_key(&secret(), 1, 256).as_bytes());
        assert_ne!(
            k.as_bytes(),
            chat_key(&EpochSecret::from_bytes([4; 32]), 1, 0).as_bytes()
        );
    }

    #[test]
    fn state_counts_per_epoch_and_refuses_replays() {
        let s = secret();
        let members = [1u64, 2];
        let keys = |e: u64| (e == 5 || e == 6).then_some((&s, &members[..]));
        let mut alice = ChatState::default();
        let mut bob = ChatState::default();
        let m0 = alice.encrypt("r", 1, 5, &s, b"one").unwrap();
        let m1 = alice.encrypt("r", 1, 5, &s, b"two").unwrap();
        let n0 = alice.encrypt("r", 1, 6, &s, b"three").unwrap();
        assert_eq!(ChatPayload::parse(&m1).unwrap().seq, 1);
        assert_eq!(ChatPayload::parse(&n0).unwrap().seq, 0);
        assert_eq!(bob.decrypt("r", 1, &m1, keys).unwrap(), b"two");
        assert_eq!(bob.decrypt("r", 1, &m0, keys), Err(ChatError::Replay));
        assert_eq!(bob.decrypt("r", 1, &m1, keys), Err(ChatError::Replay));
        assert_eq!(bob.decrypt("r", 1, &n0, keys).unwrap(), b"three");
        assert_eq!(bob.decrypt("r", 2, &n0, keys), Err(ChatError::Auth));
        assert_eq!(
            bob.decrypt("r", 3, &n0, keys),
            Err(ChatError::UnknownSender)
        );
        assert_eq!(bob.decrypt("s", 1, &m0, keys), Err(ChatError::Replay));
        bob.retain_epochs(|e| e == 6);
        assert_eq!(bob.last_accepted.len(), 1);
    }

    #[test]
    fn sizes_are_bounded() {
        let mut alice = ChatState::default();
        let big = vec![0u8; MAX_CHAT_PLAINTEXT + 1];
        assert_eq!(
            alice.encrypt("r", 1, 0, &secret(), &big),
            Err(ChatError::TooLarge)
        );
        let max = alice
            .encrypt("r", 1, 0, &secret(), &big[..MAX_CHAT_PLAINTEXT])
            .unwrap();
        assert_eq!(max.len(), MAX_CHAT_PAYLOAD);
        assert_eq!(
            ChatPayload::parse(&[0; MAX_CHAT_PAYLOAD + 1]),
            Err(ChatError::TooLarge)
        );
        assert_eq!(
            ChatPayload::parse(&[0; CHAT_HEADER_LEN + TAG_LEN - 1]),
            Err(ChatError::Malformed)
        );
        let empty = alice.encrypt("r", 1, 0, &secret(), b"").unwrap();
        assert_eq!(empty.len(), CHAT_HEADER_LEN + TAG_LEN);
    }

    #[test]
    fn codes_are_stable() {
        let all = [
            ChatError::Malformed,
            ChatError::TooLarge,
            ChatError::NotSending,
            ChatError::UnknownEpoch,
            ChatError::UnknownSender,
            ChatError::Auth,
            ChatError::Replay,
        ];
        let codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(
            codes,
            [
                "malformed",
                "too_large",
                "not_sending",
                "unknown_epoch",
                "unknown_sender",
                "auth",
                "replay"
            ]
        );
    }
}
