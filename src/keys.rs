//! API keys: parsing, generation, storage and constant-time verification.
//!
//! Plain keys are turned into SHA-256 digests as soon as they are read, so the
//! running server holds digests only. Both plain keys ([`SecretString`]) and
//! digests ([`KeyDigest`]) refuse to print themselves: a digest is enough to
//! recognise a key in a log, so it is treated as a secret too.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq};

/// Shortest plain key accepted: 32 characters keep a random key out of reach of guessing.
pub const MIN_KEY_LEN: usize = 32;

/// Bytes of OS randomness in a generated key (256 bits).
const GENERATED_KEY_BYTES: usize = 32;

/// Name of the generated key file inside the state directory.
pub const GENERATED_KEY_FILE: &str = "api_key";

/// The SHA-256 digest of a key. Compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Digest of whatever bytes a client presented.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// What an OAuth grant made with this key records: derived, so the store file holds
    /// neither the key nor its digest, and the same for the same key.
    pub fn grant_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"latchkey oauth grant\0");
        hasher.update(self.0);
        hex::encode(hasher.finalize())
    }

    /// The `sha256:<hex>` form that can stand in a configuration file instead of the key.
    pub fn to_config_form(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(REDACTED)")
    }
}

/// One configured key: the plain key (kept only so `latchkey url` can print it) or a digest.
#[derive(Clone)]
pub enum KeyEntry {
    Plain(SecretString),
    Digest(KeyDigest),
}

impl KeyEntry {
    pub fn digest(&self) -> KeyDigest {
        match self {
            KeyEntry::Plain(key) => KeyDigest::of(key.expose_secret().as_bytes()),
            KeyEntry::Digest(digest) => digest.clone(),
        }
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEntry::Plain(_) => f.write_str("KeyEntry::Plain(REDACTED)"),
            KeyEntry::Digest(_) => f.write_str("KeyEntry::Digest(REDACTED)"),
        }
    }
}

/// A configured key, and what the key file calls it (`<key> <label>` on its line): the
/// console's clients view says which key a client uses by it.
#[derive(Clone, Debug)]
pub struct Configured {
    pub entry: KeyEntry,
    pub label: Option<Arc<str>>,
}

impl From<KeyEntry> for Configured {
    fn from(entry: KeyEntry) -> Self {
        Configured { entry, label: None }
    }
}

/// The longest label a key may carry, in characters.
pub const MAX_LABEL: usize = 64;

/// Why a key entry was refused. Never carries the entry itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error(
        "a plain key must be at least {MIN_KEY_LEN} characters (this one has {0}); make one with `latchkey keygen`"
    )]
    TooShort(usize),
    #[error("a key may hold only visible ASCII characters (no spaces, no control characters)")]
    BadCharacter,
    #[error("a sha256: entry needs exactly 64 hex digits after `sha256:`")]
    BadDigest,
    /// `SHA256:…`, `sha-256:…`, a bare 64-digit hex string: taken as a key, the digest's
    /// text would become the password and the real key would be refused.
    #[error(
        "this looks like a SHA-256 digest but is not in the accepted form: write it as `sha256:` (lower case) followed by 64 hex digits; a key made of 64 hex digits is refused for the same reason (make one with `latchkey keygen`)"
    )]
    DigestLike,
    #[error(
        "the label after the key must be at most {MAX_LABEL} characters, without control characters"
    )]
    BadLabel,
    /// A second key on the line would be shown, as the label, on the console's pages.
    #[error(
        "the label after the key holds a word of {MIN_KEY_LEN} or more characters, which may be a second key: write one key per line, and a label of shorter words"
    )]
    KeyInLabel,
}

/// Whether `raw` looks like a digest written some other way than `sha256:<64 hex>`.
fn looks_like_digest(raw: &str) -> bool {
    let bare_hex = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit());
    let prefix: String = raw
        .chars()
        .take(8)
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    bare_hex || prefix.starts_with("sha256")
}

/// Parses one configured entry: a plain key or `sha256:<64 hex>`.
pub fn parse_entry(raw: &str) -> Result<KeyEntry, EntryError> {
    let raw = raw.trim();
    if let Some(hex_part) = raw.strip_prefix("sha256:") {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| EntryError::BadDigest)?;
        return Ok(KeyEntry::Digest(KeyDigest(bytes)));
    }
    if looks_like_digest(raw) {
        return Err(EntryError::DigestLike);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EntryError::BadCharacter);
    }
    if raw.len() < MIN_KEY_LEN {
        return Err(EntryError::TooShort(raw.len()));
    }
    Ok(KeyEntry::Plain(SecretString::from(raw.to_owned())))
}

