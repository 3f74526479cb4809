//! Passwords, tokens and API keys. Hashing with argon2 is slow on purpose: callers run it on the
//! blocking pool, never on the async runtime.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MIN_PASSWORD_LEN: usize = 10;

/// argon2id with the crate's defaults (19 MiB, 2 passes), as OWASP recommends.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so both paths cost the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-0").unwrap_or_default())
}

pub fn validate_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > 1024 {
        return Err("must be at most 1024 bytes".into());
    }
    Ok(())
}

/// A random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A new API key: `vk_<prefix>_<secret>`; returns (full key, prefix).
pub fn new_api_key() -> (String, String) {
    let mut bytes = [0u8; 6];
    OsRng.fill_bytes(&mut bytes);
    let prefix = hex::encode(bytes);
    let secret = random_token();
    (format!("vk_{prefix}_{secret}"), prefix)
}

/// Splits a presented key into its prefix, or `None` if it is not shaped like one of ours.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("vk_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.chars().all(|c| c.is_ascii_hexdigit()) && secret.len() >= 32)
        .then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_secret() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn api_keys_have_a_findable_prefix() {
        let (key, prefix) = new_api_key();
        assert_eq!(api_key_prefix(&key), Some(prefix.as_str()));
        assert_eq!(api_key_prefix("vk_short_x"), None);
        assert_eq!(api_key_prefix("Bearer nonsense"), None);
        assert_ne!(new_api_key().0, key);
    }
}
