//! One finished MCP operation as the console, `latchkey watch` and the history have it:
//! names (cut to [`MAX_NAME`]) and numbers, never a header.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::telemetry::observe::Finished;

/// The longest name (method, tool, prompt, client) a call keeps: a client may send any.
pub const MAX_NAME: usize = 128;

/// How an operation ended (also `latchkey watch --outcome`'s values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A result with `isError`: the tool ran and said it failed.
    ToolError,
    /// A JSON-RPC error (its code is the call's `error`).
    Error,
    /// Never answered: the client went away or cancelled it.
    Cancelled,
}

impl Outcome {
    /// The word the feed, the history and the page's filter use (serde's name for it).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// An [`Outcome::as_str`] word read back; anything else is taken as cancelled.
    pub fn from_word(word: &str) -> Self {
        [Outcome::Ok, Outcome::ToolError, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == word)
            .unwrap_or(Outcome::Cancelled)
    }
}

/// One finished operation, as shown (and as `latchkey watch` reads it back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Call {
    /// Counts up, on from the history's last id: a page asks for what came after the last it
    /// has.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Shared with the operation's record, not copied (a call is made on every message).
    pub method: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Arc<str>>,
    pub outcome: Outcome,
    /// The JSON-RPC error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// With `--trace-tool-io`: a tool call's arguments and result as JSON, redacted as on
    /// spans and cut to 4 KiB. Shown live, never written to the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl Call {
    /// How it ended, in words: `ok`, `tool error`, `error -32602`, `cancelled`.
    pub fn outcome_text(&self) -> String {
        match (self.outcome, &self.error) {
            (Outcome::Error, Some(code)) => format!("error {code}"),
            (outcome, _) => outcome.as_str().replace('_', " "),
        }
    }

    pub(super) fn of(id: u64, operation: &Finished<'_>) -> Self {
        let outcome = match (operation.dropped, operation.error_type) {
            (true, _) => Outcome::Cancelled,
            (false, None) => Outcome::Ok,
            (false, Some("tool_error")) => Outcome::ToolError,
            (false, Some(_)) => Outcome::Error,
        };
        Call {
            id,
            at_ms: super::bounded::now_ms(),
            method: match operation.method {
                Cow::Owned(custom) => Cow::Owned(cut(custom)),
                known => known.clone(),
            },
            tool: operation.tool.map(name),
            prompt: operation.prompt.map(name),
            client: operation.client.map(name),
            outcome,
            error: (outcome == Outcome::Error)
                .then(|| operation.error_type.map(str::to_owned))
                .flatten(),
            // In whole microseconds (as the history keeps it), which the feeds write fast.
            // (Through u64: a u128 to f64 is a call of the compiler's runtime.)
            duration_ms: u64::try_from(operation.duration.as_micros()).unwrap_or(u64::MAX) as f64
                / 1000.0,
            arguments_bytes: operation.arguments_bytes,
            answer_bytes: operation.answer_bytes,
            trace_id: operation.trace_id.map(|t| t.to_string()),
            arguments: operation.arguments.map(str::to_owned),
            result: operation.result.map(str::to_owned),
        }
    }
}

/// A [`Call`] as the feeds send it: the bytes `serde_json` writes for it (its `Serialize` is
/// what `latchkey watch` reads back), written by hand. Every call goes to every reader, and
/// through `serde_json` one cost a reader 2,500 instructions (it writes each key through its
/// escaper too), a third of what the console with a reader cost a request (7,600,
/// bench/instructions, profiled); written so, 960; with the outcome written with its key and
/// a known method not looked through, 830 (each measured alone under callgrind).
impl Call {
    /// Appends the call's JSON to `out`, which the caller makes room in (about 300 bytes a
    /// call without tool I/O).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut itoa = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(itoa.format(self.id).as_bytes());
        out.extend_from_slice(b",\"at_ms\":");
        out.extend_from_slice(itoa.format(self.at_ms).as_bytes());
        out.extend_from_slice(b",\"method\":");
        match &self.method {
            // One of rmcp's method names (`…Method::VALUE`): plain words and slashes.
            Cow::Borrowed(known) => {
                debug_assert!(crate::json_text::is_plain(known), "{known:?}");
                quoted(out, known);
            }
            Cow::Owned(custom) => json_string(out, custom),
        }
        optional_string(out, b",\"tool\":", self.tool.as_deref());
        optional_string(out, b",\"prompt\":", self.prompt.as_deref());
        optional_string(out, b",\"client\":", self.client.as_deref());
        out.extend_from_slice(match self.outcome {
            Outcome::Ok => b",\"outcome\":\"ok\"",
            Outcome::ToolError => b",\"outcome\":\"tool_error\"",
            Outcome::Error => b",\"outcome\":\"error\"",
            Outcome::Cancelled => b",\"outcome\":\"cancelled\"",
        });
        optional_string(out, b",\"error\":", self.error.as_deref());
        out.extend_from_slice(b",\"duration_ms\":");
        milliseconds(out, self.duration_ms);
        if let Some(bytes) = self.arguments_bytes {
            out.extend_from_slice(b",\"arguments_bytes\":");
            out.extend_from_slice(itoa.format(bytes).as_bytes());
        }
        if let Some(bytes) = self.answer_bytes {
            out.extend_from_slice(b",\"answer_bytes\":");
            out.extend_from_slice(itoa.format(bytes).as_bytes());
        }
        optional_string(out, b",\"trace_id\":", self.trace_id.as_deref());
        optional_string(out, b",\"arguments\":", self.arguments.as_deref());
        optional_string(out, b",\"result\":", self.result.as_deref());
        out.push(b'}');
    }
}