/// Parses a key file's line: the entry, then after white space its label, if any.
fn parse_line(line: &str) -> Result<Configured, EntryError> {
    let (raw, label) = match line.split_once(char::is_whitespace) {
        Some((raw, label)) => (raw, label.trim()),
        None => (line, ""),
    };
    let entry = parse_entry(raw)?;
    if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(EntryError::BadLabel);
    }
    if label
        .split_whitespace()
        .any(|word| word.len() >= MIN_KEY_LEN)
    {
        return Err(EntryError::KeyInLabel);
    }
    let label = (!label.is_empty()).then(|| Arc::from(label));
    Ok(Configured { entry, label })
}

/// Parses the `--api-key` values: each may hold several comma-separated entries.
pub fn parse_flag_entries(values: &[SecretString]) -> anyhow::Result<Vec<Configured>> {
    let mut entries = Vec::new();
    let mut number = 0;
    for value in values {
        for raw in value.expose_secret().split(',') {
            if raw.trim().is_empty() {
                continue;
            }
            number += 1;
            let entry = parse_entry(raw)
                .with_context(|| format!("--api-key (LATCHKEY_API_KEY) entry {number}"))?;
            entries.push(entry.into());
        }
    }
    Ok(entries)
}

/// Reads a key file: one entry per line, blank lines and `#` comments ignored.
/// True when the file holds nothing but blank lines and comments (e.g. `/dev/null`, or a
/// compose secret left unset): latchkey then falls back to its generated key.
pub fn key_file_is_empty(path: &Path) -> anyhow::Result<bool> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let text = SecretString::from(text);
    Ok(text
        .expose_secret()
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#')))
}

/// Reads a key file: an entry per line, each with an optional label after it, blank lines
/// and `#` comments ignored.
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<Configured>> {
    crate::file_modes::check_secret_file(path, "key file")?;
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let text = SecretString::from(text);
    let mut entries = Vec::new();
    for (index, line) in text.expose_secret().lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = parse_line(line)
            .with_context(|| format!("key file {}:{}", path.display(), index + 1))?;
        entries.push(entry);
    }
    if entries.is_empty() {
        anyhow::bail!(
            "key file {} holds no key (one key or sha256: digest per line)",
            path.display()
        );
    }
    Ok(entries)
}

/// A new random key: 256 bits from the OS, base64url without padding (43 characters).
pub fn generate() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut bytes).context("cannot read randomness from the OS")?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(SecretString::from(key))
}

/// Returns the generated key file in `state_dir`, creating it (mode 0600, directory 0700)
/// with a new key when it does not exist yet. `true` when it was just created.
pub fn ensure_generated_key(state_dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let path = state_dir.join(GENERATED_KEY_FILE);
    crate::file_modes::check_state_dir(state_dir)?;
    if path.exists() {
        return Ok((path, false));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| {
            anyhow::anyhow!("cannot create state directory {}: {e}", state_dir.display())
        })?;
    let key = generate()?;
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(
            file,
            "# latchkey API key, generated on first start. Print the connector URL with `latchkey url`."
        )?;
        writeln!(file, "{}", key.expose_secret())?;
        file.sync_all()
    };
    match write() {
        Ok(()) => Ok((path, true)),
        // Another process made it between our check and our write: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((path, false)),
        Err(e) => Err(anyhow::anyhow!(
            "cannot write key file {}: {e}",
            path.display()
        )),
    }
}

/// The digests a request is checked against.
#[derive(Debug, Default)]
pub struct KeySet {
    digests: Vec<KeyDigest>,
    /// Each key's label, by the digest's place.
    labels: Vec<Option<Arc<str>>>,
    /// `KeyDigest::grant_id` of each key, worked out once.
    grant_ids: Vec<String>,
}

impl KeySet {
    pub fn new(entries: &[Configured]) -> Self {
        let digests: Vec<KeyDigest> = entries.iter().map(|c| c.entry.digest()).collect();
        let grant_ids = digests.iter().map(KeyDigest::grant_id).collect();
        let labels = entries.iter().map(|c| c.label.clone()).collect();
        Self {
            digests,
            labels,
            grant_ids,
        }
    }

