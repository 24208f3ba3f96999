//! What the doctor found: one [`Check`] a line — what was checked, what was seen, and for a
//! failure the fix in one sentence — printed for a person or as one JSON document.

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Works today, but will not for long or not everywhere (a certificate about to expire).
    Warn,
    /// The chosen client will not connect (or not work) because of it.
    Fail,
    /// Not run: an earlier check failed, or it does not apply.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }

    /// The word's colour on a terminal (SGR).
    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31",
            Status::Skip => "2",
        }
    }
}

/// One check. Nothing in it is a secret: what was seen is written from the redacted URL,
/// statuses, headers' names and documents' fields.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// A short stable name (`dns`, `tls.chain`, `mcp.initialize`, …), for scripts.
    pub id: &'static str,
    pub status: Status,
    /// What was checked and what was seen, in one line.
    pub seen: String,
    /// For a failure or warning: what to do, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// How long it took, where that is the point (discovery, `initialize`, `tools/list`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}

impl Check {
    pub fn pass(id: &'static str, seen: impl Into<String>) -> Self {
        Check::new(id, Status::Pass, seen, None)
    }

    pub fn fail(id: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Self {
        Check::new(id, Status::Fail, seen, Some(fix.into()))
    }

    pub fn warn(id: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Self {
        Check::new(id, Status::Warn, seen, Some(fix.into()))
    }

    pub fn skip(id: &'static str, why: impl Into<String>) -> Self {
        Check::new(id, Status::Skip, why, None)
    }

    fn new(id: &'static str, status: Status, seen: impl Into<String>, fix: Option<String>) -> Self {
        Check {
            id,
            status,
            seen: seen.into(),
            fix,
            ms: None,
        }
    }

    /// The check, with the time it measured.
    pub fn took(mut self, ms: u64) -> Self {
        self.ms = Some(ms);
        self
    }
}

/// Milliseconds since `since`, as the checks report them.
pub fn ms_since(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Every check made of one URL for one client.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The URL as given, its key replaced by `<key>`.
    pub url: String,
    pub client: &'static str,
    pub checks: Vec<Check>,
    /// Whether every check the client needs passed (warnings pass).
    pub ok: bool,
}

impl Report {
    pub fn new(url: String, client: &'static str, checks: Vec<Check>) -> Self {
        let mut report = Report {
            url,
            client,
            checks,
            ok: false,
        };
        report.ok = report.failed() == 0;
        report
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    /// One line a check and a last line that sums up; `colour` on a terminal.
    pub fn text(&self, colour: bool) -> String {
        let mut out = format!("latchkey doctor {} (as {})\n", self.url, self.client);
        for check in &self.checks {
            let word = check.status.word();
            let word = if colour {
                format!("\x1b[{}m{word:>4}\x1b[0m", check.status.colour())
            } else {
                format!("{word:>4}")
            };
            let took = check.ms.map(|ms| format!(" ({ms} ms)")).unwrap_or_default();
            out.push_str(&format!("{word}  {:<16} {}{took}\n", check.id, check.seen));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("      {:<16} fix: {fix}\n", ""));
            }
        }
        out.push_str(&match self.failed() {
            0 => format!("{} can connect to this URL.\n", self.client),
            n => format!(
                "{n} check(s) failed: {} will not connect as it is.\n",
                self.client
            ),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fails_the_report_and_a_warning_does_not() {
        let warned = Report::new(
            "https://x/mcp".into(),
            "claude",
            vec![
                Check::pass("dns", "1 address"),
                Check::warn("tls.expiry", "9 days", "renew"),
            ],
        );
        assert!(warned.ok);
        let failed = Report::new(
            "https://x/mcp".into(),
            "claude",
            vec![
                Check::fail("port", "8443", "use 443"),
                Check::skip("tls", "no connection"),
            ],
        );
        assert!(!failed.ok);
        let text = failed.text(false);
        assert!(text.contains("FAIL  port"), "{text}");
        assert!(text.contains("fix: use 443"), "{text}");
        assert!(text.ends_with("1 check(s) failed: claude will not connect as it is.\n"));
        let json: serde_json::Value = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["checks"][0]["status"], "fail");
        assert_eq!(json["ok"], false);
    }
}
