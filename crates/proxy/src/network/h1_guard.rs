//! A read-side guard for HTTP/1.1 downstream connections: it follows message framing
//! as the bytes arrive and marks a request that carries both `Content-Length` and
//! `Transfer-Encoding`. hyper's codec resolves that conflict per RFC 9112 (the length
//! is dropped, the connection closed afterwards); Envoy refuses such a request with
//! 400, and so does ferry: the router answers the marked request 400 and closes.
//!
//! The guard only observes; it never changes the bytes hyper reads. It stops following
//! the stream on anything it does not need to understand (HTTP/2 preface, an upgrade,
//! an oversized head), leaving those to the codec.

use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the guard and the requests of its connection.
#[derive(Debug, Default)]
pub struct Conflicts {
    /// 1-based index of the first request with conflicting framing (0: none).
    pub first_conflict: AtomicU64,
    /// Requests served so far on the connection.
    pub served: AtomicU64,
}

impl Conflicts {
    /// Called once per request, in order: whether this request has conflicting framing.
    pub fn next_request_conflicts(&self) -> bool {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        self.first_conflict.load(Ordering::Relaxed) == n
    }
}

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping a fixed-length body.
    Fixed(u64),
    /// In a chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data (plus its CRLF).
    ChunkData(u64),
    /// After the last chunk: reading trailer lines until an empty one.
    Trailers(Vec<u8>),
    /// No longer following the stream.
    Off,
}

const MAX_HEAD: usize = 256 * 1024;

pin_project! {
    /// Wraps the downstream stream of an HTTP/1.1 (or auto) connection.
    pub struct H1Guard<S> {
        #[pin]
        inner: S,
        state: State,
        heads: u64,
        conflicts: Arc<Conflicts>,
    }
}

impl<S> H1Guard<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, conflicts: Arc<Conflicts>) -> Self {
        H1Guard {
            inner,
            state: State::Head(Vec::new()),
            heads: 0,
            conflicts,
        }
    }
}

/// Feeds bytes to the framing state machine.
fn observe(state: &mut State, heads: &mut u64, conflicts: &Conflicts, mut data: &[u8]) {
    while !data.is_empty() {
        match state {
            State::Off => return,
            State::Head(buf) => {
                if buf.is_empty() && *heads == 0 && data.starts_with(b"PRI ") {
                    *state = State::Off;
                    return;
                }
                // Skip blank lines between requests.
                if buf.is_empty() {
                    let skip = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    data = &data[skip..];
                    if data.is_empty() {
                        return;
                    }
                }
                let before = buf.len();
                buf.extend_from_slice(data);
                let Some(end) = find_head_end(buf, before.saturating_sub(3)) else {
                    if buf.len() > MAX_HEAD {
                        *state = State::Off;
                    }
                    return;
                };
                let consumed = end - before;
                let next = head_framing(&buf[..end]);
                *heads += 1;
                data = &data[consumed..];
                *state = match next {
                    Framing::Conflict => {
                        let _ = conflicts.first_conflict.compare_exchange(
                            0,
                            *heads,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        State::Off
                    }
                    Framing::None => State::Head(Vec::new()),
                    Framing::Length(0) => State::Head(Vec::new()),
                    Framing::Length(n) => State::Fixed(n),
                    Framing::Chunked => State::ChunkSize(Vec::new()),
                    Framing::Unknown => State::Off,
                };
            }
            State::Fixed(n) => {
                let take = (*n).min(data.len() as u64);
                *n -= take;
                data = &data[take as usize..];
                if *n == 0 {
                    *state = State::Head(Vec::new());
                }
            }
            State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let text = String::from_utf8_lossy(line);
                    let hex = text.split(';').next().unwrap_or_default().trim();
                    *state = match u64::from_str_radix(hex, 16) {
                        Ok(0) => State::Trailers(Vec::new()),
                        Ok(n) => State::ChunkData(n.saturating_add(2)),
                        Err(_) => State::Off,
                    };
                }
                None => {
                    line.extend_from_slice(data);
                    if line.len() > 1024 {
                        *state = State::Off;
                    }
                    return;
                }
            },
            State::ChunkData(n) => {
                let take = (*n).min(data.len() as u64);
                *n -= take;
                data = &data[take as usize..];
                if *n == 0 {
                    *state = State::ChunkSize(Vec::new());
                }
            }
            State::Trailers(line) => match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..i]);
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
                    if line.len() > MAX_HEAD {
                        *state = State::Off;
                    }
                    return;
                }
            },
        }
    }
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Conflict,
    /// An upgrade, CONNECT or something unparsable: stop following.
    Unknown,
}

fn head_framing(head: &[u8]) -> Framing {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Framing::Unknown,
    }
    if req.method == Some("CONNECT") {
        return Framing::Unknown;
    }
    let mut length = None;
    let mut te = false;
    let mut chunked = false;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if length.is_none() {
                return Framing::Unknown;
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
        }
    }
    match (te, length) {
        (true, Some(_)) => Framing::Conflict,
        _ if upgrade => Framing::Unknown,
        (true, None) if chunked => Framing::Chunked,
        (true, None) => Framing::Unknown,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    }
}

impl<S: AsyncRead> AsyncRead for H1Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            if !matches!(this.state, State::Off) {
                observe(
                    this.state,
                    this.heads,
                    this.conflicts,
                    &buf.filled()[before..],
                );
            }
        }
        res
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
        self.project().inner.poll_shutdown(cx)
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

    fn feed(chunks: &[&[u8]]) -> u64 {
        let c = Conflicts::default();
        let mut state = State::Head(Vec::new());
        let mut heads = 0;
        for ch in chunks {
            observe(&mut state, &mut heads, &c, ch);
        }
        c.first_conflict.load(Ordering::Relaxed)
    }

    #[test]
    fn flags_the_conflicting_request_after_framed_ones() {
        let first = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let second = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n";
        let third = b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = [&first[..], &second[..], &third[..]].concat();
        assert_eq!(feed(&[&all]), 3);
        // Byte by byte gives the same answer.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(feed(&bytes), 3);
    }

    #[test]
    fn clean_requests_are_not_flagged() {
        assert_eq!(
            feed(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
            0
        );
        assert_eq!(feed(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), 0);
    }
}
