//! Registered clients and grants, kept in `oauth.json` in the state directory so they
//! survive restarts. Only hashes of tokens and client secrets are stored.
//!
//! The running server and `latchkey oauth revoke` both write the file: every change takes
//! an exclusive `flock` on `oauth.lock`, re-reads the file if another process replaced it,
//! changes it and replaces it atomically (write, fsync, rename). The server also looks for a
//! replaced file at most once a second when it checks a token, so a revocation by the
//! command takes effect within a second.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::secret::Hash;

pub const FILE: &str = "oauth.json";
const LOCK_FILE: &str = "oauth.lock";

/// Most registered (DCR) clients: Claude registers anew for every connection attempt.
pub const MAX_REGISTERED: usize = 100;
/// A registration never used for a grant is dropped after this long.
pub const UNUSED_REGISTRATION: u64 = 24 * 3600;
/// Most grants kept; beyond, the least recently used goes.
pub const MAX_GRANTS: usize = 1000;
/// How often the file is looked at for a change made by another process.
const RECHECK: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A client registered by DCR (RFC 7591).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// What it asked for, echoed back: `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    /// Hex SHA-256 of its secret, when its method has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Hex SHA-256 of its registration access token (RFC 7592), which lets it delete itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_hash: Option<String>,
    pub registered_at: u64,
}

/// What one consent gave one client: its current tokens, as hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    /// Which secret the consent was given with (`keys::KeySet::grant_ids`, or the
    /// passphrase's): when it is no longer configured, the grant is void.
    pub secret_id: String,
    pub scope: String,
    pub resource: String,
    pub created_at: u64,
    /// The last time it was refreshed (or made).
    pub refreshed_at: u64,
    pub access_hash: String,
    pub access_expires: u64,
    pub refresh_hash: String,
    pub refresh_expires: u64,
    /// Refresh tokens already exchanged: one presented again means it was stolen, and the
    /// whole grant is revoked (OAuth 2.1 §4.3.1).
    #[serde(default)]
    pub retired_refresh: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    version: u32,
    #[serde(default)]
    clients: Vec<Client>,
    #[serde(default)]
    grants: Vec<Grant>,
}

/// What a token turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A live token of this grant.
    Live(&'a Grant),
    /// A token of ours that has expired.
    Expired,
    Unknown,
}

/// Where the store's data is kept. One kind today, the JSON file; another (a database)
/// would be a second implementation here, and nothing outside this module would change.
trait Persistence: Send {
    /// The data, when it changed since it was last loaded or saved; `None` when not.
    fn load_if_changed(&mut self) -> anyhow::Result<Option<Data>>;
    /// Holds every other writer off until the guard is dropped.
    fn lock(&self) -> anyhow::Result<Box<dyn Send>>;
    fn save(&mut self, data: &Data) -> anyhow::Result<()>;
    /// Where it is, for messages.
    fn location(&self) -> PathBuf;
}

/// `oauth.json` in the state directory, replaced atomically under `oauth.lock`.
struct JsonFile {
    dir: PathBuf,
    /// The version last read or written.
    seen: Option<FileId>,
}

/// Identifies one version of the file: a rename makes a new inode.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    len: u64,
}

impl JsonFile {
    fn file_id(&self) -> Option<FileId> {
        let meta = fs::metadata(self.location()).ok()?;
        Some(FileId {
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            len: meta.len(),
        })
    }
}

impl Persistence for JsonFile {
    fn load_if_changed(&mut self) -> anyhow::Result<Option<Data>> {
        let id = self.file_id();
        if id == self.seen && id.is_some() {
            return Ok(None);
        }
        let path = self.location();
        let data = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a latchkey OAuth store (remove it to start afresh)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        self.seen = id;
        Ok(Some(data))
    }

    fn lock(&self) -> anyhow::Result<Box<dyn Send>> {
        let path = self.dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let held = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock the OAuth store: {e}"))?;
        Ok(Box::new(held))
    }

    fn save(&mut self, data: &Data) -> anyhow::Result<()> {
        let path = self.location();
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_string_pretty(data).expect("the store serializes");
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
        self.seen = self.file_id();
        Ok(())
    }

    fn location(&self) -> PathBuf {
        self.dir.join(FILE)
    }
}

