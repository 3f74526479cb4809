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

/// A new project write key: `vpk_` and 32 hex digits (128 bits). Not a secret (it is
/// embedded in web pages), but unguessable so nobody sends events into another org by chance.
pub fn write_key() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("vpk_{}", hex::encode(bytes))
}

/// Splits a presented key into its prefix, or `None` if it is not shaped like one of ours.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("vk_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.chars().all(|c| c.is_ascii_hexdigit()) && secret.len() >= 32)
        .then_some(prefix)
}

/// HMAC-SHA256 (RFC 2104), written out over `sha2` so no extra crate is needed.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The signature header Vitals sends with webhooks (`X-Vitals-Signature`) and the one Stripe
/// sends (`Stripe-Signature`) share a form: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn sign_payload(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// Verifies a `t=…,v1=…[,v1=…]` header: any `v1` may match (secret rotation), and the
/// timestamp must be within `tolerance_secs` of `now` (replay protection).
pub fn verify_signature(
    header: &str,
    secret: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, &'static str> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => candidates.push(sig.to_string()),
            _ => {}
        }
    }
    let t = timestamp.ok_or("the signature header has no timestamp")?;
    if (now - t).abs() > tolerance_secs {
        return Err("the signature timestamp is outside the tolerance");
    }
    let expected = sign_payload(secret, t, body);
    let expected = expected
        .rsplit_once("v1=")
        .map(|(_, s)| s)
        .unwrap_or_default();
    if candidates.iter().any(|c| constant_time_eq(c, expected)) {
        Ok(t)
    } else {
        Err("no signature matches")
    }
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

#[cfg(test)]
mod hmac_tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1 and test case 6 (key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures_verify_with_rotation_and_reject_replays() {
        let body = br#"{"alert":"churn"}"#;
        let header = sign_payload("whsec_new", 1_000, body);
        assert_eq!(
            verify_signature(&header, "whsec_new", body, 1_100, 300),
            Ok(1_000)
        );
        assert!(verify_signature(&header, "whsec_new", b"tampered", 1_100, 300).is_err());
        assert!(
            verify_signature(&header, "whsec_new", body, 1_301, 300).is_err(),
            "too old"
        );
        // Two v1 entries (old and new secret): either matches.
        let old = sign_payload("whsec_old", 1_000, body);
        let both = format!("{old},v1={}", header.rsplit_once("v1=").unwrap().1);
        assert!(verify_signature(&both, "whsec_new", body, 1_000, 300).is_ok());
        assert!(verify_signature(&both, "whsec_old", body, 1_000, 300).is_ok());
        assert!(verify_signature("v1=abc", "x", body, 0, 300).is_err());
    }
}
