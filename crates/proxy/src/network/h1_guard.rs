//! A read-side guard for HTTP/1.1 downstream connections. It follows message framing as
//! the bytes arrive and hands hyper's codec a request head only once the whole head is
//! in and valid, so that malformed requests get Envoy's answers rather than the codec's:
//! - a head that does not parse: 400 "Bad Request"; a head larger than
//!   `max_request_headers_kb` or with more than `max_headers_count` headers: 431
//!   "Request Header Fields Too Large" — written by the guard when the codec closes the
//!   connection (the codec sees a clean end of stream at the bad head's place, so the
//!   responses to earlier pipelined requests go out first, in order);
//! - both `Content-Length` and `Transfer-Encoding` (hyper resolves that per RFC 9112):
//!   the request is marked, and the router answers it 400.
//!
//! Bodies pass through as they arrive. The guard steps aside (plain pass-through) for
//! what it need not understand: HTTP/2 (the preface), upgrades, CONNECT.

use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the guard and the requests of its connection.
#[derive(Debug, Default)]
pub struct ConnShared {
    /// 1-based index of the first request with conflicting framing (0: none).
    pub first_conflict: AtomicU64,
    /// Requests served so far on the connection.
    pub served: AtomicU64,
    /// Requests whose response has not ended yet.
    pub active: std::sync::atomic::AtomicUsize,
    /// The connection speaks HTTP/2 (prior knowledge preface seen, or a stream served).
    pub http2: std::sync::atomic::AtomicBool,
}

impl ConnShared {
    /// Called once per request, in order: whether this request has conflicting framing.
    pub fn next_request_conflicts(&self) -> bool {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        self.first_conflict.load(Ordering::Relaxed) == n
    }
}

/// The limits a head must respect, and what a refusal says.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_request_headers_kb` in bytes.
    pub max_head_bytes: usize,
    /// `max_headers_count`.
    pub max_headers: usize,
    /// The `server` header of a refusal (`None`: no header, as PASS_THROUGH).
    pub server: Option<http::HeaderValue>,
}

#[derive(Debug)]
enum State {
    /// Collecting a request head (not yet given to the codec).
    Head(Vec<u8>),
    /// Passing a fixed-length body.
    Fixed(u64),
    /// In a chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Passing chunk data (plus its CRLF).
    ChunkData(u64),
    /// After the last chunk: trailer lines until an empty one.
    Trailers(Vec<u8>),
    /// Passing everything through.
    Off,
    /// A head was refused: nothing more reaches the codec. Holds the refused head and
    /// what followed it, in case the codec must judge them after all.
    Refused(Vec<u8>),
}

const MAX_LINE: usize = 4096;

pin_project! {
    /// Wraps the downstream stream of an HTTP/1.1 (or auto) connection.
    pub struct H1Guard<S> {
        #[pin]
        inner: S,
        state: State,
        heads: u64,
        shared: Arc<ConnShared>,
        limits: Limits,
        // Validated bytes not yet taken by the codec.
        ready: Vec<u8>,
        ready_from: usize,
        // A refusal to write before the connection shuts down, and how much is written.
        reply: Option<(Vec<u8>, usize)>,
        eof: bool,
    }
}

impl<S> H1Guard<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, shared: Arc<ConnShared>, limits: Limits) -> Self {
        H1Guard {
            inner,
            state: State::Head(Vec::new()),
            heads: 0,
            shared,
            limits,
            ready: Vec::new(),
            ready_from: 0,
            reply: None,
            eof: false,
        }
    }
}

/// What the state machine decided about some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Carry on.
    Pass,
    /// Refuse with this status.
    Refuse(http::StatusCode),
}

