//! The consent page's optional passphrase: an argon2 hash in a file, never the passphrase.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Shortest passphrase `latchkey oauth passphrase` accepts.
pub const MIN_LEN: usize = 12;

/// Checks run at once. Each holds argon2's 19 MiB (its default memory cost), and without a
/// bound 128 concurrent wrong passphrases took a release build to 1.26 GB (SECURITY.md):
/// two keep it near 40 MiB, and keep both cores for everything else.
pub const CHECKS_AT_ONCE: usize = 2;
/// How long a check waits for its turn before the consent page says "busy".
pub const CHECK_WAIT: Duration = Duration::from_secs(2);

/// What a passphrase check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    /// As many checks running as [`CHECKS_AT_ONCE`] for [`CHECK_WAIT`]: not checked.
    Busy,
}

/// The turns to run a check; one per server.
pub struct Checks(Arc<tokio::sync::Semaphore>);

impl Default for Checks {
    fn default() -> Self {
        Checks(Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)))
    }
}

impl Checks {
    /// Checks `candidate` against `passphrase` off the async threads, when a turn is free.
    pub async fn check(&self, passphrase: Passphrase, candidate: SecretString) -> Verdict {
        let turn = tokio::time::timeout(CHECK_WAIT, self.0.clone().acquire_owned()).await;
        let Ok(Ok(turn)) = turn else {
            return Verdict::Busy;
        };
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            passphrase.verify(candidate.expose_secret().as_bytes())
        })
        .await;
        match verified {
            Ok(true) => Verdict::Right,
            _ => Verdict::Wrong,
        }
    }
}

#[derive(Clone)]
pub struct Passphrase {
    hash: String,
    /// What grants made with it record (changes when the passphrase does).
    pub grant_id: String,
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(REDACTED)")
    }
}

impl Passphrase {
    /// Reads the hash file: one `$argon2…` line (blank lines and `#` comments ignored).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        crate::file_modes::check_secret_file(path, "passphrase file")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        if !line.starts_with("$argon2") || PasswordHash::new(line).is_err() {
            anyhow::bail!(
                "passphrase file {} holds no argon2 hash: make one with `latchkey oauth passphrase`",
                path.display()
            );
        }
        let grant_id = hex::encode(Sha256::digest(format!("latchkey oauth passphrase\0{line}")));
        Ok(Self {
            hash: line.to_owned(),
            grant_id,
        })
    }

    /// Slow on purpose (argon2): run it off the async threads.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        Argon2::default()
            .verify_password(candidate, self.hash.as_str())
            .is_ok()
    }
}

/// The argon2id hash (PHC string) of `passphrase`, with a random salt.
pub fn hash(passphrase: &SecretString) -> anyhow::Result<String> {
    let length = passphrase.expose_secret().chars().count();
    if length < MIN_LEN {
        anyhow::bail!("a passphrase needs at least {MIN_LEN} characters (this one has {length})");
    }
    Argon2::default()
        .hash_password(passphrase.expose_secret().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the passphrase: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        let phrase = SecretString::from("correct horse battery staple");
        std::fs::write(
            &path,
            format!("# made by latchkey\n{}\n", hash(&phrase).unwrap()),
        )
        .unwrap();
        let read = Passphrase::read(&path).unwrap();
        assert!(read.verify(b"correct horse battery staple"));
        assert!(!read.verify(b"correct horse battery stapler"));
        assert!(hash(&SecretString::from("short")).is_err());
        std::fs::write(&path, "plain text\n").unwrap();
        let err = Passphrase::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("no argon2 hash") && !err.contains("plain text"),
            "{err}"
        );
    }
}
