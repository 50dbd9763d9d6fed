//! A read-side guard for HTTP/1.1 downstream connections. It follows message framing as
//! the bytes arrive and hands hyper's codec a request head only once the whole head is
//! in and valid, so that malformed requests get Envoy's answers rather than the codec's:
//! - a head that does not parse, or with both `Content-Length` and `Transfer-Encoding`
//!   (which hyper would resolve per RFC 9112; Envoy refuses it): 400 "Bad Request";
//! - a head larger than `max_request_headers_kb` or with more than `max_headers_count`
//!   headers: 431 "Request Header Fields Too Large".
//!
//! A refusal waits until every request before the bad head has been answered (the
//! guard's reads stay pending, woken when a stream ends); then the codec sees a clean
//! end of stream at the bad head's place and closes, and the guard writes the refusal
//! after everything the codec wrote. Each refusal is access-logged as Envoy logs codec
//! errors: no method or path, flag DPE, details such as `http1.codec_error`.
//!
//! Bodies pass through as they arrive. The guard steps aside (plain pass-through) for
//! what it need not understand: HTTP/2 (the preface), upgrades, CONNECT.

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the guard and the requests of its connection.
#[derive(Debug, Default)]
pub struct ConnShared {
    /// Requests served so far on the connection.
    pub served: AtomicU64,
    /// Requests whose response has not ended yet.
    pub active: AtomicUsize,
    /// The connection speaks HTTP/2 (prior knowledge preface seen, or a stream served).
    pub http2: AtomicBool,
    /// A guard waiting for the connection to go idle before it refuses a head.
    waiting: AtomicWaker,
}

impl ConnShared {
    /// A request reached the router.
    pub fn request_started(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// A request's response ended (or was dropped).
    pub fn stream_ended(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.waiting.wake();
    }

    /// Whether every one of the first `heads` requests has been served and answered.
    fn idle_after(&self, heads: u64) -> bool {
        self.served.load(Ordering::Relaxed) == heads && self.active.load(Ordering::Relaxed) == 0
    }
}

/// Why a head is refused, with Envoy's status and response code details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The head does not parse (or a header value is malformed): 400.
    BadRequest,
    /// Both `Content-Length` and `Transfer-Encoding`: 400.
    LengthAndChunked,
    /// Larger than `max_request_headers_kb`: 431.
    HeadersTooLarge,
    /// More than `max_headers_count` headers: 431.
    TooManyHeaders,
}

impl Refusal {
    /// The status of the reply.
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::BadRequest | Refusal::LengthAndChunked => http::StatusCode::BAD_REQUEST,
            Refusal::HeadersTooLarge | Refusal::TooManyHeaders => {
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub fn details(self) -> &'static str {
        match self {
            Refusal::BadRequest => "http1.codec_error",
            Refusal::LengthAndChunked => "http1.content_length_and_chunked_not_allowed",
            Refusal::HeadersTooLarge => "http1.headers_too_large",
            Refusal::TooManyHeaders => "http1.too_many_headers",
        }
    }
}

/// A refusal that went out, for the access log.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// When the bad head was seen.
    pub start_time: SystemTime,
    /// The same, for durations.
    pub started: Instant,
    /// Body bytes of the reply written (0 if the client was gone).
    pub bytes_sent: u64,
}

/// Called once per refusal, after it has been written.
pub type RefusalLog = Arc<dyn Fn(Refused) + Send + Sync>;

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
    /// A head was refused: nothing more reaches the codec.
    Refused,
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
        refusal: Option<PendingRefusal>,
        log: Option<RefusalLog>,
        eof: bool,
    }
}

impl<S> H1Guard<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, shared: Arc<ConnShared>, limits: Limits, log: Option<RefusalLog>) -> Self {
        H1Guard {
            inner,
            state: State::Head(Vec::new()),
            heads: 0,
            shared,
            limits,
            ready: Vec::new(),
            ready_from: 0,
            refusal: None,
            log,
            eof: false,
        }
    }
}

/// What the state machine decided about some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Carry on.
    Pass,
    /// Refuse the head.
    Refuse(Refusal),
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
            State::Refused => return Verdict::Pass,
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
                // The common case: a whole head in one read, judged where it lies.
                if buf.is_empty() {
                    if let Some(end) = find_head_end(data, 0) {
                        let framing = judge_head(&data[..end], limits);
                        if let Framing::Refuse(refusal) = framing {
                            *state = State::Refused;
                            return Verdict::Refuse(refusal);
                        }
                        *heads += 1;
                        out.extend_from_slice(&data[..end]);
                        data = &data[end..];
                        *state = after_head(framing);
                        continue;
                    }
                }
                let before = buf.len();
                buf.extend_from_slice(data);
                let Some(end) = find_head_end(buf, before.saturating_sub(3)) else {
                    if buf.len() > limits.max_head_bytes {
                        *state = State::Refused;
                        return Verdict::Refuse(Refusal::HeadersTooLarge);
                    }
                    return Verdict::Pass;
                };
                let framing = judge_head(&buf[..end], limits);
                if let Framing::Refuse(refusal) = framing {
                    *state = State::Refused;
                    return Verdict::Refuse(refusal);
                }
                data = &data[end - before..];
                *heads += 1;
                out.extend_from_slice(&buf[..end]);
                *state = after_head(framing);
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
    /// An upgrade, CONNECT, or framing the codec should judge: stop following.
    StepAside,
    Refuse(Refusal),
}

