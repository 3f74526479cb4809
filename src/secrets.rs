//! Integration credentials sealed at rest: XChaCha20-Poly1305 with a 256-bit key kept in
//! `data_dir/secret.key` (created with mode 0600 on first use). A lost or replaced key file is
//! reported, never papered over: credentials sealed with another key fail to open with an error
//! that says which file to restore, and a new key is only made when nothing is sealed yet.

use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const KEY_FILE: &str = "secret.key";
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{0} is missing but {1} integration credentials were sealed with it: restore the file from a backup, or delete and reconnect those integrations"
    )]
    KeyLost(PathBuf, usize),
    #[error("{0} is not a valid key file (expected 32 bytes, base64): {1}")]
    BadKeyFile(PathBuf, String),
    #[error(
        "the credentials cannot be opened with {0}: it is not the key they were sealed with (restored from another server?); reconnect the integration"
    )]
    WrongKey(PathBuf),
    #[error("while using {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Seals and opens secrets with the data directory's key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox({})", self.path.display())
    }
}

impl SecretBox {
    /// Opens the key in `dir`, creating it (0600) when absent and `sealed_count` is 0.
    pub fn open(dir: &Path, sealed_count: usize) -> Result<SecretBox, SecretError> {
        SecretBox::open_file(&dir.join(KEY_FILE), sealed_count)
    }

    /// Opens the key file at `path` (see [`SecretBox::open`]).
    pub fn open_file(path: &Path, sealed_count: usize) -> Result<SecretBox, SecretError> {
        let path = path.to_path_buf();
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| SecretError::BadKeyFile(path.clone(), e.to_string()))
                .and_then(|k| {
                    if k.len() == 32 {
                        Ok(k)
                    } else {
                        Err(SecretError::BadKeyFile(
                            path.clone(),
                            format!("{} bytes", k.len()),
                        ))
                    }
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if sealed_count > 0 {
                    return Err(SecretError::KeyLost(path, sealed_count));
                }
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(
                    &path,
                    &base64::engine::general_purpose::STANDARD.encode(&key),
                )
                .map_err(|e| SecretError::Io(path.clone(), e))?;
                key
            }
            Err(e) => return Err(SecretError::Io(path, e)),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|e| SecretError::BadKeyFile(path.clone(), e.to_string()))?;
        Ok(SecretBox { cipher, path })
    }

    /// `v1:` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = vec![VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open_sealed(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::WrongKey(self.path.clone()))?;
        if bytes.len() < 25 || bytes[0] != VERSION {
            return Err(SecretError::WrongKey(self.path.clone()));
        }
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(&bytes[1..25]), &bytes[25..])
            .map_err(|_| SecretError::WrongKey(self.path.clone()))?;
        String::from_utf8(plain).map_err(|_| SecretError::WrongKey(self.path.clone()))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SecretBox::open(dir.path(), 0).expect("new key");
        let sealed = a.seal("rk_live_123");
        assert!(!sealed.contains("rk_live"));
        assert_ne!(sealed, a.seal("rk_live_123"), "fresh nonce each time");
        let again = SecretBox::open(dir.path(), 1).expect("same key file");
        assert_eq!(again.open_sealed(&sealed).expect("opens"), "rk_live_123");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = SecretBox::open(other_dir.path(), 0).expect("other key");
        assert!(matches!(
            other.open_sealed(&sealed),
            Err(SecretError::WrongKey(_))
        ));

        // Losing the key file with secrets sealed is an error, not a new key.
        std::fs::remove_file(dir.path().join(KEY_FILE)).expect("removed");
        let lost = SecretBox::open(dir.path(), 2).unwrap_err();
        assert!(lost.to_string().contains("restore the file"), "{lost}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }
}
