//! The secrets OAuth hands out — codes, access and refresh tokens, client secrets — and
//! the SHA-256 hashes that are all latchkey keeps of them.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefixes tell a token's kind at a glance (and let secret scanners find a leaked one).
pub const ACCESS_PREFIX: &str = "lka_";
pub const REFRESH_PREFIX: &str = "lkr_";
pub const CODE_PREFIX: &str = "lkc_";
pub const CLIENT_SECRET_PREFIX: &str = "lks_";
pub const REGISTRATION_PREFIX: &str = "lkrg_";

/// A new secret, shown to its client once. Never printed.
pub struct Issued(String);

impl Issued {
    /// `prefix` and 256 bits from the OS, base64url.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("{prefix}{}", random_text(32)?)))
    }

    pub fn hash(&self) -> Hash {
        Hash::of(self.0.as_bytes())
    }

    /// The secret itself, for the one answer that hands it out.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Issued(REDACTED)")
    }
}

/// `bytes` random bytes from the OS as base64url without padding.
pub fn random_text(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("cannot read randomness: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// SHA-256 of a secret: what is stored and looked up. A hash of a 256-bit random token
/// cannot be turned back into it, so the store file holds nothing a thief could present.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Whether `presented` is this hash, compared in constant time.
    pub fn matches(&self, presented: &[u8; 32]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &presented[..]).into()
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hash(REDACTED)")
    }
}

/// S256 PKCE: `challenge` is base64url(SHA-256(verifier)). Verifiers are 43–128 characters
/// of the unreserved set (RFC 7636 §4.1).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier));
    subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_what_python_computes() {
        // base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        let verifier = "dBjftJeZ4CVP-mJ92IZ7kfHPBm1qRDnDLaiyTqe_OoM";
        let challenge = "b_7qLA-FEmo3mOVnpI7IbizKhp7JWczk4curX6c3UeU";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "b_7qLA-FEmo3mOVnpI7IbizKhp7JWczk4curX6c3UeV"
        ));
        assert!(!pkce_matches("short", challenge));
    }

    #[test]
    fn issued_secrets_are_random_and_never_printed() {
        let a = Issued::new(ACCESS_PREFIX).unwrap();
        let b = Issued::new(ACCESS_PREFIX).unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(a.reveal().len(), 4 + 43);
        assert!(!format!("{a:?}").contains(a.reveal()));
        assert_eq!(Hash::from_hex(&a.hash().to_hex()), Some(a.hash()));
    }
}
