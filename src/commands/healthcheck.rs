//! `latchkey healthcheck`: GET /healthz over TCP or a Unix socket, for a container
//! HEALTHCHECK in an image without a shell or curl.

use std::path::PathBuf;

use anyhow::Context as _;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cli::HealthcheckArgs;
use crate::listen::ListenAddr;

enum Target {
    Tcp { authority: String, path: String },
    Unix { socket: PathBuf, path: String },
}

impl Target {
    fn from_args(args: &HealthcheckArgs) -> anyhow::Result<Self> {
        let health_path = args.listen.base_path.join("/healthz");
        if let Some(url) = &args.url {
            let uri: http::Uri = url
                .parse()
                .map_err(|_| anyhow::anyhow!("--url {url:?} is not a URL"))?;
            if uri.scheme_str() != Some("http") {
                anyhow::bail!("--url must be an http:// URL (point it at a plain listener)");
            }
            let authority = uri
                .authority()
                .ok_or_else(|| anyhow::anyhow!("--url {url:?} has no host"))?;
            let authority = match authority.port() {
                Some(_) => authority.to_string(),
                None => format!("{authority}:80"),
            };
            return Ok(Target::Tcp {
                authority,
                path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            });
        }
        if let Some(socket) = &args.socket {
            return Ok(Target::Unix {
                socket: socket.clone(),
                path: health_path,
            });
        }
        match args.listen.listen.first() {
            Some(ListenAddr::Tcp(addr)) => Ok(Target::Tcp {
                authority: ListenAddr::local_http_base(*addr)
                    .trim_start_matches("http://")
                    .to_owned(),
                path: health_path,
            }),
            Some(ListenAddr::Unix(socket)) => Ok(Target::Unix {
                socket: socket.clone(),
                path: health_path,
            }),
            None => anyhow::bail!("nothing to check: give --url or --socket"),
        }
    }

    /// For messages: without the query, which is nobody's business in a health check log.
    fn describe(&self) -> String {
        match self {
            Target::Tcp { authority, path } => format!("http://{authority}{}", without_query(path)),
            Target::Unix { socket, path } => {
                format!("unix:{}{}", socket.display(), without_query(path))
            }
        }
    }
}

fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let target = Target::from_args(&args)?;
    let shown = target.describe();
    let status = tokio::time::timeout(args.timeout, check(&target))
        .await
        .map_err(|_| anyhow::anyhow!("{shown}: no answer within {:?}", args.timeout))?
        .with_context(|| shown.to_string())?;
    if status != http::StatusCode::OK {
        anyhow::bail!("{shown}: answered {status}");
    }
    println!("ok");
    Ok(())
}

async fn check(target: &Target) -> anyhow::Result<http::StatusCode> {
    match target {
        Target::Tcp { authority, path } => {
            let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
            get(stream, path).await
        }
        Target::Unix { socket, path } => {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            get(stream, path).await
        }
    }
}

async fn get<S>(stream: S, path: &str) -> anyhow::Result<http::StatusCode>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    Ok(response.status())
}