/// `ms` as `serde_json` writes it. A whole number of microseconds (every call's) is written
/// as its digits, which is serde's shortest form of it: through serde's float formatter a
/// call's duration cost a reader 180 instructions (bench/instructions, profiled).
fn milliseconds(out: &mut Vec<u8>, ms: f64) {
    let micros = (ms * 1000.0).round();
    // (-0.0 is in the range, but serde writes its sign.)
    let whole = ms.is_sign_positive() && (0.0..1e15).contains(&micros) && micros / 1000.0 == ms;
    if !whole {
        let _ = serde_json::to_writer(&mut *out, &ms);
        return;
    }
    let micros = micros as u64;
    let mut itoa = itoa::Buffer::new();
    out.extend_from_slice(itoa.format(micros / 1000).as_bytes());
    let fraction = micros % 1000;
    let digits = [
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    // serde's shortest form: no zeros at the end, but one digit always ("2.0", "1.05").
    let keep = match fraction {
        0 => 2,
        f if f % 100 == 0 => 2,
        f if f % 10 == 0 => 3,
        _ => 4,
    };
    out.extend_from_slice(&digits[..keep]);
}

fn optional_string(out: &mut Vec<u8>, key: &[u8], text: Option<&str>) {
    if let Some(text) = text {
        out.extend_from_slice(key);
        json_string(out, text);
    }
}

/// `text` as a JSON string: copied whole when nothing in it needs escaping (a name, nearly
/// always), else escaped by `serde_json`.
fn json_string(out: &mut Vec<u8>, text: &str) {
    if crate::json_text::is_plain(text) {
        quoted(out, text);
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// `text`, which has nothing to escape, in quotes.
fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// `text`, or when longer than [`MAX_NAME`] bytes a copy cut at a character and marked.
fn name(text: &Arc<str>) -> Arc<str> {
    if text.len() <= MAX_NAME {
        return text.clone();
    }
    cut(text).into()
}

/// `text` cut to [`MAX_NAME`] bytes at a character, marked when cut.
fn cut(text: &str) -> String {
    if text.len() <= MAX_NAME {
        return text.to_owned();
    }
    let mut end = MAX_NAME;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(text: Option<&str>, error: Option<&str>, duration_ms: f64) -> Call {
        Call {
            id: 42,
            at_ms: 1_764_633_600_123,
            method: text.map_or(Cow::Borrowed("tools/call"), |t| Cow::Owned(t.to_owned())),
            tool: text.map(Arc::from),
            prompt: text.map(Arc::from),
            client: text.map(Arc::from),
            outcome: if error.is_some() {
                Outcome::Error
            } else {
                Outcome::ToolError
            },
            error: error.map(str::to_owned),
            duration_ms,
            arguments_bytes: text.map(str::len),
            answer_bytes: error.map(str::len),
            trace_id: text.map(|_| "0af7651916cd43dd8448eb211c80319c".to_owned()),
            arguments: text.map(|t| format!("{{\"q\":{t:?}}}")),
            result: text.map(str::to_owned),
        }
    }

    #[test]
    fn the_hand_written_json_is_serde_jsons_byte_for_byte() {
        let hostile = [
            "hello",
            "<script>alert(\"x\")</script>",
            "back\\slash and \"quotes\"",
            "line\nbreak\ttab\u{1}\u{1f}\u{7f}",
            "bidi \u{202e}evil\u{2066} and ✓ and 🦀",
            "",
        ];
        let mut calls: Vec<Call> = hostile
            .iter()
            .map(|t| call(Some(t), Some("-32602"), 1.25))
            .collect();
        calls.push(call(None, None, 0.0));
        calls.push(call(None, None, 12_345.678_901));
        calls.push(call(None, None, f64::NAN));
        calls.push(call(Some("x"), None, 1e-7));
        // Whole microseconds, as every call's duration is.
        for micros in [
            0u64,
            1,
            10,
            100,
            999,
            1000,
            1050,
            1500,
            2000,
            123_456_789,
            10u64.pow(14),
        ] {
            calls.push(call(None, None, micros as f64 / 1000.0));
        }
        calls.push(call(None, None, -1.5));
        calls.push(call(None, None, -0.0));
        calls.push(call(None, None, f64::INFINITY));
        for call in &calls {
            let mut hand = Vec::new();
            call.write_json(&mut hand);
            let serde = serde_json::to_vec(call).unwrap();
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    #[test]
    fn an_outcome_is_one_word_everywhere() {
        for outcome in [
            Outcome::Ok,
            Outcome::ToolError,
            Outcome::Error,
            Outcome::Cancelled,
        ] {
            assert_eq!(Outcome::from_word(outcome.as_str()), outcome);
            let serde = serde_json::to_value(outcome).unwrap();
            assert_eq!(serde, outcome.as_str(), "the feed's word is the history's");
        }
        assert_eq!(Outcome::from_word("anything else"), Outcome::Cancelled);
    }
}
