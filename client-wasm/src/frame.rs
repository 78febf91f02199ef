//! The frame layer: `clear prefix ‖ SFrame(header ‖ ciphertext ‖ tag)` with the prefix as
//! authenticated SFrame metadata, one encryption key and counter per epoch, decryption keys
//! per KID derived on first use, a replay window per KID and drop counters by reason.

use std::collections::{BTreeMap, HashMap};

use sframe::CipherSuite;
use sframe::error::SframeError;
use sframe::frame::validation::{ReplayAttackProtectionStore, Tolerance};
use sframe::frame::{
    EncryptedFrameView, FrameCounter, MediaFrameView, MonotonicCounter, SingleUseCounter,
};
use sframe::key::{DecryptionKey, EncryptionKey};

use crate::codec::Codec;
use crate::error::{DropReason, FrameError};
use crate::key_schedule::{base_key, kid};
use crate::secret::EpochSecret;

/// The one SFrame cipher suite Sealed uses (RFC 9605 §4.5, 0x0004).
pub const CIPHER_SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;

/// Frame-layer counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounters {
    /// Frames encrypted.
    pub encrypted: u64,
    /// Frames decrypted.
    pub decrypted: u64,
    /// Dropped: no key for the KID.
    pub dropped_unknown_kid: u64,
    /// Dropped: authentication failed.
    pub dropped_auth: u64,
    /// Dropped: replayed or too old.
    pub dropped_replay: u64,
    /// Dropped: not a parsable frame.
    pub dropped_malformed: u64,
    /// Dropped: the KID names another sender than the track's.
    pub dropped_wrong_sender: u64,
}

struct SendState {
    epoch: u64,
    key: EncryptionKey,
    counter: MonotonicCounter,
}

struct ReceiveEpoch {
    secret: EpochSecret,
    /// The epoch's roster, ascending: only these senders have keys in it.
    members: Vec<u64>,
}

/// Encrypts own frames and decrypts everyone's.
pub(crate) struct FrameCrypto {
    own_id: u64,
    send: Option<SendState>,
    epochs: BTreeMap<u64, ReceiveEpoch>,
    keys: HashMap<u64, DecryptionKey>,
    replay: ReplayAttackProtectionStore,
    pub(crate) counters: FrameCounters,
    /// Senders whose frames were dropped for an unknown KID since the last key install.
    pub(crate) unknown_kid_senders: Vec<u64>,
}

/// Bound on `unknown_kid_senders`, so forged KIDs cannot grow it.
const MAX_UNKNOWN_SENDERS: usize = 64;

impl FrameCrypto {
    pub(crate) fn new(own_id: u64, replay_window: usize) -> FrameCrypto {
        let tolerance = Tolerance::try_new(replay_window.max(1)).unwrap_or(Tolerance::new(1));
        FrameCrypto {
            own_id,
            send: None,
            epochs: BTreeMap::new(),
            keys: HashMap::new(),
            replay: ReplayAttackProtectionStore::new(tolerance),
            counters: FrameCounters::default(),
            unknown_kid_senders: Vec::new(),
        }
    }

    /// Installs an epoch for receiving. An older epoch with the same `epoch mod 256` (thus the
    /// same KIDs) is dropped: the newer one wins.
    pub(crate) fn install(&mut self, epoch: u64, secret: EpochSecret, members: Vec<u64>) {
        let clashing: Vec<u64> = self
            .epochs
            .keys()
            .copied()
            .filter(|&e| e != epoch && e & 0xff == epoch & 0xff)
            .collect();
        for e in clashing {
            // Even the sending epoch: its KIDs now belong to the new one for receiving.
            self.epochs.remove(&e);
        }
        self.forget_keys(epoch);
        self.epochs.insert(epoch, ReceiveEpoch { secret, members });
    }

    /// Starts sending with `epoch` (which must be installed): a fresh key and counter.
    pub(crate) fn set_sending(&mut self, epoch: u64) -> bool {
        let Some(e) = self.epochs.get(&epoch) else {
            return false;
        };
        let Ok(kid) = kid(self.own_id, epoch) else {
            return false;
        };
        let base = base_key(&e.secret, self.own_id, epoch);
        match EncryptionKey::derive_from(CIPHER_SUITE, kid, base.as_bytes()) {
            Ok(key) => {
                self.send = Some(SendState {
                    epoch,
                    key,
                    counter: MonotonicCounter::default(),
                });
                true
            }
            Err(_) => false,
        }
    }

    /// The epoch frames are sent with.
    pub(crate) fn sending_epoch(&self) -> Option<u64> {
        self.send.as_ref().map(|s| s.epoch)
    }

    /// Drops an epoch's secret, keys and replay windows. The sending epoch is kept.
    pub(crate) fn retire(&mut self, epoch: u64) {
        if self.sending_epoch() == Some(epoch) {
            return;
        }
        self.epochs.remove(&epoch);
        self.forget_keys(epoch);
    }

    fn forget_keys(&mut self, epoch: u64) {
        let residue = epoch & 0xff;
        self.keys.retain(|kid, _| kid & 0xff != residue);
        self.replay.retain(|kid| kid & 0xff != residue);
    }

