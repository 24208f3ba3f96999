//! The console's history: every call the activity sees, written to SQLite in the state
//! directory (`activity.sqlite3`) by a thread of its own, in batches, never on the request
//! path. Kept for `--history-retention` and within `--history-max-size`; it survives
//! restarts, so the live view starts with the last calls and the tools view covers the week.
//!
//! - `store`: the database (calls, and per tool and five minutes a histogram);
//! - `histogram`: durations in fixed buckets, merged by adding;
//! - `tools`: what the tools view shows, from those slots.
//!
//! What the request path does is one push onto a bounded list under a lock: a writer that
//! falls [`QUEUE`] calls behind loses calls (counted, said in the log), never slows a
//! request. A list, not a channel: `mpsc`'s send and the writer's receive cost a call about
//! 420 instructions, the push about 60 (bench/instructions, profiled).

mod histogram;
mod store;
mod tools;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use histogram::Histogram;
use store::{SLOT_MS, Store};
pub use store::{Slot, StoreError};
pub use tools::{Hour, ToolStats, WINDOWS, Window};

use crate::activity::call::Call;

/// Calls waiting for the writer.
pub const QUEUE: usize = 8192;
/// Calls written in one transaction at most.
const BATCH: usize = 512;
/// How long the writer sleeps after a call, for others to share its transaction.
const LINGER: Duration = Duration::from_secs(1);
/// How often old calls are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// The database's name in the state directory.
pub const FILE: &str = "activity.sqlite3";

/// What waits for the writer.
#[derive(Default)]
struct Pending {
    calls: Vec<Arc<Call>>,
    /// Write what is waiting, say so here, and stop.
    close: Option<mpsc::SyncSender<()>>,
}

/// Shared by the request path and the writer: the writer is woken when the first call of a
/// batch comes, and at close.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the writer to write what waits and stop; `false` when it was asked already.
    fn close(&self, done: mpsc::SyncSender<()>) -> bool {
        let mut pending = self.lock();
        if pending.close.is_some() {
            return false;
        }
        pending.close = Some(done);
        self.wake.notify_one();
        true
    }
}

/// How long calls are kept, and how large the file may grow.
#[derive(Clone, Copy, Debug)]
pub struct Keep {
    pub retention: Duration,
    pub max_bytes: u64,
}

pub struct History {
    queue: Arc<Queue>,
    lost: AtomicU64,
    path: PathBuf,
    reader: Mutex<Option<Store>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.path).finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl History {
    /// Opens the history in `state_dir` and starts its writer; returns it with the last
    /// `recent` calls kept (oldest first) and the last id used.
    pub fn open(
        state_dir: &Path,
        keep: Keep,
        recent: usize,
    ) -> Result<(Self, Vec<Call>, u64), StoreError> {
        let path = state_dir.join(FILE);
        // As the key and the OAuth store make it: 0700, and refused when others may write it.
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StoreError::Create {
                path: state_dir.to_owned(),
                source,
            })?;
        crate::file_modes::check_state_dir(state_dir)?;
        let mut store = Store::open(&path)?;
        store.prune(now_ms(), keep.retention, keep.max_bytes)?;
        let last = store.last_calls(recent)?;
        let last_id = store.last_id()?;
        let queue = Arc::new(Queue::default());
        let writing = queue.clone();
        let writer = std::thread::Builder::new()
            .name("latchkey-history".into())
            .spawn(move || write_until_closed(store, &writing, keep))
            .map_err(|source| StoreError::Create {
                path: path.clone(),
                source,
            })?;
        let history = History {
            queue,
            lost: AtomicU64::new(0),
            reader: Mutex::new(None),
            writer: Mutex::new(Some(writer)),
            path,
        };
        Ok((history, last, last_id))
    }

    /// Queues `call` for the writer; when the queue is full the call is lost, and counted.
    pub fn record(&self, call: Arc<Call>) {
        let mut pending = self.queue.lock();
        // Full, or closed at shutdown: the call is not kept either way.
        let kept = pending.close.is_none() && pending.calls.len() < QUEUE;
        if kept {
            pending.calls.push(call);
            if pending.calls.len() == 1 {
                self.queue.wake.notify_one();
            }
            return;
        }
        drop(pending);
        let lost = self.lost.fetch_add(1, Ordering::Relaxed);
        if lost.is_power_of_two() {
            tracing::warn!(
                "history: the writer is behind; {} call(s) not kept",
                lost + 1
            );
        }
    }

    /// Every tool's stats over the last week (the reader's own connection; blocking).
    pub fn tools(&self) -> Result<Vec<ToolStats>, StoreError> {
        let now = now_ms();
        let week = WINDOWS[2].1 * SLOT_MS;
        Ok(tools::stats(self.slots(now.saturating_sub(week))?, now))
    }

    /// Every tool's five-minute slots since `since_ms`, from a connection of the reader's own.
    pub fn slots(&self, since_ms: u64) -> Result<Vec<Slot>, StoreError> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            *reader = Some(Store::reader(&self.path)?);
        }
        reader
            .as_ref()
            .expect("opened above")
            .slots(since_ms / SLOT_MS)
    }

    /// Writes what is queued and stops the writer (at shutdown), waiting at most `patience`;
    /// a call recorded after it is counted as not kept.
    pub fn close(&self, patience: Duration) {
        let (done, wait) = mpsc::sync_channel(1);
        let closed = self.queue.close(done) && wait.recv_timeout(patience).is_ok();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (true, Some(writer)) = (closed, writer) {
            let _ = writer.join();
        }
    }
}

