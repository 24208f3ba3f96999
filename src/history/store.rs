//! The history database: every call (names and numbers, as `activity::Call` has them, a
//! batch of them to a row), and per tool and five minutes a count, an error count and a
//! duration histogram, which is all the tools view reads. SQLite in WAL mode: the console reads while the writer writes.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};

use super::histogram::Histogram;
use crate::activity::call::{Call, Outcome};

/// The tools view's resolution: a week is 2,016 slots a tool.
pub const SLOT_MS: u64 = 5 * 60 * 1000;

/// The layout [`SCHEMA`] makes (`PRAGMA user_version`): a file of another is moved aside.
const LAYOUT: i64 = 2;

/// Calls are kept a batch to a row, each call a postcard record ([`Row`]) one after
/// another: one row a call cost the writer about 9,600 instructions a call (SQLite's insert,
/// its index and twelve bound values; 7% of a request's), a batch's row as JSON lines 4,900,
/// as postcard records a fraction of that. Nothing reads one call alone: the live view takes
/// the last batches at start, the tools view the slots.
const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS batches (
    last_id INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    calls BLOB NOT NULL
);
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
    #[error("history database: a batch of calls cannot be read: {0}")]
    Batch(#[from] postcard::Error),
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
    let layout: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let empty: bool = connection.query_row(
        "SELECT count(*) = 0 FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    if layout != LAYOUT && !empty {
        // An older latchkey's file: kept aside, as a damaged one is.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            Some(format!("layout {layout}, not {LAYOUT}")),
        ));
    }
    connection.execute_batch(SCHEMA)?;
    connection.pragma_update(None, "user_version", LAYOUT)?;
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
        let mut statement = self
            .connection
            .prepare("SELECT first_id, last_id, calls FROM batches ORDER BY last_id DESC")?;
        let mut rows = statement.query([])?;
        let mut batches = Vec::new();
        let mut count = 0;
        while count < n
            && let Some(row) = rows.next()?
        {
            let (first, last): (i64, i64) = (row.get(0)?, row.get(1)?);
            count += (last - first + 1).max(1) as usize;
            batches.push(row.get::<_, Vec<u8>>(2)?);
        }
        let mut calls = Vec::with_capacity(count);
        for batch in batches.iter().rev() {
            let mut rest = &batch[..];
            while !rest.is_empty() {
                let (row, after) = postcard::take_from_bytes::<Row>(rest)?;
                calls.push(from_row(row));
                rest = after;
            }
        }
        calls.drain(..calls.len().saturating_sub(n));
        Ok(calls)
    }

    /// Writes `calls` (in id order) as one batch, and their tools' slots, in one
    /// transaction. A tool call's arguments and result are not written: they are shown
    /// live, never kept.
    pub fn write(&mut self, calls: &[std::sync::Arc<Call>]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (calls.first(), calls.last()) else {
            return Ok(());
        };
        let mut records = Vec::with_capacity(calls.len() * 64);
        for call in calls {
            write_record(&mut records, call);
        }
        let transaction = self.connection.transaction()?;
        transaction
            .prepare_cached(
                "INSERT OR IGNORE INTO batches (last_id, first_id, last_ms, calls)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                last.id as i64,
                first.id as i64,
                last.at_ms as i64,
                records
            ])?;
        write_slots(&transaction, calls)?;
        transaction.commit()?;
        Ok(())
    }

    /// Removes what is older than `retention`, then the oldest batches until the file is
    /// within `max_bytes`. Returns the batches removed.
    pub fn prune(
        &mut self,
        now_ms: u64,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(retention.as_millis() as u64) as i64;
        let mut removed =
            self.connection
                .execute("DELETE FROM batches WHERE last_ms < ?1", [cutoff])? as u64;
        self.connection.execute(
            "DELETE FROM tool_slots WHERE slot < ?1",
            [cutoff / SLOT_MS as i64],
        )?;
        while self.used_bytes()? > max_bytes {
            let n = self.connection.execute(
                "DELETE FROM batches WHERE last_id IN
                   (SELECT last_id FROM batches ORDER BY last_id
                    LIMIT (SELECT max(count(*) / 10, 1) FROM batches))",
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
        let id: Option<i64> =
            self.connection
                .query_row("SELECT max(last_id) FROM batches", [], |r| r.get(0))?;
        Ok(id.unwrap_or(0) as u64)
    }
}

/// A call as kept: its fields in order, arguments and result left out.
type Row<'a> = (
    u64,
    u64,
    Cow<'a, str>,
    Option<Cow<'a, str>>,
    Option<Cow<'a, str>>,
    Option<Cow<'a, str>>,
    Outcome,
    Option<Cow<'a, str>>,
    u64,
    Option<usize>,
    Option<usize>,
    Option<Cow<'a, str>>,
);

#[cfg(test)]
fn borrow(text: &Option<impl std::ops::Deref<Target = str>>) -> Option<Cow<'_, str>> {
    text.as_deref().map(Cow::Borrowed)
}