/// Feeds bytes to the framing state machine; what may reach the codec is appended to
/// `out`.
fn feed(
    state: &mut State,
    heads: &mut u64,
    shared: &ConnShared,
    limits: &Limits,
    mut data: &[u8],
    out: &mut Vec<u8>,
) -> Verdict {
    while !data.is_empty() {
        match state {
            State::Refused(_) => return Verdict::Pass,
            State::Off => {
                out.extend_from_slice(data);
                return Verdict::Pass;
            }
            State::Head(buf) => {
                if buf.is_empty() && *heads == 0 && data.starts_with(b"PRI ") {
                    shared.http2.store(true, Ordering::Relaxed);
                    *state = State::Off;
                    continue;
                }
                // Blank lines between requests go to the codec as they are.
                if buf.is_empty() {
                    let skip = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    out.extend_from_slice(&data[..skip]);
                    data = &data[skip..];
                    if data.is_empty() {
                        return Verdict::Pass;
                    }
                }
                let before = buf.len();
                buf.extend_from_slice(data);
                let Some(end) = find_head_end(buf, before.saturating_sub(3)) else {
                    if buf.len() > limits.max_head_bytes {
                        *state = State::Refused(std::mem::take(buf));
                        return Verdict::Refuse(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                    }
                    return Verdict::Pass;
                };
                let status = if end > limits.max_head_bytes {
                    Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                } else if let Framing::Refuse(status) =
                    head_framing(&buf[..end], limits.max_headers)
                {
                    Some(status)
                } else {
                    None
                };
                if let Some(status) = status {
                    // `buf` holds the refused head and everything after it in `data`.
                    *state = State::Refused(std::mem::take(buf));
                    return Verdict::Refuse(status);
                }
                data = &data[end - before..];
                let framing = head_framing(&buf[..end], limits.max_headers);
                *heads += 1;
                out.extend_from_slice(&buf[..end]);
                *state = match framing {
                    Framing::Conflict => {
                        let _ = shared.first_conflict.compare_exchange(
                            0,
                            *heads,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        State::Off
                    }
                    Framing::None | Framing::Length(0) => State::Head(Vec::new()),
                    Framing::Length(n) => State::Fixed(n),
                    Framing::Chunked => State::ChunkSize(Vec::new()),
                    Framing::StepAside | Framing::Refuse(_) => State::Off,
                };
            }
            State::Fixed(n) => {
                let take = (*n).min(data.len() as u64) as usize;
                out.extend_from_slice(&data[..take]);
                *n -= take as u64;
                data = &data[take..];
                if *n == 0 {
                    *state = State::Head(Vec::new());
                }
            }
            State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..i]);
                    out.extend_from_slice(&data[..=i]);
                    data = &data[i + 1..];
                    let text = String::from_utf8_lossy(line);
                    let hex = text.split(';').next().unwrap_or_default().trim();
                    // A bad chunk size is the codec's to refuse (mid-request: 400 by the router).
                    *state = match u64::from_str_radix(hex, 16) {
                        Ok(0) => State::Trailers(Vec::new()),
                        Ok(n) => State::ChunkData(n.saturating_add(2)),
                        Err(_) => State::Off,
                    };
                }
                None => {
                    line.extend_from_slice(data);
                    out.extend_from_slice(data);
                    if line.len() > MAX_LINE {
                        *state = State::Off;
                    }
                    return Verdict::Pass;
                }
            },
            State::ChunkData(n) => {
                let take = (*n).min(data.len() as u64) as usize;
                out.extend_from_slice(&data[..take]);
                *n -= take as u64;
                data = &data[take..];
                if *n == 0 {
                    *state = State::ChunkSize(Vec::new());
                }
            }
            State::Trailers(line) => match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..i]);
                    out.extend_from_slice(&data[..=i]);
                    data = &data[i + 1..];
                    let empty = line.iter().all(|b| *b == b'\r');
                    *state = if empty {
                        State::Head(Vec::new())
                    } else {
                        State::Trailers(Vec::new())
                    };
                }
                None => {
                    line.extend_from_slice(data);
                    out.extend_from_slice(data);
                    if line.len() > limits.max_head_bytes {
                        *state = State::Off;
                    }
                    return Verdict::Pass;
                }
            },
        }
    }
    Verdict::Pass
}

/// The end of a head: the first empty line, with CRLF or bare LF line ends (httparse,
/// and so the codec, accepts both).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Conflict,
    /// An upgrade, CONNECT, or framing the codec should judge: stop following.
    StepAside,
    Refuse(http::StatusCode),
}

fn head_framing(head: &[u8], max_headers: usize) -> Framing {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers.max(1)];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Framing::Refuse(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        // HTTP/1.0 and 0.9 oddities and the like are left to the codec.
        Err(httparse::Error::Version) => return Framing::StepAside,
        Err(_) | Ok(httparse::Status::Partial) => {
            return Framing::Refuse(http::StatusCode::BAD_REQUEST)
        }
    }
    if req.method == Some("CONNECT") {
        return Framing::StepAside;
    }
    let mut length = None;
    let mut te = false;
    let mut chunked = false;
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if length.is_none() {
                return Framing::Refuse(http::StatusCode::BAD_REQUEST);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            chunked = std::str::from_utf8(h.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|l| l.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            });
        }
    }
    match (te, length) {
        (true, Some(_)) => Framing::Conflict,
        // A real upgrade request: after a 101 the bytes are no longer HTTP/1.1.
        _ if upgrade && connection_upgrade => Framing::StepAside,
        (true, None) if chunked => Framing::Chunked,
        (true, None) => Framing::StepAside,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    }
}

/// Envoy's local reply for a refused head.
fn refusal(status: http::StatusCode, server: Option<&http::HeaderValue>) -> Vec<u8> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\ndate: {}\r\n",
        status.as_u16(),
        reason.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes();
    if let Some(s) = server {
        out.extend_from_slice(b"server: ");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(reason.as_bytes());
    out
}

