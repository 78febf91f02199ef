//! Test-only export of key material (cargo feature `test-export`, off by default).
//!
//! Lets tests look for key material where it must never appear (server logs, forwarded
//! packets). Nothing else may enable the feature: a build with it can leak every key.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::frame::CIPHER_SUITE;
use crate::key_schedule::{base_key, kid};
use crate::secret::EpochSecret;

/// AES-128-GCM key length of [`CIPHER_SUITE`].
const SFRAME_KEY_LEN: usize = 16;
/// AES-GCM nonce (salt) length of [`CIPHER_SUITE`].
const SFRAME_SALT_LEN: usize = 12;

/// Every secret a session holds right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedSecrets {
    /// The meeting secret, if the session has one.
    pub meeting_secret: Option<[u8; 32]>,
    /// The pairwise key shared with each roster member, by member id.
    pub pairwise_keys: Vec<(u64, [u8; 32])>,
    /// Every epoch installed for receiving (the sending one included).
    pub epochs: Vec<ExportedEpoch>,
}

/// One installed epoch's secret and the keys derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedEpoch {
    /// The epoch number.
    pub epoch: u64,
    /// The epoch secret `E_n`.
    pub secret: [u8; 32],
    /// One entry per sender of the epoch's roster.
    pub senders: Vec<ExportedSenderKeys>,
}

/// One sender's keys in one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedSenderKeys {
    /// The sender id.
    pub sender: u64,
    /// The SFrame KID (`sender << 8 | epoch mod 256`).
    pub kid: u64,
    /// The SFrame base key.
    pub base_key: [u8; 16],
    /// `sframe_key` (RFC 9605 §4.4.2) for this KID.
    pub sframe_key: [u8; SFRAME_KEY_LEN],
    /// `sframe_salt` (RFC 9605 §4.4.2) for this KID.
    pub sframe_salt: [u8; SFRAME_SALT_LEN],
}

impl ExportedSecrets {
    /// Every secret as (label, bytes), for searching.
    pub fn all(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(m) = self.meeting_secret {
            out.push(("meeting secret".to_owned(), m.to_vec()));
        }
        for (id, k) in &self.pairwise_keys {
            out.push((format!("pairwise key with {id}"), k.to_vec()));
        }
        for e in &self.epochs {
            out.push((format!("epoch {} secret", e.epoch), e.secret.to_vec()));
            for s in &e.senders {
                let at = format!("epoch {} sender {} (KID {:#x})", e.epoch, s.sender, s.kid);
                out.push((format!("{at} base key"), s.base_key.to_vec()));
                out.push((format!("{at} sframe key"), s.sframe_key.to_vec()));
                out.push((format!("{at} sframe salt"), s.sframe_salt.to_vec()));
            }
        }
        out
    }
}

