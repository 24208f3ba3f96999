//! Progress heartbeats: while an upstream says nothing on a call whose client asked for
//! progress, latchkey tells that client it is still waiting, every `--heartbeat`. Claude
//! Code resets its clock on progress; servers hand-roll this, a front door can do it for
//! every server behind it.
//!
//! A heartbeat repeats the last progress the upstream gave (0 before any) with its total,
//! so the upstream's next progress, which passes through unchanged, is still an increase;
//! its message starts `latchkey:` and its `_meta` holds `latchkey/heartbeat: true`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::Peer;
use rmcp::model::{MetaObject, ProgressNotificationParam, ProgressToken};
use rmcp::service::RoleServer;
use tokio::time::Instant;

/// The `_meta` key that marks a progress notification as latchkey's own.
pub const HEARTBEAT_META: &str = "latchkey/heartbeat";

/// Longer than any call may take (`--tool-timeout` ends it first).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the upstream last said on one call: when, and its progress and total.
pub struct Heard {
    since: Instant,
    inner: Mutex<(Instant, f64, Option<f64>)>,
}

impl Heard {
    pub fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Heard {
            since: now,
            inner: Mutex::new((now, 0.0, None)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, f64, Option<f64>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The upstream's progress, on its way to the client.
    pub fn progress(&self, progress: &ProgressNotificationParam) {
        *self.lock() = (Instant::now(), progress.progress, progress.total);
    }

    /// The heartbeat for `token` when the upstream has been silent for `every`; else when
    /// to look again.
    fn beat(
        &self,
        every: Duration,
        token: &ProgressToken,
        upstream: &str,
    ) -> Result<ProgressNotificationParam, Instant> {
        let (progress, total) = {
            let mut heard = self.lock();
            let (last, progress, total) = *heard;
            // A --heartbeat too long to add is one that never comes.
            let due = last.checked_add(every).ok_or(last + FOREVER)?;
            if Instant::now() < due {
                return Err(due);
            }
            heard.0 = Instant::now();
            (progress, total)
        };
        let waited = self.since.elapsed().as_secs();
        let mut meta = MetaObject::default();
        meta.0.insert(HEARTBEAT_META.into(), true.into());
        let mut beat = ProgressNotificationParam::new(token.clone(), progress).with_message(
            format!("latchkey: still waiting on {upstream:?} ({waited} s)"),
        );
        beat.total = total;
        beat.meta = Some(meta.into());
        Ok(beat)
    }
}

/// `response`'s answer; meanwhile a heartbeat to `client` whenever the upstream has said
/// nothing for `every`.
pub async fn beat_until<T>(
    response: impl Future<Output = T>,
    every: Duration,
    heard: &Heard,
    client: &Peer<RoleServer>,
    token: &ProgressToken,
    upstream: &str,
) -> T {
    let mut response = std::pin::pin!(response);
    loop {
        match heard.beat(every, token, upstream) {
            Ok(beat) => {
                tokio::select! {
                    answer = &mut response => return answer,
                    _ = client.notify_progress(beat) => {}
                }
            }
            Err(due) => {
                tokio::select! {
                    answer = &mut response => return answer,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_is_due_only_after_silence_and_repeats_the_last_progress() {
        let heard = Heard::new();
        let token = ProgressToken(rmcp::model::NumberOrString::Number(7));
        let hour = Duration::from_secs(3600);
        assert!(heard.beat(hour, &token, "notes").is_err());

        let first = heard.beat(Duration::ZERO, &token, "notes").unwrap();
        assert_eq!((first.progress, first.total), (0.0, None));
        assert_eq!(first.progress_token, token);
        assert!(
            first
                .message
                .unwrap()
                .starts_with("latchkey: still waiting on \"notes\"")
        );
        assert_eq!(first.meta.unwrap().0.0[HEARTBEAT_META], true);

        let mut theirs = ProgressNotificationParam::new(token.clone(), 3.0).with_total(5.0);
        theirs.message = Some("step 3".into());
        heard.progress(&theirs);
        assert!(heard.beat(hour, &token, "notes").is_err(), "just heard");
        let next = heard.beat(Duration::ZERO, &token, "notes").unwrap();
        assert_eq!((next.progress, next.total), (3.0, Some(5.0)));
    }
}
