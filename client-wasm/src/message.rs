//! Wire format of key messages (carried as the opaque `payload` of signaling `e2ee`
//! messages). Every message is `clear fields ‖ nonce (12) ‖ AES-256-GCM(pairwise key)` with
//! the clear fields bound as associated data, see [`key_message_aad`]. Layouts are in
//! `docs/PROTOCOL.md`.

use crate::key_schedule::{NONCE_LEN, TAG_LEN, key_message_aad, open, seal};
use crate::secret::PairwiseKey;

/// The protocol version byte that starts every key message (2: acks and commits carry the
/// roster hash).
pub const VERSION: u8 = 2;
/// Most members an epoch's roster may list (keeps a message far below the 16 KiB relay limit).
pub const MAX_ROSTER: usize = 1024;

const TYPE_EPOCH_KEY: u8 = 1;
const TYPE_ACK: u8 = 2;
const TYPE_COMMIT: u8 = 3;

/// What an [`Ack`](KeyMessage::Ack) says about the epoch it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// The member installed the epoch secret for receiving.
    Installed,
    /// The member already holds an epoch at least as new; the leader must issue a newer one.
    Stale,
}

/// A parsed, not yet authenticated key message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMessage {
    /// Leader → member: a wrapped epoch secret and the roster it was made for.
    EpochKey {
        /// The epoch number.
        epoch: u64,
        /// Ids of the roster, strictly ascending; the first is the leader.
        roster: Vec<u64>,
        /// [`roster_hash`](crate::key_schedule::roster_hash) of the roster.
        roster_hash: [u8; 32],
    },
    /// Member → leader: answer to an `EpochKey`.
    Ack {
        /// The epoch answered.
        epoch: u64,
        /// What the member did with it.
        status: AckStatus,
        /// The newest epoch the member holds.
        highest: u64,
        /// [`roster_hash`](crate::key_schedule::roster_hash) of the member's own view of the
        /// roster when it answered.
        roster_hash: [u8; 32],
    },
    /// Leader → member: switch sending to `epoch` now.
    Commit {
        /// The epoch to send with.
        epoch: u64,
        /// The roster hash of that epoch.
        roster_hash: [u8; 32],
    },
}

/// Why a key message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Unknown version byte.
    #[error("unsupported key message version {0}")]
    Version(u8),
    /// Unknown type byte.
    #[error("unknown key message type {0}")]
    Type(u8),
    /// Wrong length or field value.
    #[error("malformed key message")]
    Malformed,
}

/// A parsed message: its content plus the parts needed to authenticate it.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The message content.
    pub message: KeyMessage,
    /// The clear bytes (authenticated as associated data).
    pub clear: &'a [u8],
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// `ciphertext ‖ tag`.
    pub sealed: &'a [u8],
}

impl KeyMessage {
    /// Serializes, encrypting `plaintext` (the epoch secret for `EpochKey`, empty otherwise)
    /// under `key` for the message from `from` to `to` in `room`.
    pub fn seal(
        &self,
        key: &PairwiseKey,
        nonce: &[u8; NONCE_LEN],
        room: &str,
        from: u64,
        to: u64,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut out = self.clear_bytes();
        let aad = key_message_aad(room, from, to, &out);
        let sealed = seal(key, nonce, &aad, plaintext);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn clear_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            KeyMessage::EpochKey {
                epoch,
                roster,
                roster_hash,
            } => {
                out.push(TYPE_EPOCH_KEY);
                out.extend_from_slice(&epoch.to_be_bytes());
                // Callers never build rosters above MAX_ROSTER (< 2^16); a longer one would
                // be refused by every receiver's parser anyway.
                debug_assert!(roster.len() <= MAX_ROSTER);
                out.extend_from_slice(
                    &(roster.len().min(usize::from(u16::MAX)) as u16).to_be_bytes(),
                );
                for id in roster {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out.extend_from_slice(roster_hash);
            }
            KeyMessage::Ack {
                epoch,
                status,
                highest,
                roster_hash,
            } => {
                out.push(TYPE_ACK);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.push(match status {
                    AckStatus::Installed => 0,
                    AckStatus::Stale => 1,
                });
                out.extend_from_slice(&highest.to_be_bytes());
                out.extend_from_slice(roster_hash);
            }
            KeyMessage::Commit { epoch, roster_hash } => {
                out.push(TYPE_COMMIT);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(roster_hash);
            }
        }
        out
    }

    /// Length of the sealed part (`ciphertext ‖ tag`) of this message type.
    fn sealed_len(&self) -> usize {
        match self {
            KeyMessage::EpochKey { .. } => 32 + TAG_LEN,
            KeyMessage::Ack { .. } | KeyMessage::Commit { .. } => TAG_LEN,
        }
    }