pub struct Store {
    persistence: Box<dyn Persistence>,
    data: Data,
    access: HashMap<Hash, usize>,
    refresh: HashMap<Hash, usize>,
    retired: HashMap<Hash, usize>,
    checked: Instant,
}

impl Store {
    /// Opens (or starts) the store in `dir`, creating the directory (0700) if needed.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        crate::file_modes::check_state_dir(dir)?;
        let mut store = Store {
            persistence: Box::new(JsonFile {
                dir: dir.to_owned(),
                seen: None,
            }),
            data: Data::default(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            retired: HashMap::new(),
            checked: Instant::now(),
        };
        store.reload()?;
        Ok(store)
    }

    pub fn path(&self) -> PathBuf {
        self.persistence.location()
    }

    /// Reads the data again if another process changed it.
    fn reload(&mut self) -> anyhow::Result<()> {
        if let Some(data) = self.persistence.load_if_changed()? {
            self.data = data;
            self.index();
        }
        Ok(())
    }

    fn index(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.retired.clear();
        for (i, grant) in self.data.grants.iter().enumerate() {
            if let Some(h) = Hash::from_hex(&grant.access_hash) {
                self.access.insert(h, i);
            }
            if let Some(h) = Hash::from_hex(&grant.refresh_hash) {
                self.refresh.insert(h, i);
            }
            for retired in &grant.retired_refresh {
                if let Some(h) = Hash::from_hex(retired) {
                    self.retired.insert(h, i);
                }
            }
        }
    }

    /// Changes the store under the lock, from the latest version, and saves it.
    pub fn change<T>(&mut self, f: impl FnOnce(&mut Changes<'_>) -> T) -> anyhow::Result<T> {
        let _lock = self.persistence.lock()?;
        self.reload()?;
        let result = f(&mut Changes {
            data: &mut self.data,
        });
        self.data.version = 1;
        self.persistence.save(&self.data)?;
        self.index();
        Ok(result)
    }

    /// Looks for another process's change, at most once a second (for the gate, on every
    /// request with a token).
    pub fn recheck(&mut self) {
        if self.checked.elapsed() < RECHECK {
            return;
        }
        self.refresh();
    }

    /// Looks for another process's change now (one `stat`): for the OAuth endpoints, where a
    /// client just revoked must not get through.
    pub fn refresh(&mut self) -> &mut Self {
        self.checked = Instant::now();
        if let Err(e) = self.reload() {
            tracing::warn!("keeping the OAuth grants in memory: {e:#}");
        }
        self
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.data.clients.iter().find(|c| c.id == id)
    }

    pub fn clients(&self) -> &[Client] {
        &self.data.clients
    }

    pub fn grants(&self) -> &[Grant] {
        &self.data.grants
    }

    /// The grant an access token belongs to.
    pub fn access(&self, token: &Hash, now: u64) -> Found<'_> {
        match self.access.get(token).map(|&i| &self.data.grants[i]) {
            Some(grant) if grant.access_expires > now => Found::Live(grant),
            Some(_) => Found::Expired,
            None => Found::Unknown,
        }
    }

    /// The grant a refresh token belongs to; `Err(grant id)` when it was already used.
    pub fn by_refresh(&self, token: &Hash) -> Option<Result<&Grant, String>> {
        if let Some(&i) = self.refresh.get(token) {
            return Some(Ok(&self.data.grants[i]));
        }
        self.retired
            .get(token)
            .map(|&i| Err(self.data.grants[i].id.clone()))
    }
}

/// The store's data, open for one change.
pub struct Changes<'a> {
    data: &'a mut Data,
}

