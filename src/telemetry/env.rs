//! Reading the `OTEL_*` variables: unset and blank are the same.

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