    /// Parses the wire bytes; never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, MessageError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(MessageError::Version(version));
        }
        let message = match r.u8()? {
            TYPE_EPOCH_KEY => {
                let epoch = r.u64()?;
                let n = usize::from(r.u16()?);
                if n == 0 || n > MAX_ROSTER {
                    return Err(MessageError::Malformed);
                }
                let mut roster = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.u64()?;
                    if roster.last().is_some_and(|&prev| prev >= id) {
                        return Err(MessageError::Malformed);
                    }
                    roster.push(id);
                }
                let roster_hash = r.array::<32>()?;
                KeyMessage::EpochKey {
                    epoch,
                    roster,
                    roster_hash,
                }
            }
            TYPE_ACK => {
                let epoch = r.u64()?;
                let status = match r.u8()? {
                    0 => AckStatus::Installed,
                    1 => AckStatus::Stale,
                    _ => return Err(MessageError::Malformed),
                };
                let highest = r.u64()?;
                KeyMessage::Ack {
                    epoch,
                    status,
                    highest,
                    roster_hash: r.array::<32>()?,
                }
            }
            TYPE_COMMIT => KeyMessage::Commit {
                epoch: r.u64()?,
                roster_hash: r.array::<32>()?,
            },
            other => return Err(MessageError::Type(other)),
        };
        let clear_len = r.pos;
        let nonce = r.array::<NONCE_LEN>()?;
        let sealed = r.rest();
        if sealed.len() != message.sealed_len() {
            return Err(MessageError::Malformed);
        }
        Ok(Parsed {
            message,
            clear: &bytes[..clear_len],
            nonce,
            sealed,
        })
    }
}

impl Parsed<'_> {
    /// Authenticates (and decrypts) the message from `from` to `to`; `None` if it fails.
    pub fn open(
        &self,
        key: &PairwiseKey,
        room: &str,
        from: u64,
        to: u64,
    ) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let aad = key_message_aad(room, from, to, self.clear);
        open(key, &self.nonce, &aad, self.sealed)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        let end = self.pos.checked_add(n).ok_or(MessageError::Malformed)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(MessageError::Malformed)?;
        self.pos = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, MessageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        self.pos = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> PairwiseKey {
        PairwiseKey::from_bytes([1; 32])
    }

    #[test]
    fn round_trips_every_type() {
        let msgs = [
            (
                KeyMessage::EpochKey {
                    epoch: 300,
                    roster: vec![1, 5, 9],
                    roster_hash: [7; 32],
                },
                vec![3u8; 32],
            ),
            (
                KeyMessage::Ack {
                    epoch: 300,
                    status: AckStatus::Stale,
                    highest: 301,
                    roster_hash: [8; 32],
                },
                vec![],
            ),
            (
                KeyMessage::Commit {
                    epoch: 300,
                    roster_hash: [9; 32],
                },
                vec![],
            ),
        ];
        for (msg, pt) in msgs {
            let bytes = msg.seal(&key(), &[2; 12], "r", 1, 5, &pt);
            let parsed = KeyMessage::parse(&bytes).unwrap();
            assert_eq!(parsed.message, msg);
            assert_eq!(
                parsed.open(&key(), "r", 1, 5).unwrap().as_slice(),
                pt.as_slice()
            );
            // bound to room, direction and key
            assert!(parsed.open(&key(), "s", 1, 5).is_none());
            assert!(parsed.open(&key(), "r", 5, 1).is_none());
            assert!(
                parsed
                    .open(&PairwiseKey::from_bytes([2; 32]), "r", 1, 5)
                    .is_none()
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let ok = KeyMessage::Commit {
            epoch: 1,
            roster_hash: [0; 32],
        }
        .seal(&key(), &[2; 12], "r", 1, 5, &[]);
        assert!(KeyMessage::parse(&ok[..ok.len() - 1]).is_err());
        let mut longer = ok.clone();
        longer.push(0);
        assert!(KeyMessage::parse(&longer).is_err());
        let mut v1 = ok.clone();
        v1[0] = 1;
        assert_eq!(
            KeyMessage::parse(&v1).unwrap_err(),
            MessageError::Version(1)
        );
        let unsorted = KeyMessage::EpochKey {
            epoch: 1,
            roster: vec![5, 1],
            roster_hash: [0; 32],
        };
        let bytes = unsorted.seal(&key(), &[2; 12], "r", 1, 5, &[0; 32]);
        assert_eq!(
            KeyMessage::parse(&bytes).unwrap_err(),
            MessageError::Malformed
        );
        assert!(KeyMessage::parse(&[]).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = KeyMessage::parse(&bytes);
        }
    }
}
