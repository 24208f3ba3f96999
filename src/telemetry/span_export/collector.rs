//! Where spans are posted: the collector's endpoint, headers and timeout from the
//! `OTEL_EXPORTER_OTLP_*` variables, and the POST tried again on a collector's refusal.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::redact;
use crate::telemetry::env;

/// Where and how spans are posted.
pub(super) struct Collector {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl fmt::Debug for Collector {
    /// Without the headers: they may hold a backend's token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("endpoint", &redact::url_for_display(self.endpoint.as_str()))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_<name>`, else `OTEL_EXPORTER_OTLP_<name>`, with the variable's
/// name for messages.
fn setting(name: &str) -> Option<(String, String)> {
    [
        format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
        format!("OTEL_EXPORTER_OTLP_{name}"),
    ]
    .into_iter()
    .find_map(|var| env::var(&var).map(|value| (var, value)))
}

/// `key=value,key=value`, values percent-decoded (the OTLP exporter specification). The
/// general variable's headers first, the traces variable's over them.
fn headers() -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let Some(list) = env::var(var) else { continue };
        for (n, pair) in list.split(',').enumerate() {
            if pair.trim().is_empty() {
                continue;
            }
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("{var}: entry {} has no '='", n + 1))?;
            let name = HeaderName::try_from(name.trim())
                .with_context(|| format!("{var}: entry {} is not a header name", n + 1))?;
            let value = percent_encoding::percent_decode_str(value.trim()).collect::<Vec<u8>>();
            let mut value = HeaderValue::from_bytes(&value).map_err(|_| {
                anyhow::anyhow!("{var}: the value of {name} is not a valid header value")
            })?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
    }
    Ok(map)
}

impl Collector {
    /// From the `OTEL_EXPORTER_OTLP_*` variables.
    pub(super) fn from_env() -> anyhow::Result<Self> {
        let endpoint = match env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => {
                let base = env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .unwrap_or_else(|| "http://localhost:4318".to_owned());
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        let endpoint = reqwest::Url::parse(endpoint.trim()).with_context(|| {
            format!(
                "{:?} is not a URL for OTLP trace export",
                redact::url_for_display(&endpoint)
            )
        })?;
        let timeout = match setting("TIMEOUT") {
            Some((var, ms)) => Duration::from_millis(
                ms.trim()
                    .parse()
                    .with_context(|| format!("{var}={ms:?} is not a number of milliseconds"))?,
            ),
            None => Duration::from_secs(10),
        };
        if let Some((var, compression)) = setting("COMPRESSION")
            && compression.trim() != "none"
        {
            anyhow::bail!("{var}={compression:?} is not supported: use none");
        }
        let headers = headers()?;
        // reqwest's blocking client runs its own runtime, which may not be made (or dropped)
        // on a thread that is already in one.
        let client = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP client for OTLP export could not be built"))?
        .context("cannot build the HTTP client for OTLP export")?;
        Ok(Collector {
            client,
            endpoint,
            headers,
            timeout,
        })
    }

    pub(super) fn post(&self, body: bytes::Bytes) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        for attempt in 0.. {
            let sent = self
                .client
                .post(self.endpoint.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/x-protobuf")
                .body(body.clone())
                .send();
            let problem = match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let again = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    (format!("the collector answered {status}"), again)
                }
                Err(e) => (e.without_url().to_string(), true),
            };
            let (message, again) = problem;
            if !again || attempt == 3 || Instant::now() + pause >= deadline {
                anyhow::bail!(
                    "exporting spans to {}: {message}",
                    redact::url_for_display(self.endpoint.as_str())
                );
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the loop returns")
    }
}
