//! Whether a file that holds secrets, or the directory that holds latchkey's state, is
//! safe to trust: nobody but its owner may change it, and its owner must be latchkey's
//! user (or root). A planted `api_key` of another user's, mode 0666, used to be used
//! silently: whoever could write it chose the key.
//!
//! A key file may belong to another user with a warning only: the bundle's key is a file of
//! the host's user, mounted into a container that runs as uid 10001.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why a path is not trusted. Names the path and the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "{what} {path} can be changed by other users (mode {mode:04o}): run `chmod go-w {path}`"
    )]
    Writable {
        what: &'static str,
        path: String,
        mode: u32,
    },
    #[error(
        "{what} {path} belongs to uid {owner}, not to latchkey's user (uid {me}) or root: run `chown {me} {path}`"
    )]
    Owner {
        what: &'static str,
        path: String,
        owner: u32,
        me: u32,
    },
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Checks a key or passphrase file (a regular file; `/dev/null` and the like are not
/// checked): refused when group or others may write it; a warning when they may read it or
/// another user owns it.
pub fn check_secret_file(path: &Path, what: &'static str) -> Result<(), Untrusted> {
    let Ok(meta) = std::fs::metadata(path) else {
        // Reading it will say why it cannot be read.
        return Ok(());
    };
    if !meta.is_file() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let shown = path.display().to_string();
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            what,
            path: shown,
            mode,
        });
    }
    if mode & 0o044 != 0 {
        tracing::warn!(
            "{what} {shown} can be read by other users (mode {mode:04o}): run `chmod 600 {shown}`"
        );
    }
    let owner = meta.uid();
    if owner != me() && owner != 0 {
        tracing::warn!(
            "{what} {shown} belongs to uid {owner}, not to latchkey's user (uid {}): that user can change it",
            me()
        );
    }
    Ok(())
}

/// Checks the state directory (keys, OAuth grants): refused when group or others may write
/// it, or another user (not root) owns it.
pub fn check_state_dir(path: &Path) -> Result<(), Untrusted> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let shown = path.display().to_string();
    let what = "state directory";
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            what,
            path: shown,
            mode,
        });
    }
    let owner = meta.uid();
    if owner != me() && owner != 0 {
        return Err(Untrusted::Owner {
            what,
            path: shown,
            owner,
            me: me(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn files_others_may_write_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api_key");
        fs::write(&file, "x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_file(&file, "key file").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        check_secret_file(&file, "key file").unwrap();
        for mode in [0o666, 0o620, 0o602] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            let err = check_secret_file(&file, "key file")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("chmod go-w") && err.contains("api_key"),
                "{err}"
            );
        }
        check_secret_file(Path::new("/dev/null"), "key file").unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_state_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state directory"), "{err}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        check_state_dir(dir.path()).unwrap();
    }
}
