//! Benchmark load generator: `tools/call hello` over N keep-alive HTTP/1.1 connections, on TCP
//! or a Unix socket (which wrk cannot reach), so every row of `bench/run` is driven the same way.
//!
//! `cargo run --release --example loadgen -- --url http://127.0.0.1:8080/mcp -c 16 -d 5 \
//!      [--unix PATH] [--header 'Authorization: Bearer KEY'] [--session]`
//! Prints one JSON line: requests per second, p50 and p99 in µs, failed requests.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// A request unanswered this long counts as failed (wrk's default timeout).
const TIMEOUT: Duration = Duration::from_secs(2);
/// `tools/call hello` with JSON-RPC id `id`: every request in flight has its own, as the
/// protocol requires within a session (rmcp routes a session's answers by id).
fn call(id: u64) -> Bytes {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"hello","arguments":{{"name":"bench"}}}}}}"#
    )
    .into()
}
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"loadgen","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

#[derive(Clone)]
struct Options {
    url: hyper::Uri,
    unix: Option<String>,
    headers: Vec<(String, String)>,
    connections: usize,
    duration: Duration,
    session: bool,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        url: "http://127.0.0.1:8080/mcp".parse().unwrap(),
        unix: None,
        headers: Vec::new(),
        connections: 16,
        duration: Duration::from_secs(5),
        session: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--url" => options.url = value().parse().expect("--url is a URL"),
            "--unix" => options.unix = Some(value()),
            "--header" => {
                let header = value();
                let (name, v) = header.split_once(':').expect("--header 'Name: value'");
                options.headers.push((name.trim().into(), v.trim().into()));
            }
            "-c" => options.connections = value().parse().expect("-c N"),
            "-d" => options.duration = Duration::from_secs_f64(value().parse().expect("-d SECS")),
            "--session" => options.session = true,
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// A new keep-alive connection; a server that cannot be reached ends the run with one line.
async fn connect(options: &Options) -> SendRequest<Full<Bytes>> {
    macro_rules! handshake {
        ($stream:expr) => {{
            let (sender, connection) = http1::handshake(TokioIo::new($stream)).await.unwrap();
            tokio::spawn(connection);
            sender
        }};
    }
    let unreachable = |e: std::io::Error| -> ! {
        let at = options
            .unix
            .clone()
            .unwrap_or_else(|| options.url.to_string());
        eprintln!("loadgen: cannot connect to {at}: {e}");
        std::process::exit(1)
    };
    match &options.unix {
        Some(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => handshake!(stream),
            Err(e) => unreachable(e),
        },
        None => {
            let authority = options.url.authority().unwrap().as_str();
            match tokio::net::TcpStream::connect(authority).await {
                Ok(stream) => {
                    stream.set_nodelay(true).unwrap();
                    handshake!(stream)
                }
                Err(e) => unreachable(e),
            }
        }
    }
}

/// One POST; the status, the session id it carried and whether the body holds `needle`.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    options: &Options,
    session: Option<&str>,
    body: Bytes,
) -> (u16, Option<String>, Bytes) {
    // Origin-form (`/mcp?…`), as browsers and clients send it: not every server takes
    // the absolute form.
    let target = options.url.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::post(target)
        .header("host", options.url.authority().unwrap().as_str())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    for (name, value) in &options.headers {
        request = request.header(name, value);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    sender.ready().await.unwrap();
    let response = sender
        .send_request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, session, body)
}

#[tokio::main]
async fn main() {
    let options = options();
    let session = if options.session {
        let mut sender = connect(&options).await;
        let (status, session, _) = post(&mut sender, &options, None, INITIALIZE.into()).await;
        assert_eq!(status, 200, "initialize");
        post(
            &mut sender,
            &options,
            session.as_deref(),
            INITIALIZED.into(),
        )
        .await;
        session
    } else {
        None
    };
    let deadline = Instant::now() + options.duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..options.connections as u64 {
        let options = options.clone();
        let session = session.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(&options).await;
            let (mut latencies, mut failed) = (Vec::new(), 0u64);
            let mut id = worker << 32;
            while Instant::now() < deadline {
                id += 1;
                let start = Instant::now();
                let answer = tokio::time::timeout(
                    TIMEOUT,
                    post(&mut sender, &options, session.as_deref(), call(id)),
                )
                .await;
                let Ok((status, _, body)) = answer else {
                    // As wrk does: a request unanswered in time fails, on a new connection.
                    failed += 1;
                    sender = connect(&options).await;
                    continue;
                };
                latencies.push(start.elapsed().as_micros() as u64);
                let ok = status == 200 && body.windows(11).any(|w| w == b"Hello bench");
                if !ok {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for worker in workers {
        let (l, f) = worker.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    if latencies.is_empty() {
        latencies.push(0);
    }
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        r#"{{"rps":{:.1},"p50_us":{},"p99_us":{},"requests":{},"failed":{}}}"#,
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        latencies.len(),
        failed
    );
}