    /// Every installed epoch's secret and roster (test-only export).
    #[cfg(feature = "test-export")]
    pub(crate) fn export_epochs(&self) -> Vec<(u64, [u8; 32], Vec<u64>)> {
        self.epochs
            .iter()
            .map(|(&e, r)| (e, *r.secret.as_bytes(), r.members.clone()))
            .collect()
    }

    /// An installed epoch's secret and roster (ascending ids).
    pub(crate) fn epoch_keys(&self, epoch: u64) -> Option<(&EpochSecret, &[u64])> {
        self.epochs
            .get(&epoch)
            .map(|e| (&e.secret, e.members.as_slice()))
    }

    /// Epochs installed for receiving, ascending.
    pub(crate) fn installed_epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.epochs.keys().copied()
    }

    /// `prefix ‖ SFrame` of a frame.
    pub(crate) fn encrypt(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        let send = self.send.as_mut().ok_or(FrameError::NoSendingKey)?;
        let prefix = codec.prefix_len(frame);
        if frame.len() < prefix {
            return Err(FrameError::TooShort {
                codec,
                len: frame.len(),
                prefix,
            });
        }
        let (meta, payload) = frame.split_at(prefix);
        let out = encrypt_frame(&send.key, &mut send.counter, meta, payload)?;
        self.counters.encrypted += 1;
        Ok(out)
    }

    /// The original frame from `prefix ‖ SFrame`; every failure is counted. With
    /// `expected_sender`, a frame whose KID names anyone else is dropped (`WrongSender`)
    /// before any key is looked up.
    pub(crate) fn decrypt(
        &mut self,
        codec: Codec,
        data: &[u8],
        expected_sender: Option<u64>,
    ) -> Result<Vec<u8>, FrameError> {
        let result = self.try_decrypt(codec, data, expected_sender);
        if let Err(e) = &result {
            let c = &mut self.counters;
            match e.drop_reason() {
                DropReason::UnknownKeyId => c.dropped_unknown_kid += 1,
                DropReason::Authentication => c.dropped_auth += 1,
                DropReason::Replay => c.dropped_replay += 1,
                DropReason::Malformed => c.dropped_malformed += 1,
                DropReason::WrongSender => c.dropped_wrong_sender += 1,
            }
        } else {
            self.counters.decrypted += 1;
        }
        result
    }

    fn try_decrypt(
        &mut self,
        codec: Codec,
        data: &[u8],
        expected_sender: Option<u64>,
    ) -> Result<Vec<u8>, FrameError> {
        let prefix = codec.prefix_len(data);
        if data.len() <= prefix {
            return Err(FrameError::Malformed);
        }
        let (meta, sframe) = data.split_at(prefix);
        let view = EncryptedFrameView::try_with_meta_data(sframe, meta)
            .map_err(|_| FrameError::Malformed)?;
        let kid = view.header().key_id();
        if let Some(expected) = expected_sender
            && kid >> 8 != expected
        {
            return Err(FrameError::WrongSender {
                expected,
                kid_sender: kid >> 8,
            });
        }
        if !self.keys.contains_key(&kid) {
            let key = self.derive_receive_key(kid).ok_or_else(|| {
                let sender = kid >> 8;
                if self.unknown_kid_senders.len() < MAX_UNKNOWN_SENDERS
                    && !self.unknown_kid_senders.contains(&sender)
                {
                    self.unknown_kid_senders.push(sender);
                }
                FrameError::UnknownKeyId(kid)
            })?;
            self.keys.insert(kid, key);
        }
        let key = self.keys.get(&kid).ok_or(FrameError::UnknownKeyId(kid))?;
        let mut out = Vec::new();
        view.validated_decrypt_into(key, &mut out, &mut self.replay)
            .map_err(|e| decrypt_error(e, kid))?;
        Ok(out)
    }

    /// The key of `kid` if its epoch is installed and its sender is in that epoch's roster.
    fn derive_receive_key(&self, kid: u64) -> Option<DecryptionKey> {
        let sender = kid >> 8;
        let (epoch, e) = self
            .epochs
            .iter()
            .rev()
            .find(|(e, _)| *e & 0xff == kid & 0xff)?;
        e.members.binary_search(&sender).ok()?;
        debug_assert_eq!(crate::key_schedule::kid(sender, *epoch).ok(), Some(kid));
        let base = base_key(&e.secret, sender, *epoch);
        DecryptionKey::derive_from(CIPHER_SUITE, kid, base.as_bytes()).ok()
    }
}

/// `metadata ‖ SFrame` of `payload` under `key` with the counter's next value.
fn encrypt_frame(
    key: &EncryptionKey,
    counter: &mut impl FrameCounter,
    metadata: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let media = MediaFrameView::try_with_meta_data(counter, payload, metadata)
        .map_err(|_| FrameError::CounterExhausted)?;
    let mut out = Vec::with_capacity(metadata.len() + payload.len() + MAX_OVERHEAD);
    media
        .encrypt_into(key, &mut out)
        .map_err(|_| FrameError::Encryption)?;
    Ok(out)
}

