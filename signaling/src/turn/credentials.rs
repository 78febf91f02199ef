//! Short-lived TURN credentials in coturn's `use-auth-secret` scheme (the "TURN REST
//! API" of draft-uberti-behave-turn-rest):
//!
//! ```text
//! username = "<expiry, seconds since the Unix epoch>:<user>"
//! password = base64(HMAC-SHA1(secret, username))
//! ```
//!
//! Whoever holds the secret (this server, or a coturn started with
//! `static-auth-secret=<the same secret>`) recomputes the password from the username
//! alone, so nothing is stored per credential. The signaling server issues one
//! credential per participant in `welcome.ice_servers`; the `user` part is an opaque
//! random label, because a STUN USERNAME travels in clear over UDP and a room name does
//! not belong there.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Longest validity a credential may be issued with.
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);

/// Fewest bytes a configured TURN secret may have.
pub const MIN_TURN_SECRET_LEN: usize = 16;

/// A shared TURN secret. Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct TurnSecret(Vec<u8>);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// Why a secret or a username was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The configured secret is too short.
    #[error("the TURN secret must be at least {MIN_TURN_SECRET_LEN} bytes")]
    WeakSecret,
    /// The username is not `<expiry>:<user>`.
    #[error("the TURN username is not <expiry>:<user>")]
    Malformed,
    /// The expiry has passed.
    #[error("the TURN credential has expired")]
    Expired,
}

/// One issued credential, in the shape `RTCIceServer` wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `expiry:user`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
}

impl TurnSecret {
    /// Wraps a configured secret (coturn's `static-auth-secret`).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, CredentialError> {
        let secret = secret.into();
        if secret.len() < MIN_TURN_SECRET_LEN {
            return Err(CredentialError::WeakSecret);
        }
        Ok(TurnSecret(secret))
    }

    /// A fresh random secret, for the embedded TURN server: its credentials only need
    /// to outlive this process.
    pub fn random() -> Self {
        TurnSecret(rand::random::<[u8; 32]>().to_vec())
    }

    /// The password of `username`.
    pub fn password(&self, username: &str) -> String {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac =
            <HmacSha1 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(username.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Issues a credential for `user`, valid from `now` (seconds since the Unix epoch)
    /// for `ttl`, at most [`MAX_CREDENTIAL_TTL`].
    pub fn issue(&self, user: &str, now: u64, ttl: Duration) -> Credential {
        let expiry = now.saturating_add(ttl.min(MAX_CREDENTIAL_TTL).as_secs());
        let username = format!("{expiry}:{user}");
        let password = self.password(&username);
        Credential { username, password }
    }
}

/// The parts of a username in this scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Username<'a> {
    /// Seconds since the Unix epoch after which the credential opens no allocation.
    pub expiry: u64,
    /// The user the credential was issued to.
    pub user: &'a str,
}

impl<'a> Username<'a> {
    /// Splits `expiry:user`; the user part must be non-empty.
    pub fn parse(username: &'a str) -> Result<Self, CredentialError> {
        let (expiry, user) = username.split_once(':').ok_or(CredentialError::Malformed)?;
        let expiry = expiry.parse().map_err(|_| CredentialError::Malformed)?;
        if user.is_empty() {
            return Err(CredentialError::Malformed);
        }
        Ok(Username { expiry, user })
    }

    /// Fails with [`CredentialError::Expired`] from second `expiry` on.
    pub fn check_expiry(&self, now: u64) -> Result<(), CredentialError> {
        if now >= self.expiry {
            return Err(CredentialError::Expired);
        }
        Ok(())
    }
}

/// A fresh opaque user label: 16 hex digits, unique per issued credential in practice.
pub fn random_user() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_coturn_rest_api() {
        // coturn's turnutils / the TURN REST draft: the password is the base64 of the
        // HMAC-SHA1 of the whole username. Reference value computed with
        // `printf %s '1700000000:alice' | openssl dgst -sha1 -hmac 'north-wind-secret' -binary | base64`.
        let secret = TurnSecret::new("north-wind-secret").unwrap();
        assert_eq!(
            secret.password("1700000000:alice"),
            "r/l6ttQtMIfbS2lfULS0mDRRNUg="
        );
    }

    #[test]
    fn issue_caps_the_ttl_and_formats_the_username() {
        let secret = TurnSecret::random();
        let c = secret.issue("u1", 1000, Duration::from_secs(600));
        assert_eq!(c.username, "1600:u1");
        assert_eq!(c.password, secret.password("1600:u1"));
        let capped = secret.issue("u1", 1000, Duration::from_secs(86_400));
        assert_eq!(capped.username, "4600:u1");
    }

    #[test]
    fn usernames_parse_and_expire() {
        let u = Username::parse("1600:u1").unwrap();
        assert_eq!(
            u,
            Username {
                expiry: 1600,
                user: "u1"
            }
        );
        assert_eq!(u.check_expiry(1599), Ok(()));
        assert_eq!(u.check_expiry(1600), Err(CredentialError::Expired));
        // The user part may itself contain colons (coturn takes the first one).
        assert_eq!(Username::parse("5:a:b").unwrap().user, "a:b");
        for bad in ["", "1600", "1600:", ":u", "x:u", "-1:u", "1.5:u"] {
            assert_eq!(
                Username::parse(bad),
                Err(CredentialError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_must_not_be_tiny_and_never_print() {
        assert_eq!(
            TurnSecret::new("short").unwrap_err(),
            CredentialError::WeakSecret
        );
        let s = TurnSecret::new("0123456789abcdef").unwrap();
        assert_eq!(format!("{s:?}"), "TurnSecret(..)");
        assert_ne!(random_user(), random_user());
    }
}