impl Changes<'_> {
    /// Adds a registration, after dropping stale ones. `false` when the store is full of
    /// clients holding grants or `signing_in` (never evicted: a flood of registrations
    /// between a person's consent and its token request used to evict that client).
    pub fn register(&mut self, client: Client, now: u64, signing_in: &HashSet<String>) -> bool {
        let granted: Vec<String> = self
            .data
            .grants
            .iter()
            .map(|g| g.client_id.clone())
            .collect();
        let in_use = |c: &Client| granted.contains(&c.id) || signing_in.contains(&c.id);
        self.data
            .clients
            .retain(|c| in_use(c) || now.saturating_sub(c.registered_at) < UNUSED_REGISTRATION);
        if self.data.clients.len() >= MAX_REGISTERED {
            let oldest_unused = self
                .data
                .clients
                .iter()
                .enumerate()
                .filter(|(_, c)| !in_use(c))
                .min_by_key(|(_, c)| c.registered_at)
                .map(|(i, _)| i);
            match oldest_unused {
                Some(i) => {
                    self.data.clients.remove(i);
                }
                None => return false,
            }
        }
        self.data.clients.push(client);
        true
    }

    pub fn add_grant(&mut self, grant: Grant) {
        if self.data.grants.len() >= MAX_GRANTS
            && let Some(i) =
                (0..self.data.grants.len()).min_by_key(|&i| self.data.grants[i].refreshed_at)
        {
            self.data.grants.remove(i);
        }
        self.data.grants.push(grant);
    }

    pub fn grant_mut(&mut self, id: &str) -> Option<&mut Grant> {
        self.data.grants.iter_mut().find(|g| g.id == id)
    }

    /// Removes the grants `f` picks; how many went.
    pub fn remove_grants(&mut self, f: impl Fn(&Grant) -> bool) -> usize {
        let before = self.data.grants.len();
        self.data.grants.retain(|g| !f(g));
        before - self.data.grants.len()
    }

    /// Removes a registered client and its grants: its next token request gets
    /// `invalid_client`, which makes Claude register again.
    pub fn remove_client(&mut self, id: &str) -> (usize, usize) {
        let before = self.data.clients.len();
        self.data.clients.retain(|c| c.id != id);
        (
            before - self.data.clients.len(),
            self.remove_grants(|g| g.client_id == id),
        )
    }

    pub fn remove_all(&mut self) -> (usize, usize) {
        let counts = (self.data.clients.len(), self.data.grants.len());
        self.data.clients.clear();
        self.data.grants.clear();
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, access: &Hash, refresh: &Hash, expires: u64) -> Grant {
        Grant {
            id: id.into(),
            client_id: "c".into(),
            client_name: None,
            secret_id: "s".into(),
            scope: "mcp".into(),
            resource: "http://x/mcp".into(),
            created_at: 1,
            refreshed_at: 1,
            access_hash: access.to_hex(),
            access_expires: expires,
            refresh_hash: refresh.to_hex(),
            refresh_expires: expires,
            retired_refresh: vec![],
        }
    }

    #[test]
    fn grants_survive_reopening_and_another_writer_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, r) = (Hash::of(b"a"), Hash::of(b"r"));
        let mut store = Store::open(dir.path()).unwrap();
        store
            .change(|c| c.add_grant(grant("g1", &a, &r, 100)))
            .unwrap();
        assert!(matches!(store.access(&a, 50), Found::Live(g) if g.id == "g1"));
        assert_eq!(store.access(&a, 100), Found::Expired);
        assert_eq!(store.access(&Hash::of(b"x"), 50), Found::Unknown);
        let mut other = Store::open(dir.path()).unwrap();
        assert!(matches!(other.access(&a, 50), Found::Live(_)));
        other.change(|c| c.remove_all()).unwrap();
        store.checked = Instant::now() - RECHECK;
        store.recheck();
        assert_eq!(store.access(&a, 50), Found::Unknown);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn registrations_are_bounded_and_unused_ones_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let client = |id: String, at| Client {
            id,
            name: None,
            redirect_uris: vec![],
            auth_method: "none".into(),
            secret_hash: None,
            registration_hash: None,
            registered_at: at,
        };
        store
            .change(|c| {
                for i in 0..MAX_REGISTERED + 5 {
                    assert!(c.register(
                        client(format!("c{i}"), 1000 + i as u64),
                        2000,
                        &HashSet::new()
                    ));
                }
            })
            .unwrap();
        assert_eq!(store.clients().len(), MAX_REGISTERED);
        assert!(store.client("c0").is_none() && store.client("c104").is_some());
        store
            .change(|c| {
                c.register(
                    client("late".into(), 2000 + UNUSED_REGISTRATION),
                    2000 + UNUSED_REGISTRATION,
                    &HashSet::new(),
                )
            })
            .unwrap();
        assert_eq!(store.clients().len(), 1);
        // A client being signed in is kept when a full store evicts.
        let signing_in = HashSet::from(["late".to_owned()]);
        store
            .change(|c| {
                for i in 0..MAX_REGISTERED + 5 {
                    c.register(client(format!("d{i}"), 1 + i as u64), 2000, &signing_in);
                }
            })
            .unwrap();
        assert!(store.client("late").is_some());
    }
}