/// A complete head against the limits, then its framing.
fn judge_head(head: &[u8], limits: &Limits) -> Framing {
    if head.len() > limits.max_head_bytes {
        Framing::Refuse(Refusal::HeadersTooLarge)
    } else {
        head_framing(head, limits.max_headers)
    }
}

/// Where the state machine goes after a head that passed.
fn after_head(framing: Framing) -> State {
    match framing {
        Framing::None | Framing::Length(0) => State::Head(Vec::new()),
        Framing::Length(n) => State::Fixed(n),
        Framing::Chunked => State::ChunkSize(Vec::new()),
        Framing::StepAside | Framing::Refuse(_) => State::Off,
    }
}

fn head_framing(head: &[u8], max_headers: usize) -> Framing {
    // Room for the headers, uninitialised: on the stack up to hyper's 100.
    const INLINE: usize = 100;
    let wanted = max_headers.max(1);
    let mut inline = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); INLINE];
    let mut heap;
    let storage = if wanted <= INLINE {
        &mut inline[..wanted]
    } else {
        heap = vec![std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); wanted];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, storage) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Framing::Refuse(Refusal::TooManyHeaders),
        // HTTP/1.0 and 0.9 oddities and the like are left to the codec.
        Err(httparse::Error::Version) => return Framing::StepAside,
        Err(_) | Ok(httparse::Status::Partial) => return Framing::Refuse(Refusal::BadRequest),
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
                return Framing::Refuse(Refusal::BadRequest);
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
        (true, Some(_)) => Framing::Refuse(Refusal::LengthAndChunked),
        // A real upgrade request: after a 101 the bytes are no longer HTTP/1.1.
        _ if upgrade && connection_upgrade => Framing::StepAside,
        (true, None) if chunked => Framing::Chunked,
        (true, None) => Framing::StepAside,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    }
}

/// A refusal decided and not yet written (it goes out when the codec shuts down).
#[derive(Debug)]
struct PendingRefusal {
    refusal: Refusal,
    bytes: Vec<u8>,
    written: usize,
    start_time: SystemTime,
    started: Instant,
}