/// The keys of `sender` in `epoch` under `secret`.
pub(crate) fn sender_keys(
    epoch: u64,
    secret: &[u8; 32],
    sender: u64,
) -> Option<ExportedSenderKeys> {
    let kid = kid(sender, epoch).ok()?;
    let base = base_key(&EpochSecret::from_bytes(*secret), sender, epoch);
    // RFC 9605 §4.4.2: HKDF-Extract with an empty salt, then one Expand per label.
    let hk = Hkdf::<Sha256>::new(None, base.as_bytes());
    let mut sframe_key = [0u8; SFRAME_KEY_LEN];
    let mut sframe_salt = [0u8; SFRAME_SALT_LEN];
    let label = |what: &[u8]| {
        [
            b"SFrame 1.0 ".as_slice(),
            what,
            &kid.to_be_bytes(),
            &(CIPHER_SUITE as u16).to_be_bytes(),
        ]
        .concat()
    };
    let (key_label, salt_label) = (label(b"Secret key "), label(b"Secret salt "));
    hk.expand(&key_label, &mut sframe_key).ok()?;
    hk.expand(&salt_label, &mut sframe_salt).ok()?;
    Some(ExportedSenderKeys {
        sender,
        kid,
        base_key: *base.as_bytes(),
        sframe_key,
        sframe_salt,
    })
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes128Gcm, Nonce, Tag};

    use crate::{Codec, DeterministicRandom, Identity, Session, SessionConfig};

    fn pair() -> (Session, Session) {
        let mut rng = DeterministicRandom::new(b"export");
        let (ia, ib) = (
            Identity::generate_with(&mut rng),
            Identity::generate_with(&mut rng),
        );
        let (pa, pb) = (ia.public_key(), ib.public_key());
        let cfg = SessionConfig::default();
        let mut a = Session::new("room", 1, Some([7; 32]), ia, cfg).unwrap();
        let mut b = Session::new("room", 2, Some([7; 32]), ib, cfg).unwrap();
        a.member_joined(0, 2, &pb).unwrap();
        b.member_joined(0, 1, &pa).unwrap();
        for now in (0..2_000).step_by(50) {
            a.tick(now);
            b.tick(now);
            while let Some(o) = a.poll_outgoing() {
                b.receive(now, 1, &o.payload);
            }
            while let Some(o) = b.poll_outgoing() {
                a.receive(now, 2, &o.payload);
            }
        }
        (a, b)
    }

    /// Opens an SFrame (no metadata) by hand with an exported key and salt.
    fn open_by_hand(key: &[u8; 16], salt: &[u8; 12], frame: &[u8]) -> Option<Vec<u8>> {
        let config = frame[0];
        let kid_len = if config & 0x80 != 0 {
            ((config >> 4) & 7) as usize + 1
        } else {
            0
        };
        let (ctr_len, ctr) = if config & 0x08 != 0 {
            let n = (config & 7) as usize + 1;
            let bytes = &frame[1 + kid_len..1 + kid_len + n];
            (n, bytes.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)))
        } else {
            (0, u64::from(config & 7))
        };
        let header = &frame[..1 + kid_len + ctr_len];
        let (ct, tag) = frame[header.len()..].split_at(frame.len() - header.len() - 16);
        let mut nonce = *salt;
        for (n, c) in nonce[4..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        let mut out = ct.to_vec();
        Aes128Gcm::new(key.into())
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                header,
                out.as_mut_slice().into(),
                &Tag::try_from(tag).ok()?,
            )
            .ok()?;
        Some(out)
    }

    #[test]
    fn exported_keys_are_the_ones_frames_are_encrypted_with() {
        let (mut a, b) = pair();
        let (ea, eb) = (a.export_secrets_for_tests(), b.export_secrets_for_tests());
        assert_eq!(ea.meeting_secret, Some([7; 32]));
        assert_eq!(ea.pairwise_keys[0].1, eb.pairwise_keys[0].1);
        let epoch = a.epoch().expect("a sends");
        let sending = ea
            .epochs
            .iter()
            .find(|e| e.epoch == epoch)
            .expect("sending epoch");
        assert_eq!(Some(sending), eb.epochs.iter().find(|e| e.epoch == epoch));
        let own = sending
            .senders
            .iter()
            .find(|s| s.sender == 1)
            .expect("own keys");
        assert_eq!(own.kid, 1 << 8 | (epoch & 0xff));
        let frame = a.encrypt(Codec::Other, b"hello frame").unwrap();
        assert_eq!(
            crate::frame::sframe_decrypt(&own.base_key, own.kid, &[], &frame).unwrap(),
            b"hello frame"
        );
        assert_eq!(
            open_by_hand(&own.sframe_key, &own.sframe_salt, &frame).as_deref(),
            Some(&b"hello frame"[..])
        );
        let other = sending
            .senders
            .iter()
            .find(|s| s.sender == 2)
            .expect("b's keys");
        assert_eq!(
            open_by_hand(&other.sframe_key, &other.sframe_salt, &frame),
            None
        );
        // Every secret is listed, none twice.
        let all = ea.all();
        let distinct: std::collections::HashSet<_> = all.iter().map(|(_, b)| b).collect();
        assert_eq!(distinct.len(), all.len());
        assert!(all.len() >= 2 + 1 + 2 * 3);
    }
}