    /// Whether a key an OAuth grant was made with is still here.
    pub fn has_grant_id(&self, id: &str) -> bool {
        self.grant_ids.iter().any(|g| g == id)
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// True when `presented` matches a configured key. Every configured digest is compared,
    /// in constant time, whatever matched before: timing tells nothing about which key or byte.
    pub fn verify(&self, presented: &KeyDigest) -> bool {
        self.matching(presented).is_some()
    }

    /// The key `presented` matches, as `Some(its label)`. Every configured digest is
    /// compared, in constant time, and the place chosen without a branch on the bytes.
    pub fn matching(&self, presented: &KeyDigest) -> Option<Option<Arc<str>>> {
        let mut matched = Choice::from(0);
        let mut place = 0u32;
        for (i, digest) in self.digests.iter().enumerate() {
            let equal = digest.0.ct_eq(&presented.0);
            place.conditional_assign(&(i as u32), equal & !matched);
            matched |= equal;
        }
        bool::from(matched).then(|| self.labels[place as usize].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-XYZ";

    #[test]
    fn plain_and_digest_entries_verify_the_same_key() {
        let digest = KeyDigest::of(KEY.as_bytes()).to_config_form();
        let set = KeySet::new(&[
            parse_entry(KEY).unwrap().into(),
            parse_entry(&digest).unwrap().into(),
        ]);
        assert_eq!(set.len(), 2);
        assert!(set.verify(&KeyDigest::of(KEY.as_bytes())));
        assert!(!set.verify(&KeyDigest::of(b"0123456789abcdef0123456789abcdef-XYz")));
    }

    #[test]
    fn short_spaced_and_bad_digest_entries_are_refused() {
        assert_eq!(parse_entry("short").unwrap_err(), EntryError::TooShort(5));
        assert_eq!(
            parse_entry("0123456789abcdef 0123456789abcdef").unwrap_err(),
            EntryError::BadCharacter
        );
        assert_eq!(
            parse_entry("sha256:abcd").unwrap_err(),
            EntryError::BadDigest
        );
        let hex = "ab".repeat(32);
        for miswritten in [
            format!("SHA256:{hex}"),
            format!("Sha256:{hex}"),
            format!("sha-256:{hex}"),
            format!("sha256={hex}"),
            format!("SHA256 {hex}"),
            hex.clone(),
        ] {
            assert_eq!(
                parse_entry(&miswritten).unwrap_err(),
                EntryError::DigestLike,
                "{miswritten}"
            );
        }
        assert_eq!(
            parse_entry("sha256:abcd").unwrap_err(),
            EntryError::BadDigest
        );
        assert_eq!(
            parse_entry(&format!("sha256:{}", "g".repeat(64))).unwrap_err(),
            EntryError::BadDigest
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let short = "sekrit-value";
        let message = parse_entry(short).unwrap_err().to_string();
        assert!(!message.contains(short));
        let entry = parse_entry(KEY).unwrap();
        assert!(!format!("{entry:?}").contains(KEY));
        let digest = entry.digest();
        assert!(!format!("{digest:?}").contains(&hex::encode(digest.0)));
    }

    #[test]
    fn generated_keys_are_long_url_safe_and_different() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.expose_secret().len(), 43);
        assert!(
            a.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(parse_entry(a.expose_secret()).is_ok());
    }

    #[test]
    fn key_file_skips_comments_and_reports_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        fs::write(&path, format!("# comment\n\n{KEY}\nshort\n")).unwrap();
        let err = format!("{:#}", read_key_file(&path).unwrap_err());
        assert!(err.contains(":4:"), "{err}");
        assert!(!err.contains("short"), "{err}");
        fs::write(&path, format!("# comment\n\n  {KEY}  \n")).unwrap();
        assert_eq!(read_key_file(&path).unwrap().len(), 1);
        fs::write(&path, "# only a comment\n").unwrap();
        assert!(
            read_key_file(&path)
                .unwrap_err()
                .to_string()
                .contains("holds no key")
        );
    }

    #[test]
    fn a_key_files_label_names_the_key_that_matched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let other = "another-key-0123456789abcdef-0123456789";
        let digest = KeyDigest::of(other.as_bytes()).to_config_form();
        fs::write(&path, format!("{KEY}\n{digest}\tChatGPT on the laptop \n")).unwrap();
        let set = KeySet::new(&read_key_file(&path).unwrap());
        assert_eq!(set.matching(&KeyDigest::of(KEY.as_bytes())), Some(None));
        assert_eq!(
            set.matching(&KeyDigest::of(other.as_bytes())),
            Some(Some("ChatGPT on the laptop".into()))
        );
        assert_eq!(
            set.matching(&KeyDigest::of(b"not a key at all, not at all")),
            None
        );
        // The same key twice: the first line's label.
        fs::write(&path, format!("{KEY} first\n{KEY} second\n")).unwrap();
        let set = KeySet::new(&read_key_file(&path).unwrap());
        assert_eq!(
            set.matching(&KeyDigest::of(KEY.as_bytes())),
            Some(Some("first".into()))
        );
        for bad in [
            "x".repeat(MAX_LABEL + 1),
            "tab\u{7}bell".to_owned(),
            format!("laptop {other}"),
            format!("phone {digest}"),
        ] {
            fs::write(&path, format!("{KEY} {bad}\n")).unwrap();
            let err = format!("{:#}", read_key_file(&path).unwrap_err());
            assert!(err.contains(":1:") && err.contains("label"), "{err}");
            assert!(!err.contains(KEY) && !err.contains(other), "{err}");
        }
    }

    #[test]
    fn generated_key_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (path, created) = ensure_generated_key(&state).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let first = read_key_file(&path).unwrap();
        let (again, created) = ensure_generated_key(&state).unwrap();
        assert!(!created);
        assert_eq!(again, path);
        let second = read_key_file(&path).unwrap();
        assert_eq!(first[0].entry.digest(), second[0].entry.digest());
    }
}