impl PendingRefusal {
    fn new(refusal: Refusal, limits: &Limits) -> Self {
        PendingRefusal {
            refusal,
            bytes: reply(refusal.status(), limits.server.as_ref()),
            written: 0,
            start_time: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// What the access log records once the write ended (the body counts only if the
    /// whole reply went out).
    fn written_out(self) -> Refused {
        let complete = self.written == self.bytes.len();
        let body = self.refusal.status().canonical_reason().unwrap_or_default();
        Refused {
            refusal: self.refusal,
            start_time: self.start_time,
            started: self.started,
            bytes_sent: if complete { body.len() as u64 } else { 0 },
        }
    }
}

/// Envoy's local reply for a refused head.
fn reply(status: http::StatusCode, server: Option<&http::HeaderValue>) -> Vec<u8> {
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
            if *this.eof {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Refused) {
                // The codec sees the end of the stream at the refused head once every
                // earlier request has been answered; until then it waits, woken when a
                // stream ends.
                if this.refusal.is_none() || this.shared.idle_after(*this.heads) {
                    return Poll::Ready(Ok(()));
                }
                this.shared.waiting.register(cx.waker());
                if this.shared.idle_after(*this.heads) {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            if matches!(this.state, State::Off) {
                return this.inner.poll_read(cx, buf);
            }
            // A fixed-length body goes straight into the codec's buffer (no copy).
            if let State::Fixed(n) = this.state {
                let before = buf.filled().len();
                match this.inner.as_mut().poll_read(cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let got = (buf.filled().len() - before) as u64;
                if got == 0 {
                    *this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                if got < *n {
                    *n -= got;
                    return Poll::Ready(Ok(()));
                }
                // The body ends in this read; what follows is the next request's head.
                let end = before + *n as usize;
                let rest = buf.filled()[end..].to_vec();
                buf.set_filled(end);
                *this.state = State::Head(Vec::new());
                if !rest.is_empty() {
                    let verdict = feed(
                        this.state,
                        this.heads,
                        this.shared,
                        this.limits,
                        &rest,
                        this.ready,
                    );
                    if let Verdict::Refuse(refusal) = verdict {
                        *this.refusal = Some(PendingRefusal::new(refusal, this.limits));
                    }
                }
                return Poll::Ready(Ok(()));
            }
            // Not zeroed: only what the read fills is looked at.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut rb = ReadBuf::uninit(&mut chunk);
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
            if let Verdict::Refuse(refusal) = verdict {
                *this.refusal = Some(PendingRefusal::new(refusal, this.limits));
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
        if let Some(pending) = this.refusal.as_mut() {
            while pending.written < pending.bytes.len() {
                match this
                    .inner
                    .as_mut()
                    .poll_write(cx, &pending.bytes[pending.written..])
                {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(n)) => pending.written += n,
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if let (Some(pending), Some(log)) = (this.refusal.take(), this.log.as_ref()) {
                log(pending.written_out());
            }
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

    /// (verdicts, bytes given to the codec)
    fn run(chunks: &[&[u8]]) -> (Vec<Verdict>, Vec<u8>) {
        let c = ConnShared::default();
        let mut state = State::Head(Vec::new());
        let mut heads = 0;
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        for ch in chunks {
            verdicts.push(feed(&mut state, &mut heads, &c, &limits(), ch, &mut out));
        }
        (verdicts, out)
    }

    #[test]
    fn refuses_the_conflicting_request_after_framed_ones() {
        let first = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let second = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n";
        let third =
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let framed = [&first[..], &second[..]].concat();
        let all = [&framed[..], &third[..]].concat();
        let (verdicts, out) = run(&[&all]);
        assert_eq!(verdicts, vec![Verdict::Refuse(Refusal::LengthAndChunked)]);
        assert_eq!(out, framed, "the framed requests reach the codec, in order");
        // Byte by byte gives the same answer.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        let (verdicts, out) = run(&bytes);
        assert_eq!(
            verdicts.last(),
            Some(&Verdict::Refuse(Refusal::LengthAndChunked))
        );
        assert_eq!(out, framed);
    }

    #[test]
    fn clean_requests_pass_untouched() {
        let two = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (verdicts, out) = run(&[two]);
        assert_eq!(out, two);
        assert_eq!(verdicts, vec![Verdict::Pass]);
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(run(&[h2]).1, h2);
    }

    #[test]
    fn bare_lf_heads_end_at_the_first_empty_line() {
        let lf = b"GET /a HTTP/1.1\nHost: x\n\n";
        let crlf = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = [&lf[..], &crlf[..]].concat();
        let (verdicts, out) = run(&[&all]);
        assert_eq!(
            verdicts,
            vec![Verdict::Refuse(Refusal::LengthAndChunked)],
            "the second request's conflict is seen"
        );
        assert_eq!(out, lf);
    }

    /// Through the guard as the codec reads it, in any read size: bodies (passed without a
    /// copy) and heads come out exactly as they went in.
    #[tokio::test]
    async fn the_codec_reads_every_byte_in_order_whatever_the_read_size() {
        use tokio::io::AsyncReadExt;
        let big = "b".repeat(300);
        let input = [
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_string(),
            "GET /b HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            format!("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n{big}"),
            "POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_string(),
            "GET /e HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ]
        .concat()
        .into_bytes();
        for size in [1, 3, 7, 64, 4096] {
            let mut guard =
                H1Guard::new(&input[..], Arc::new(ConnShared::default()), limits(), None);
            let mut out = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = guard.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, input, "read size {size}");
        }
    }

    #[test]
    fn a_head_is_held_back_until_complete() {
        let (_, out) = run(&[b"GET / HTTP/1.1\r\nHo"]);
        assert!(out.is_empty());
    }

    #[test]
    fn bad_heads_are_refused_after_the_good_ones() {
        let good = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
        let bad = b"GET /bad HTTP/1.1\r\nBad Header: x\r\n\r\n";
        let all = [&good[..], &bad[..]].concat();
        let (verdicts, out) = run(&[&all]);
        assert_eq!(verdicts, vec![Verdict::Refuse(Refusal::BadRequest)]);
        assert_eq!(out, good, "only the good request reaches the codec");
        let many: String = (0..20).map(|i| format!("x-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let (verdicts, _) = run(&[head.as_bytes()]);
        assert_eq!(verdicts, vec![Verdict::Refuse(Refusal::TooManyHeaders)]);
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(2000));
        let (verdicts, out) = run(&[big.as_bytes()]);
        assert_eq!(verdicts, vec![Verdict::Refuse(Refusal::HeadersTooLarge)]);
        assert!(out.is_empty());
    }
}