impl Drop for History {
    /// Not closed (a test's history): the writer writes what waits and stops, unwaited.
    fn drop(&mut self) {
        self.queue.close(mpsc::sync_channel(1).0);
    }
}

/// The writer: it waits for a call, sleeps [`LINGER`] while others queue up, then writes
/// what is queued in batches of up to [`BATCH`]; old calls pruned every [`PRUNE_EVERY`].
/// Asleep, not waiting on the queue, while calls queue: a request then has nobody to wake
/// (waking it on every call cost each request a futex call and the writer a turn).
fn write_until_closed(mut store: Store, queue: &Queue, keep: Keep) {
    let mut pruned = Instant::now();
    // Swapped with the queue's list: neither grows anew each batch.
    let mut calls = Vec::new();
    loop {
        let close = next_batch(queue, &mut calls);
        for batch in calls.chunks(BATCH) {
            write(&mut store, batch);
        }
        calls.clear();
        if let Some(done) = close {
            let _ = done.send(());
            return;
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            if let Err(e) = store.prune(now_ms(), keep.retention, keep.max_bytes) {
                tracing::warn!("history: cannot remove old calls: {e}");
            }
        }
    }
}

/// What waits (into `calls`, empty) once a call has come and [`LINGER`] has passed (or at
/// close, or after [`PRUNE_EVERY`] with nothing), and whether to stop after writing it.
fn next_batch(queue: &Queue, calls: &mut Vec<Arc<Call>>) -> Option<mpsc::SyncSender<()>> {
    let idle = |p: &mut Pending| p.calls.is_empty() && p.close.is_none();
    let pending = queue.lock();
    let (pending, _) = queue
        .wake
        .wait_timeout_while(pending, PRUNE_EVERY, idle)
        .unwrap_or_else(|e| e.into_inner());
    let lingering = |p: &mut Pending| p.close.is_none();
    let mut pending = if pending.calls.is_empty() {
        pending
    } else {
        queue
            .wake
            .wait_timeout_while(pending, LINGER, lingering)
            .unwrap_or_else(|e| e.into_inner())
            .0
    };
    std::mem::swap(&mut pending.calls, calls);
    pending.close.take()
}

