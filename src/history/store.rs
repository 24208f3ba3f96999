//! The history database: every call (names and numbers, as `activity::Call` has them), and
//! per tool and five minutes a count, an error count and a duration histogram, which is all
//! the tools view reads. SQLite in WAL mode: the console reads while the writer writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};

use super::histogram::Histogram;
use crate::activity::call::{Call, Outcome};

/// The tools view's resolution: a week is 2,016 slots a tool.
pub const SLOT_MS: u64 = 5 * 60 * 1000;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    method TEXT NOT NULL,
    tool TEXT,
    prompt TEXT,
    client TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    duration_us INTEGER NOT NULL,
    arguments_bytes INTEGER,
    answer_bytes INTEGER,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS calls_at ON calls (at_ms);
CREATE TABLE IF NOT EXISTS tool_slots (
    tool TEXT NOT NULL,
    slot INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    last_client TEXT,
    histogram BLOB NOT NULL,
    PRIMARY KEY (tool, slot)
);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the history database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot make the history database {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move the broken history database {} aside: {source}", path.display())]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Untrusted(#[from] crate::file_modes::Untrusted),
}

pub struct Store {
    connection: Connection,
}

fn is_broken(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn open_once(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.execute_batch(SCHEMA)?;
    // Reading one row finds most damage that opening does not.
    connection
        .query_row("SELECT count(*) FROM tool_slots", [], |_| Ok(()))
        .optional()?;
    Ok(connection)
}

/// The file made first, readable by latchkey's user only (SQLite gives its journal files
/// the same mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Opens (or makes) the database at `path`; one that is not a database, or is damaged,
    /// is moved aside with a warning and a new one made.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let opening = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let creating = |source| StoreError::Create {
            path: path.to_owned(),
            source,
        };
        create_private(path).map_err(creating)?;
        match open_once(path) {
            Ok(connection) => Ok(Store { connection }),
            Err(e) if is_broken(&e) => {
                let aside = Self::move_aside(path)?;
                tracing::warn!(
                    "the history database {} was damaged ({e}); moved it to {} and started a new one",
                    path.display(),
                    aside.display()
                );
                create_private(path).map_err(creating)?;
                let connection = open_once(path).map_err(opening)?;
                Ok(Store { connection })
            }
            Err(e) => Err(opening(e)),
        }
    }

    fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = path.with_extension(format!("sqlite3.broken-{stamp}"));
        std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
            path: path.to_owned(),
            source,
        })?;
        for suffix in ["-wal", "-shm"] {
            let mut journal = path.as_os_str().to_owned();
            journal.push(suffix);
            let _ = std::fs::remove_file(journal);
        }
        Ok(aside)
    }

    /// A second connection to the same file, for reading while this one writes.
    pub fn reader(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(Store { connection })
    }

    /// The last `n` calls, oldest first (what the live view shows after a restart).
    pub fn last_calls(&self, n: usize) -> Result<Vec<Call>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, at_ms, method, tool, prompt, client, outcome, error, duration_us,
                    arguments_bytes, answer_bytes, trace_id
             FROM calls ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([n as i64], |row| {
            Ok(Call {
                id: row.get::<_, i64>(0)? as u64,
                at_ms: row.get::<_, i64>(1)? as u64,
                method: row.get(2)?,
                tool: row.get(3)?,
                prompt: row.get(4)?,
                client: row.get(5)?,
                outcome: Outcome::from_word(&row.get::<_, String>(6)?),
                error: row.get(7)?,
                duration_ms: row.get::<_, i64>(8)? as f64 / 1000.0,
                arguments_bytes: row.get::<_, Option<i64>>(9)?.map(|n| n as usize),
                answer_bytes: row.get::<_, Option<i64>>(10)?.map(|n| n as usize),
                trace_id: row.get(11)?,
                arguments: None,
                result: None,
            })
        })?;
        let mut calls = rows.collect::<Result<Vec<_>, _>>()?;
        calls.reverse();
        Ok(calls)
    }

    /// Writes `calls` and their tools' slots in one transaction.
    pub fn write(&mut self, calls: &[std::sync::Arc<Call>]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT OR IGNORE INTO calls (id, at_ms, method, tool, prompt, client, outcome,
                   error, duration_us, arguments_bytes, answer_bytes, trace_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for call in calls {
                insert.execute(params![
                    call.id as i64,
                    call.at_ms as i64,
                    call.method,
                    call.tool,
                    call.prompt,
                    call.client,
                    call.outcome.as_str(),
                    call.error,
                    (call.duration_ms * 1000.0) as i64,
                    call.arguments_bytes.map(|n| n as i64),
                    call.answer_bytes.map(|n| n as i64),
                    call.trace_id,
                ])?;
            }
            write_slots(&transaction, calls)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Removes what is older than `retention`, then the oldest calls until the file is
    /// within `max_bytes`. Returns the calls removed.
    pub fn prune(
        &mut self,
        now_ms: u64,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(retention.as_millis() as u64) as i64;
        let mut removed =
            self.connection
                .execute("DELETE FROM calls WHERE at_ms < ?1", [cutoff])? as u64;
        self.connection.execute(
            "DELETE FROM tool_slots WHERE slot < ?1",
            [cutoff / SLOT_MS as i64],
        )?;
        while self.used_bytes()? > max_bytes {
            let n = self.connection.execute(
                "DELETE FROM calls WHERE id IN
                   (SELECT id FROM calls ORDER BY id LIMIT (SELECT max(count(*) / 10, 1) FROM calls))",
                [],
            )? as u64;
            removed += n;
            if n == 0 {
                // No call left: the slots alone are over (a flood of tool names).
                let slots = self.connection.execute(
                    "DELETE FROM tool_slots WHERE rowid IN
                       (SELECT rowid FROM tool_slots ORDER BY slot LIMIT
                          (SELECT max(count(*) / 10, 1) FROM tool_slots))",
                    [],
                )?;
                if slots == 0 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// The bytes the database's pages hold (free pages not counted: they are reused).
    fn used_bytes(&self) -> Result<u64, StoreError> {
        let pages: i64 = self
            .connection
            .query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .connection
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self
            .connection
            .query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Every tool's slots since `since_slot`.
    pub fn slots(&self, since_slot: u64) -> Result<Vec<Slot>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT tool, slot, calls, errors, last_ms, last_client, histogram
             FROM tool_slots WHERE slot >= ?1",
        )?;
        let rows = statement.query_map([since_slot as i64], Slot::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest call id kept: the next process counts on from it.
    pub fn last_id(&self) -> Result<u64, StoreError> {
        let id: Option<i64> = self
            .connection
            .query_row("SELECT max(id) FROM calls", [], |r| r.get(0))?;
        Ok(id.unwrap_or(0) as u64)
    }
}

/// One tool's five minutes.
#[derive(Debug, Clone)]
pub struct Slot {
    pub tool: String,
    pub slot: u64,
    pub calls: u64,
    pub errors: u64,
    pub last_ms: u64,
    pub last_client: Option<String>,
    pub histogram: Histogram,
}

impl Slot {
    /// A `tool_slots` row, its columns in the table's order.
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Slot {
            tool: row.get(0)?,
            slot: row.get::<_, i64>(1)? as u64,
            calls: row.get::<_, i64>(2)? as u64,
            errors: row.get::<_, i64>(3)? as u64,
            last_ms: row.get::<_, i64>(4)? as u64,
            last_client: row.get(5)?,
            histogram: Histogram::from_bytes(&row.get::<_, Vec<u8>>(6)?),
        })
    }

    /// What `kept` (the same tool's same slot, as stored) adds to this one.
    fn merge(&mut self, kept: Slot) {
        self.calls += kept.calls;
        self.errors += kept.errors;
        self.histogram.merge(&kept.histogram);
        if kept.last_ms > self.last_ms {
            self.last_ms = kept.last_ms;
            self.last_client = kept.last_client;
        }
    }
}

/// The slots `calls` fall in, each with what they add to it.
fn gather(calls: &[std::sync::Arc<Call>]) -> HashMap<(&str, u64), Slot> {
    let mut slots: HashMap<(&str, u64), Slot> = HashMap::new();
    for call in calls {
        let Some(tool) = call.tool.as_deref() else {
            continue;
        };
        let slot = call.at_ms / SLOT_MS;
        let entry = slots.entry((tool, slot)).or_insert_with(|| Slot {
            tool: tool.to_owned(),
            slot,
            calls: 0,
            errors: 0,
            last_ms: 0,
            last_client: None,
            histogram: Histogram::default(),
        });
        entry.calls += 1;
        // Cancelled is the client's doing, not the tool's.
        entry.errors += u64::from(matches!(call.outcome, Outcome::ToolError | Outcome::Error));
        if call.at_ms >= entry.last_ms {
            entry.last_ms = call.at_ms;
            entry.last_client = call.client.clone();
        }
        entry.histogram.record((call.duration_ms * 1000.0) as u64);
    }
    slots
}

/// Adds `calls` to their tools' slots: each slot read, merged and written back.
fn write_slots(
    transaction: &rusqlite::Transaction<'_>,
    calls: &[std::sync::Arc<Call>],
) -> Result<(), StoreError> {
    let mut read = transaction.prepare_cached(
        "SELECT tool, slot, calls, errors, last_ms, last_client, histogram
         FROM tool_slots WHERE tool = ?1 AND slot = ?2",
    )?;
    let mut write = transaction.prepare_cached(
        "INSERT OR REPLACE INTO tool_slots (tool, slot, calls, errors, last_ms, last_client, histogram)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (_, mut slot) in gather(calls) {
        let kept = read
            .query_row(params![slot.tool, slot.slot as i64], Slot::from_row)
            .optional()?;
        if let Some(kept) = kept {
            slot.merge(kept);
        }
        write.execute(params![
            slot.tool,
            slot.slot as i64,
            slot.calls as i64,
            slot.errors as i64,
            slot.last_ms as i64,
            slot.last_client,
            slot.histogram.to_bytes(),
        ])?;
    }
    Ok(())
}
