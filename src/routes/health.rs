//! `/healthz`: 200 `ok`, without a key, telling nothing else.

pub async fn healthz() -> &'static str {
    "ok"
}