impl<S: AsyncRead> AsyncRead for H1Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        loop {
            // Validated bytes first.
            if *this.ready_from < this.ready.len() {
                let n = (this.ready.len() - *this.ready_from).min(buf.remaining());
                buf.put_slice(&this.ready[*this.ready_from..*this.ready_from + n]);
                *this.ready_from += n;
                if *this.ready_from == this.ready.len() {
                    this.ready.clear();
                    *this.ready_from = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if *this.eof || matches!(this.state, State::Refused(_)) {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Off) {
                return this.inner.poll_read(cx, buf);
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match this.inner.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = rb.filled();
            if data.is_empty() {
                // End of stream: a partial head goes to the codec, which judges it.
                *this.eof = true;
                if let State::Head(partial) = this.state {
                    this.ready.append(partial);
                }
                continue;
            }
            let verdict = feed(
                this.state,
                this.heads,
                this.shared,
                this.limits,
                data,
                this.ready,
            );
            if let Verdict::Refuse(status) = verdict {
                // Refuse here only when nothing is in flight: every earlier request served
                // and answered. Otherwise (pipelining) the codec judges the bad head after
                // the earlier requests, in order — with its own, body-less reply.
                let idle = this.ready.is_empty()
                    && this.shared.served.load(Ordering::Relaxed) == *this.heads
                    && this.shared.active.load(Ordering::Relaxed) == 0;
                if idle {
                    *this.reply = Some((refusal(status, this.limits.server.as_ref()), 0));
                } else if let State::Refused(bytes) = std::mem::replace(this.state, State::Off) {
                    this.ready.extend_from_slice(&bytes);
                }
            }
        }
    }
}

impl<S: AsyncWrite> AsyncWrite for H1Guard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        // A refusal goes out after whatever the codec wrote for earlier requests.
        if let Some((reply, written)) = this.reply.as_mut() {
            while *written < reply.len() {
                match this.inner.as_mut().poll_write(cx, &reply[*written..]) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            *this.reply = None;
        }
        this.inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            server: None,
        }
    }

    /// (first conflicting request, verdicts, bytes given to the codec)
    fn run(chunks: &[&[u8]]) -> (u64, Vec<Verdict>, Vec<u8>) {
        let c = ConnShared::default();
        let mut state = State::Head(Vec::new());
        let mut heads = 0;
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        for ch in chunks {
            verdicts.push(feed(&mut state, &mut heads, &c, &limits(), ch, &mut out));
        }
        (c.first_conflict.load(Ordering::Relaxed), verdicts, out)
    }

    #[test]
    fn flags_the_conflicting_request_after_framed_ones() {
        let first = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let second = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n";
        let third =
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = [&first[..], &second[..], &third[..]].concat();
        let (conflict, _, out) = run(&[&all]);
        assert_eq!(conflict, 3);
        assert_eq!(out, all, "every byte reaches the codec, in order");
        // Byte by byte gives the same answer.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        let (conflict, _, out) = run(&bytes);
        assert_eq!(conflict, 3);
        assert_eq!(out, all);
    }

    #[test]
    fn clean_requests_pass_untouched() {
        let two = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (conflict, verdicts, out) = run(&[two]);
        assert_eq!((conflict, out.as_slice()), (0, &two[..]));
        assert_eq!(verdicts, vec![Verdict::Pass]);
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(run(&[h2]).2, h2);
    }

    #[test]
    fn bare_lf_heads_end_at_the_first_empty_line() {
        let lf = b"GET /a HTTP/1.1\nHost: x\n\n";
        let crlf = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = [&lf[..], &crlf[..]].concat();
        let (conflict, verdicts, out) = run(&[&all]);
        assert_eq!(verdicts, vec![Verdict::Pass]);
        assert_eq!(conflict, 2, "the second request's conflict is seen");
        assert_eq!(out, all);
    }

    #[test]
    fn a_head_is_held_back_until_complete() {
        let (_, _, out) = run(&[b"GET / HTTP/1.1\r\nHo"]);
        assert!(out.is_empty());
    }

    #[test]
    fn bad_heads_are_refused_after_the_good_ones() {
        let good = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
        let bad = b"GET /bad HTTP/1.1\r\nBad Header: x\r\n\r\n";
        let all = [&good[..], &bad[..]].concat();
        let (_, verdicts, out) = run(&[&all]);
        assert_eq!(
            verdicts,
            vec![Verdict::Refuse(http::StatusCode::BAD_REQUEST)]
        );
        assert_eq!(out, good, "only the good request reaches the codec");
        let many: String = (0..20).map(|i| format!("x-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let (_, verdicts, _) = run(&[head.as_bytes()]);
        assert_eq!(
            verdicts,
            vec![Verdict::Refuse(
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            )]
        );
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(2000));
        let (_, verdicts, out) = run(&[big.as_bytes()]);
        assert_eq!(
            verdicts,
            vec![Verdict::Refuse(
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            )]
        );
        assert!(out.is_empty());
    }
}
