//! An in-process HTTP echo backend (HTTP/1.1 and h2c) for proxy tests.
//!
//! Every request is answered with 200, header `x-backend: <name>` and a JSON
//! echo: `{"method","path","headers":{..},"body","backend"}` (header names
//! lowercased and sorted; repeated headers joined with `,`). Special paths,
//! recognised at the end of the path so that they work behind any route
//! prefix (`/app/status/503` too):
//!
//! - `/status/NNN` answers with status NNN (the echo body too, except where
//!   the status forbids a body);
//! - `/delay/MS` waits MS milliseconds before answering;
//! - `/reset` closes the connection (HTTP/1.1) or resets the stream (h2)
//!   without answering;
//! - `/headers?k=v&k2=v2` adds response headers `k: v`, `k2: v2`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A running echo backend; it stops (listener and open connections) on drop.
#[derive(Debug)]
pub struct Backend {
    name: String,
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// The error a service returns for `/reset`: hyper then drops the connection
/// (HTTP/1.1) or resets the stream (h2) without a response.
#[derive(Debug)]
struct ResetRequested;

impl std::fmt::Display for ResetRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset requested by /reset")
    }
}

impl std::error::Error for ResetRequested {}

impl Backend {
    /// The address the backend listens on (127.0.0.1, an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it reports in `x-backend` and the JSON echo.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests received so far (counted when the request head arrives).
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// Starts an echo backend named `name` on 127.0.0.1:0.
///
/// Panics if the loopback interface cannot be bound (see [`try_start`]).
pub async fn start(name: &str) -> Backend {
    match try_start(name).await {
        Ok(b) => b,
        Err(e) => panic!("cannot start backend {name}: {e}"),
    }
}

/// Starts an echo backend named `name` on 127.0.0.1:0.
pub async fn try_start(name: &str) -> std::io::Result<Backend> {
    try_start_at(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts an echo backend named `name` on `addr` (any loopback address; port 0 picks one).
pub async fn try_start_at(name: &str, addr: SocketAddr) -> std::io::Result<Backend> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let task = tokio::spawn(accept_loop(listener, name.to_owned(), stats.clone()));
    Ok(Backend {
        name: name.to_owned(),
        addr,
        stats,
        task,
    })
}

async fn accept_loop(listener: TcpListener, name: String, stats: Arc<Stats>) {
    let mut connections = JoinSet::new();
    let name: Arc<str> = name.into();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let name = name.clone();
        let stats = stats.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                stats.requests.fetch_add(1, Ordering::SeqCst);
                handle(req, name.clone())
            });
            // A connection error (client gone, /reset) only ends this connection.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: http::Request<Incoming>,
    name: Arc<str>,
) -> Result<Response<Full<Bytes>>, ResetRequested> {
    let path = req.uri().path().to_owned();
    // The last two segments: `/status/503` → ("status", "503").
    let mut rev = path.rsplit('/');
    let (last, before_last) = (rev.next().unwrap_or(""), rev.next().unwrap_or(""));
    if last == "reset" {
        return Err(ResetRequested);
    }
    let mut status = StatusCode::OK;
    if before_last == "status" {
        if let Some(s) = last.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
            status = s;
        }
    }
    if before_last == "delay" {
        if let Ok(ms) = last.parse() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    let method = req.method().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or(path.clone());
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    // h2 carries the authority as a pseudo-header; show it as `host` like HTTP/1.1.
    if !headers.contains_key("host") {
        if let Some(authority) = req.uri().authority() {
            headers.insert("host".to_owned(), authority.to_string());
        }
    }
    let extra = if last == "headers" {
        req.uri().query().map(parse_query).unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(ResetRequested),
    };

    let echo = serde_json::json!({
        "method": method,
        "path": path_and_query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "backend": &*name,
    });
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        Bytes::new()
    } else {
        Bytes::from(echo.to_string())
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if !no_body {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert("x-backend", v);
    }
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.append(k, v);
        }
    }
    Ok(resp)
}

/// `a=1&b=x%20y` → `[("a","1"),("b","x y")]`.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c&d=%zz&e=%4"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz".into()),
                ("e".into(), "%4".into()),
            ]
        );
    }
}
