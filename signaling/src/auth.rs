//! Join tokens: who may enter which room, under which name, until when.
//!
//! With `--auth-secret` set, every `join` must carry a token minted with the same
//! secret (`sealed token --room R --name N --ttl 1h`). A token is JWT-shaped so that
//! any JWT library can mint one:
//!
//! ```text
//! base64url({"alg":"HS256","typ":"JWT"}) . base64url({"room":"R","name":"N","exp":1767225600}) . base64url(HMAC-SHA256(secret, header "." payload))
//! ```
//!
//! Why hand-rolled on `hmac` + `sha2` rather than the `jsonwebtoken` crate: we accept
//! exactly one algorithm and three claims, and doing it directly is about sixty lines
//! with no algorithm negotiation at all — the header must say `HS256` or the token is
//! refused, so the classic `alg: none` / algorithm-confusion attacks have nothing to
//! confuse. `jsonwebtoken` would add a second crypto stack (`ring` or `aws-lc`) to the
//! server for no gain. The tag is checked with [`Mac::verify_slice`], which compares
//! in constant time, and it is checked *before* the payload is parsed, so an attacker
//! cannot probe our JSON parser with unsigned input.
//!
//! The token authorises a (room, name) pair: the `join` must name the same room and
//! the same display name, so a token cannot be replayed into another room or under
//! another identity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Fewest secret bytes we accept: HS256 wants a key at least as long as its output
/// (RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// The server's token secret. Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct AuthSecret(Vec<u8>);

impl std::fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSecret(..)")
    }
}

/// The signed statement inside a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room the bearer may join.
    pub room: String,
    /// The display name the bearer must use.
    pub name: String,
    /// Expiry, seconds since the Unix epoch; the token is refused from this second on.
    pub exp: u64,
}

/// Why a token was refused. Every variant is reported to the client as
/// `unauthorized` with this text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The secret is too short to be safe.
    #[error("the auth secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    /// The server needs a token and the join carried none.
    #[error("this server requires a token to join")]
    Missing,
    /// Not three base64url parts, or the header/payload is not the expected JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another algorithm than HS256.
    #[error("the token must use HS256")]
    UnsupportedAlgorithm,
    /// The signature does not match (wrong secret or altered token).
    #[error("the token signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// The token is for another room.
    #[error("the token was issued for another room")]
    WrongRoom,
    /// The token is for another display name.
    #[error("the token was issued for another name")]
    WrongName,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

impl AuthSecret {
    /// Wraps a secret; refuses one shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, TokenError> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret);
        }
        Ok(AuthSecret(secret))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// Mints a token for `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
        };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{tag}")
    }

    /// Mints a token for `room` and `name` valid for `ttl` from now.
    pub fn mint_for(&self, room: &str, name: &str, ttl: Duration) -> String {
        self.mint(&Claims {
            room: room.into(),
            name: name.into(),
            exp: unix_now().saturating_add(ttl.as_secs()),
        })
    }

    /// Checks a token for a join of `room` as `name` at `now` (seconds since the Unix
    /// epoch): signature first, then expiry, room and name.
    pub fn verify(
        &self,
        token: &str,
        room: &str,
        name: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(header_b64)?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        // The signing input is `header.payload`: the token up to its last dot.
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;

        let claims: Claims = decode_json(payload_b64)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        if claims.name != name {
            return Err(TokenError::WrongName);
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> AuthSecret {
        AuthSecret::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            room: "team".into(),
            name: "Ada".into(),
            exp,
        }
    }

    #[test]
    fn a_minted_token_verifies() {
        let token = secret().mint(&claims(1000));
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            secret().verify(&token, "team", "Ada", 999),
            Ok(claims(1000))
        );
    }

    #[test]
    fn mint_for_sets_expiry_from_now() {
        let token = secret().mint_for("team", "Ada", Duration::from_secs(3600));
        let now = unix_now();
        assert!(secret().verify(&token, "team", "Ada", now + 3590).is_ok());
        assert_eq!(
            secret().verify(&token, "team", "Ada", now + 3601),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = secret().mint(&claims(1000));
        assert_eq!(
            secret().verify(&token, "team", "Ada", 1000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn wrong_room_and_wrong_name_are_refused() {
        let token = secret().mint(&claims(1000));
        assert_eq!(
            secret().verify(&token, "other", "Ada", 1),
            Err(TokenError::WrongRoom)
        );
        assert_eq!(
            secret().verify(&token, "team", "Eve", 1),
            Err(TokenError::WrongName)
        );
    }

    #[test]
    fn another_secret_or_an_altered_payload_is_a_bad_signature() {
        let token = secret().mint(&claims(1000));
        let other = AuthSecret::new("another secret that is long enough!").unwrap();
        assert_eq!(
            other.verify(&token, "team", "Ada", 1),
            Err(TokenError::BadSignature)
        );

        // Swap in a payload for another room, keep the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                room: "vault".into(),
                ..claims(u64::MAX)
            })
            .unwrap(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            secret().verify(&forged, "vault", "Ada", 1),
            Err(TokenError::BadSignature)
        );

        // A truncated tag.
        let short = &token[..token.len() - 4];
        assert_eq!(
            secret().verify(short, "team", "Ada", 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let token = secret().mint(&claims(1000));
        let parts: Vec<&str> = token.split('.').collect();
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\"}}"));
            let t = format!("{header}.{}.{}", parts[1], parts[2]);
            assert_eq!(
                secret().verify(&t, "team", "Ada", 1),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        let header = URL_SAFE_NO_PAD.encode("{\"alg\":\"none\"}");
        let unsigned = format!("{header}.{}.", parts[1]);
        assert_eq!(
            secret().verify(&unsigned, "team", "Ada", 1),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let s = secret();
        let good = s.mint(&claims(1000));
        let parts: Vec<&str> = good.split('.').collect();
        let not_json = URL_SAFE_NO_PAD.encode("hello");
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            format!("{good}.extra"),
            format!("{}.{}.!!!", parts[0], parts[1]),
            format!("{not_json}.{}.{}", parts[1], parts[2]),
            format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
        ];
        for t in cases {
            assert_eq!(
                s.verify(&t, "team", "Ada", 1),
                Err(TokenError::Malformed),
                "{t:?}"
            );
        }
        // A correctly signed payload that is not our claims is malformed too.
        let header = parts[0];
        let payload = URL_SAFE_NO_PAD.encode("{\"room\":\"team\"}");
        let input = format!("{header}.{payload}");
        let mut mac = s.mac();
        mac.update(input.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            s.verify(&format!("{input}.{tag}"), "team", "Ada", 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert_eq!(
            AuthSecret::new("short").unwrap_err(),
            TokenError::WeakSecret
        );
        let s = secret();
        assert_eq!(format!("{s:?}"), "AuthSecret(..)");
    }
}
