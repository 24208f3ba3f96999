//! Where latchkey listens: TCP addresses and Unix sockets, bound with the options they need.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use nix::unistd::{Gid, Group};

/// One `--listen` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/latchkey/mcp.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        let looks_like_host_port = s
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if looks_like_host_port {
            // A host name: bind the first address it resolves to (loopback for localhost).
            if let Some(addr) = s.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                return Ok(ListenAddr::Tcp(addr));
            }
            return Err(format!("cannot resolve the host in {s:?}"));
        }
        Err("expected HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080) or unix:/path/to/socket".into())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// The base URL a local client uses to reach this listener (`http://127.0.0.1:8080`).
    /// A wildcard bind address is reached through loopback.
    pub fn local_http_base(addr: SocketAddr) -> String {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".parse().unwrap(),
            ip if ip.is_unspecified() => "::1".parse().unwrap(),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }
}

/// Who is on the other end of a connection, for logs and spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix socket peer has no address; behind a proxy, `X-Forwarded-For` names the client.
    Unix,
}

/// Parses `--socket-mode`: octal permission bits such as `0660`.
pub fn parse_socket_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("expected octal permission bits such as 0660".into()),
    }
}

/// Parses `--socket-group`: a group name or a numeric gid.
pub fn parse_group(s: &str) -> Result<Gid, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(Gid::from_raw(gid));
    }
    match Group::from_name(s) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => Err("no such group".into()),
        Err(e) => Err(format!("cannot look the group up: {e}")),
    }
}

/// A TCP listener whose connections have TCP_NODELAY set: without it, each SSE response
/// waits ~40 ms for the peer's delayed ACK (rmcp writes an event in several small writes).
pub struct NoDelayListener(tokio::net::TcpListener);

impl NoDelayListener {
    /// The bound socket, for a listener that sets NODELAY itself (TLS).
    pub fn into_inner(self) -> tokio::net::TcpListener {
        self.0
    }
}

impl axum::serve::Listener for NoDelayListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Binds a TCP listener.
pub async fn bind_tcp(addr: SocketAddr) -> anyhow::Result<NoDelayListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map(NoDelayListener)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A Unix socket file latchkey made; removed when this is dropped, if it is still ours.
pub struct SocketFile {
    pub path: PathBuf,
    inode: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only remove the file we made: a newer latchkey may have replaced it.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix socket at `path` with `mode` and, optionally, group `gid`.
/// A stale socket file (nobody accepts on it) is replaced; a live one is an error.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    gid: Option<Gid>,
) -> anyhow::Result<(tokio::net::UnixListener, SocketFile)> {
    let shown = format!("unix:{}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        anyhow::bail!(
            "cannot listen on {shown}: directory {} does not exist",
            dir.display()
        );
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => anyhow::bail!(
                    "cannot listen on {shown}: another process is listening on it (stop it first)"
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|e| {
                        anyhow::anyhow!("cannot remove the stale socket {shown}: {e}")
                    })?;
                    tracing::info!(socket = %path.display(), "removed a stale socket file");
                }
                Err(e) => anyhow::bail!("cannot listen on {shown}: {e}"),
            }
        }
        Ok(_) => anyhow::bail!(
            "cannot listen on {shown}: the path exists and is not a socket (refusing to replace it)"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot listen on {shown}: {e}"),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {shown}"))?;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("cannot listen on {shown}"))?;
    // From here on, dropping `file` removes the socket if a later step fails.
    let file = SocketFile {
        path: path.to_owned(),
        inode: (meta.dev(), meta.ino()),
    };
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid.as_raw())).map_err(|e| {
            anyhow::anyhow!("cannot give {shown} to group {gid}: {e} (is latchkey in that group?)")
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {shown}"))?;
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_unix_and_names() {
        assert_eq!(
            "127.0.0.1:8080".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            "[::1]:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert!(matches!(
            "localhost:9000".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp(a) if a.port() == 9000 && a.ip().is_loopback()
        ));
        for bad in [
            "",
            "8080",
            "unix:",
            "127.0.0.1",
            "127.0.0.1:99999",
            "http://x:1/",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("600"), Ok(0o600));
        assert!(parse_socket_mode("0999").is_err());
        assert!(parse_socket_mode("7777").is_err());
    }

    #[tokio::test]
    async fn accepted_tcp_connections_have_nodelay() {
        let mut listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, peer) = axum::serve::Listener::accept(&mut listener).await;
        assert_eq!(peer, client.local_addr().unwrap());
        // A fresh socket has Nagle on; the listener must have turned it off.
        assert!(!client.nodelay().unwrap());
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn wildcard_binds_are_reached_through_loopback() {
        assert_eq!(
            ListenAddr::local_http_base("0.0.0.0:80".parse().unwrap()),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            ListenAddr::local_http_base("[::]:80".parse().unwrap()),
            "http://[::1]:80"
        );
    }
}