/// Appends `call` as postcard writes its [`Row`] (and reads it back): integers as LEB128
/// varints, a string as its length and bytes, an option as 0 or 1 and the value, the outcome
/// as its variant's index. By hand: through postcard's serializer a call cost the writer
/// 550 instructions of its 1,214; written so, the writer's whole cost a call is 932
/// (bench/instructions, profiled).
fn write_record(out: &mut Vec<u8>, call: &Call) {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn text(out: &mut Vec<u8>, text: &str) {
        varint(out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl Fn(&mut Vec<u8>, T)) {
        match value {
            Some(value) => {
                out.push(1);
                write(out, value);
            }
            None => out.push(0),
        }
    }
    varint(out, call.id);
    varint(out, call.at_ms);
    text(out, &call.method);
    optional(out, call.tool.as_deref(), text);
    optional(out, call.prompt.as_deref(), text);
    optional(out, call.client.as_deref(), text);
    varint(out, call.outcome as u64);
    optional(out, call.error.as_deref(), text);
    varint(out, (call.duration_ms * 1000.0) as u64);
    optional(out, call.arguments_bytes, |out, n| varint(out, n as u64));
    optional(out, call.answer_bytes, |out, n| varint(out, n as u64));
    optional(out, call.trace_id.as_deref(), text);
}

#[cfg(test)]
fn to_row(call: &Call) -> Row<'_> {
    (
        call.id,
        call.at_ms,
        Cow::Borrowed(&call.method),
        borrow(&call.tool),
        borrow(&call.prompt),
        borrow(&call.client),
        call.outcome,
        borrow(&call.error),
        (call.duration_ms * 1000.0) as u64,
        call.arguments_bytes,
        call.answer_bytes,
        borrow(&call.trace_id),
    )
}

fn from_row(row: Row<'_>) -> Call {
    let own = |text: Option<Cow<'_, str>>| text.map(Cow::into_owned);
    let shared = |text: Option<Cow<'_, str>>| text.map(|t| std::sync::Arc::from(&*t));
    Call {
        id: row.0,
        at_ms: row.1,
        method: Cow::Owned(row.2.into_owned()),
        tool: shared(row.3),
        prompt: shared(row.4),
        client: shared(row.5),
        outcome: row.6,
        error: own(row.7),
        duration_ms: row.8 as f64 / 1000.0,
        arguments_bytes: row.9,
        answer_bytes: row.10,
        trace_id: own(row.11),
        arguments: None,
        result: None,
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

/// The slots `calls` fall in, each with what they add to it. A list searched from its end,
/// not a map: a batch's calls are mostly of a few tools and one slot, and hashing each
/// call's tool cost more than finding it.
fn gather(calls: &[std::sync::Arc<Call>]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::new();
    for call in calls {
        let Some(tool) = call.tool.as_deref() else {
            continue;
        };
        let slot = call.at_ms / SLOT_MS;
        let found = slots.iter().rposition(|s| s.slot == slot && s.tool == tool);
        let index = found.unwrap_or_else(|| {
            slots.push(Slot {
                tool: tool.to_owned(),
                slot,
                calls: 0,
                errors: 0,
                last_ms: 0,
                last_client: None,
                histogram: Histogram::default(),
            });
            slots.len() - 1
        });
        let entry = &mut slots[index];
        entry.calls += 1;
        // Cancelled is the client's doing, not the tool's.
        entry.errors += u64::from(matches!(call.outcome, Outcome::ToolError | Outcome::Error));
        if call.at_ms >= entry.last_ms {
            entry.last_ms = call.at_ms;
            if entry.last_client.as_deref() != call.client.as_deref() {
                entry.last_client = call.client.as_deref().map(str::to_owned);
            }
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
    for mut slot in gather(calls) {
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_record_is_what_postcard_writes_and_reads_back() {
        let long = "é".repeat(300);
        let texts = [None, Some(""), Some("hello"), Some(long.as_str())];
        for (i, text) in texts.into_iter().enumerate() {
            for outcome in [
                Outcome::Ok,
                Outcome::ToolError,
                Outcome::Error,
                Outcome::Cancelled,
            ] {
                let call = Call {
                    id: 1 << (i * 20),
                    at_ms: 1_764_633_600_123,
                    method: Cow::Borrowed("tools/call"),
                    tool: text.map(Arc::from),
                    prompt: None,
                    client: text.map(Arc::from),
                    outcome,
                    error: text.map(str::to_owned),
                    duration_ms: 1.5 * i as f64,
                    arguments_bytes: text.map(|_| 127),
                    answer_bytes: text.map(|_| 1 << 40),
                    trace_id: text.map(str::to_owned),
                    arguments: None,
                    result: None,
                };
                let mut record = Vec::new();
                write_record(&mut record, &call);
                assert_eq!(record, postcard::to_allocvec(&to_row(&call)).unwrap());
                let (row, rest) = postcard::take_from_bytes::<Row>(&record).unwrap();
                assert!(rest.is_empty());
                let back = from_row(row);
                assert_eq!(
                    (back.id, back.outcome, back.tool),
                    (call.id, outcome, call.tool)
                );
            }
        }
    }
}
