//! A participant's P-256 key pair, fresh for every join.

use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};

use crate::error::EngineError;
use crate::random::{OsRandom, RandomSource};

/// Length of a SEC1 uncompressed P-256 public key: `0x04 ‖ x ‖ y`.
pub const PUBLIC_KEY_LEN: usize = 65;

/// A P-256 key pair. The secret scalar is wiped on drop and never printed.
#[derive(Clone)]
pub struct Identity {
    secret: SecretKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl Identity {
    /// A fresh key pair from the platform's randomness.
    pub fn generate() -> Identity {
        Identity::generate_with(&mut OsRandom)
    }

    /// A fresh key pair from the given randomness (deterministic in tests).
    pub fn generate_with(rng: &mut dyn RandomSource) -> Identity {
        loop {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            rng.fill(bytes.as_mut());
            // Rejection sampling: about 2^-32 of 32-byte strings are not a valid scalar.
            if let Ok(identity) = Identity::from_secret_bytes(&bytes) {
                return identity;
            }
        }
    }

    /// The key pair whose secret scalar is `bytes` (big-endian, 0 < scalar < n).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<Identity, EngineError> {
        let secret = SecretKey::from_slice(bytes).map_err(|_| EngineError::InvalidSecretKey)?;
        let public = encode_public(&secret.public_key());
        Ok(Identity { secret, public })
    }

    /// The public key, SEC1 uncompressed (65 bytes).
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    /// ECDH with a peer: the 32-byte x-coordinate of the shared point.
    pub(crate) fn shared_x(&self, peer: &PublicKey) -> zeroize::Zeroizing<[u8; 32]> {
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared.raw_secret_bytes());
        out
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

/// Parses a peer's public key: exactly 65 bytes, SEC1 uncompressed, on the curve.
pub(crate) fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, EngineError> {
    if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
        return Err(EngineError::InvalidPublicKey);
    }
    PublicKey::from_sec1_bytes(bytes).map_err(|_| EngineError::InvalidPublicKey)
}

fn encode_public(key: &PublicKey) -> [u8; PUBLIC_KEY_LEN] {
    let point = key.to_sec1_point(false);
    let mut out = [0u8; PUBLIC_KEY_LEN];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Lowercase hex for Debug output of public values.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_is_uncompressed_sec1_and_parses_back() {
        let id = Identity::generate();
        let pk = id.public_key();
        assert_eq!(pk[0], 0x04);
        assert!(parse_public_key(&pk).is_ok());
    }

    #[test]
    fn rejects_compressed_truncated_and_off_curve_keys() {
        let pk = Identity::generate().public_key();
        assert!(parse_public_key(&pk[..33]).is_err());
        assert!(parse_public_key(&[]).is_err());
        let mut bad = pk;
        bad[64] ^= 1;
        assert!(parse_public_key(&bad).is_err());
        let mut compressed_tag = pk;
        compressed_tag[0] = 0x02;
        assert!(parse_public_key(&compressed_tag).is_err());
    }

    #[test]
    fn ecdh_is_symmetric() {
        let a = Identity::generate();
        let b = Identity::generate();
        let ab = a.shared_x(&parse_public_key(&b.public_key()).unwrap());
        let ba = b.shared_x(&parse_public_key(&a.public_key()).unwrap());
        assert_eq!(*ab, *ba);
    }

    #[test]
    fn debug_shows_no_secret() {
        let id = Identity::from_secret_bytes(&[7; 32]).unwrap();
        let printed = format!("{id:?}");
        assert!(printed.contains("public_key"));
        assert!(!printed.contains("0707070707"));
    }
}
