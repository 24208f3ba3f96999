//! `--address-file`: where latchkey listens, told to whoever started it. With port 0 the
//! kernel picks the ports; a supervisor, a script or a test reads them here instead of from
//! log lines. One JSON object, written whole (a temporary file renamed into place) once every
//! listener is bound, and removed at shutdown:
//! `{"http":["http://127.0.0.1:41234"],"https":[],"redirect":[],"unix":["unix:/run/x.sock"]}`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

/// Every bound listener, as the URL that reaches it.
#[derive(Debug, Default, Serialize)]
pub struct Addresses {
    pub http: Vec<String>,
    pub https: Vec<String>,
    /// Plain HTTP that redirects to HTTPS (`--redirect-listen`).
    pub redirect: Vec<String>,
    pub unix: Vec<String>,
}

/// The written file; [`AddressFile::remove`] takes it away again.
#[derive(Debug)]
pub struct AddressFile(PathBuf);

impl AddressFile {
    /// Writes `addresses` to `path` in one step: a reader never sees a partial file.
    pub fn write(path: &Path, addresses: &Addresses) -> anyhow::Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let mut json = serde_json::to_vec(addresses).expect("addresses serialize");
        json.push(b'\n');
        std::fs::write(&partial, json)
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
        Ok(Self(path.to_owned()))
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_one_json_object_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addresses.json");
        let addresses = Addresses {
            http: vec!["http://127.0.0.1:1".into()],
            unix: vec!["unix:/tmp/s".into()],
            ..Addresses::default()
        };
        let file = AddressFile::write(&path, &addresses).unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(read["http"][0], "http://127.0.0.1:1");
        assert_eq!(read["unix"][0], "unix:/tmp/s");
        assert_eq!(read["https"], serde_json::json!([]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        file.remove();
        assert!(!path.exists());
        let missing = dir.path().join("no/such/dir/a.json");
        let error = AddressFile::write(&missing, &addresses).unwrap_err();
        assert!(format!("{error:#}").contains("--address-file"), "{error:#}");
    }
}