fn write(store: &mut Store, batch: &[Arc<Call>]) {
    if let Err(e) = store.write(batch) {
        tracing::warn!("history: {} call(s) not kept: {e}", batch.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::call::Outcome;

    fn call(id: u64, tool: &str, outcome: Outcome, ms: f64) -> Arc<Call> {
        Arc::new(Call {
            id,
            at_ms: now_ms(),
            method: "tools/call".into(),
            tool: Some(tool.into()),
            prompt: None,
            client: Some("Claude".into()),
            outcome,
            error: None,
            duration_ms: ms,
            arguments_bytes: Some(2),
            answer_bytes: Some(10),
            trace_id: None,
            arguments: None,
            result: None,
        })
    }

    const KEEP: Keep = Keep {
        retention: Duration::from_secs(86400),
        max_bytes: 1 << 30,
    };

    #[test]
    fn calls_survive_a_reopen_and_their_tools_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (history, last, last_id) = History::open(dir.path(), KEEP, 10).unwrap();
        assert!(last.is_empty() && last_id == 0);
        history.record(call(1, "hello", Outcome::Ok, 2.0));
        history.record(call(2, "hello", Outcome::ToolError, 40.0));
        history.record(call(3, "other", Outcome::Ok, 1.0));
        history.close(Duration::from_secs(10));
        let slots = history.slots(0).unwrap();
        let hello: Vec<_> = slots.iter().filter(|s| s.tool == "hello").collect();
        assert_eq!(hello.len(), 1);
        assert_eq!((hello[0].calls, hello[0].errors), (2, 1));
        assert_eq!(hello[0].histogram.count(), 2);
        drop(history);

        let (_again, last, last_id) = History::open(dir.path(), KEEP, 2).unwrap();
        assert_eq!(last_id, 3);
        let ids: Vec<_> = last.iter().map(|c| c.id).collect();
        assert_eq!(ids, [2, 3], "the last two, oldest first");
        assert_eq!(last[0].outcome, Outcome::ToolError);
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_state_directory_is_made_private_and_an_open_one_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("new").join("state");
        History::open(&state, KEEP, 10).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = History::open(&state, KEEP, 10).expect_err("refused");
        assert!(refused.to_string().contains("chmod"), "{refused}");
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_a_new_one_made() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            b"not a database, not at all, no".repeat(200),
        )
        .unwrap();
        let (history, last, _) = History::open(dir.path(), KEEP, 10).unwrap();
        assert!(last.is_empty());
        history.record(call(1, "hello", Outcome::Ok, 2.0));
        history.close(Duration::from_secs(10));
        assert_eq!(history.slots(0).unwrap().len(), 1);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("broken-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
    }

    #[test]
    fn a_file_of_an_older_layout_is_moved_aside_and_io_is_never_kept() {
        let dir = tempfile::tempdir().unwrap();
        let older = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
        older
            .execute_batch("CREATE TABLE calls (id INTEGER)")
            .unwrap();
        drop(older);
        let (history, last, _) = History::open(dir.path(), KEEP, 10).unwrap();
        assert!(last.is_empty());
        let mut with_io = Call::clone(&call(1, "hello", Outcome::Ok, 2.0));
        with_io.arguments = Some("{\"city\":\"Lisbon\"}".into());
        with_io.result = Some("sunny".into());
        history.record(Arc::new(with_io));
        history.close(Duration::from_secs(10));
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("broken-")
            })
            .count();
        assert_eq!(aside, 1);
        drop(history);
        let (_again, last, _) = History::open(dir.path(), KEEP, 10).unwrap();
        assert_eq!((last.len(), last[0].tool.as_deref()), (1, Some("hello")));
        assert!(last[0].arguments.is_none() && last[0].result.is_none());
        for suffix in ["", "-wal"] {
            let file = std::fs::read(dir.path().join(format!("{FILE}{suffix}")));
            let file = file.unwrap_or_default();
            assert!(
                !file.windows(6).any(|w| w == b"Lisbon"),
                "arguments are not kept"
            );
        }
    }

    #[test]
    fn a_slot_adds_up_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join(FILE)).unwrap();
        store.write(&[call(1, "hello", Outcome::Ok, 1.0)]).unwrap();
        store
            .write(&[
                call(2, "hello", Outcome::Error, 3.0),
                call(3, "hello", Outcome::Cancelled, 2.0),
            ])
            .unwrap();
        let slots = store.slots(0).unwrap();
        assert_eq!(slots.len(), 1, "{slots:?}");
        assert_eq!(
            (slots[0].calls, slots[0].errors),
            (3, 1),
            "cancelled is no error"
        );
        assert_eq!(slots[0].histogram.count(), 3);
    }

    #[test]
    fn old_calls_go_and_the_file_stays_within_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut store = Store::open(&path).unwrap();
        let calls: Vec<_> = (1..=2000)
            .map(|i| call(i, "hello", Outcome::Ok, 1.0))
            .collect();
        for batch in calls.chunks(100) {
            store.write(batch).unwrap();
        }
        assert_eq!(store.last_calls(150).unwrap()[0].id, 1851, "across batches");
        // Nothing is older than a day; the size bound removes the oldest tenth at a time.
        let removed = store.prune(now_ms(), KEEP.retention, 64 * 1024).unwrap();
        assert!(removed > 0 && removed < 20, "{removed} of 20 batches");
        assert!(
            store.last_calls(1).unwrap()[0].id == 2000,
            "the newest stay"
        );
        // A retention of nothing removes every call.
        store.prune(now_ms() + 1, Duration::ZERO, 1 << 30).unwrap();
        assert!(store.last_calls(1).unwrap().is_empty());
    }
}