fn decrypt_error(e: SframeError, kid: u64) -> FrameError {
    match e {
        SframeError::FrameValidationFailed(_) => FrameError::Replay,
        SframeError::DecryptionFailure => FrameError::Authentication,
        SframeError::MissingDecryptionKey { .. } => FrameError::UnknownKeyId(kid),
        _ => FrameError::Malformed,
    }
}

/// Largest SFrame overhead: 17-byte header (config byte, 8-byte KID, 8-byte CTR) + 16-byte tag.
pub const MAX_OVERHEAD: usize = 33;

/// One SFrame (`header ‖ ciphertext ‖ tag`, without the metadata) with an explicit base key,
/// KID and counter: the same library path as [`Session::encrypt`](crate::Session::encrypt),
/// exposed for known-answer tests (RFC 9605 Appendix C, `key-schedule.json`).
pub fn sframe_encrypt(
    base_key: &[u8],
    kid: u64,
    ctr: u64,
    metadata: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let key = EncryptionKey::derive_from(CIPHER_SUITE, kid, base_key)
        .map_err(|_| FrameError::Encryption)?;
    let mut out = encrypt_frame(&key, &mut SingleUseCounter::new(ctr), metadata, plaintext)?;
    out.drain(..metadata.len());
    Ok(out)
}

/// Decrypts one SFrame (`header ‖ ciphertext ‖ tag`) with an explicit base key; the KID in the
/// header must be `kid`. The counterpart of [`sframe_encrypt`].
pub fn sframe_decrypt(
    base_key: &[u8],
    kid: u64,
    metadata: &[u8],
    sframe: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let key = DecryptionKey::derive_from(CIPHER_SUITE, kid, base_key)
        .map_err(|_| FrameError::Malformed)?;
    let view = EncryptedFrameView::try_with_meta_data(sframe, metadata)
        .map_err(|_| FrameError::Malformed)?;
    let header_kid = view.header().key_id();
    if header_kid != kid {
        return Err(FrameError::UnknownKeyId(header_kid));
    }
    let mut out = Vec::new();
    view.decrypt_into(&key, &mut out)
        .map_err(|e| decrypt_error(e, kid))?;
    out.drain(..metadata.len());
    Ok(out)
}

impl std::fmt::Debug for FrameCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCrypto")
            .field("own_id", &self.own_id)
            .field("sending_epoch", &self.sending_epoch())
            .field("installed_epochs", &self.epochs.keys().collect::<Vec<_>>())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_epoch_with_the_same_kids_replaces_the_older_even_while_sending_on_it() {
        let old = || EpochSecret::from_bytes([1; 32]);
        let new = || EpochSecret::from_bytes([2; 32]);
        let mut a = FrameCrypto::new(1, 64);
        let mut b = FrameCrypto::new(2, 64);
        b.install(5, old(), vec![1, 2]);
        assert!(b.set_sending(5));
        a.install(261, new(), vec![1, 2]);
        assert!(a.set_sending(261));
        b.install(261, new(), vec![1, 2]);
        assert_eq!(b.installed_epochs().collect::<Vec<_>>(), vec![261]);
        let ct = a.encrypt(Codec::Other, b"frame").unwrap();
        assert_eq!(b.decrypt(Codec::Other, &ct, Some(1)).unwrap(), b"frame");
    }

    #[test]
    fn only_members_of_the_epoch_roster_have_keys() {
        let mut a = FrameCrypto::new(3, 64);
        let mut b = FrameCrypto::new(2, 64);
        a.install(0, EpochSecret::from_bytes([1; 32]), vec![1, 2, 3]);
        a.set_sending(0);
        b.install(0, EpochSecret::from_bytes([1; 32]), vec![1, 2]);
        let ct = a.encrypt(Codec::Other, b"x").unwrap();
        assert_eq!(
            b.decrypt(Codec::Other, &ct, None),
            Err(FrameError::UnknownKeyId(0x300))
        );
    }

    #[test]
    fn a_frame_presented_as_another_senders_is_dropped() {
        let secret = || EpochSecret::from_bytes([1; 32]);
        let mut alice = FrameCrypto::new(1, 64);
        let mut carol = FrameCrypto::new(3, 64);
        alice.install(0, secret(), vec![1, 2, 3]);
        alice.set_sending(0);
        carol.install(0, secret(), vec![1, 2, 3]);
        let ct = alice.encrypt(Codec::Other, b"alice").unwrap();
        assert_eq!(
            carol.decrypt(Codec::Other, &ct, Some(2)),
            Err(FrameError::WrongSender {
                expected: 2,
                kid_sender: 1
            })
        );
        assert_eq!(carol.counters.dropped_wrong_sender, 1);
        assert_eq!(carol.counters.decrypted, 0);
        // The drop did not touch the replay window: the right track still plays it.
        assert_eq!(carol.decrypt(Codec::Other, &ct, Some(1)).unwrap(), b"alice");
    }
}
