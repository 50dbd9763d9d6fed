//! The request body kept for retries, hedged attempts and mirrors: each reader gets the
//! whole body, the chunks already read from downstream first, then new ones as they
//! arrive. Chunks are kept only up to the route's buffer limit; past it the body
//! streams on to the readers at the front but can no longer be replayed (Envoy gives up
//! retrying and shadowing then).

use bytes::Bytes;
use ferry_upstream::{Body, BoxError};
use http::HeaderMap;
use http_body::Frame;
use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A request body shared by several upstream attempts.
pub struct Replay {
    state: Mutex<State>,
}

struct State {
    source: Body,
    /// Chunks read so far (all of them while `kept` holds).
    chunks: Vec<Bytes>,
    /// Chunks read from the source so far.
    read: usize,
    buffered: usize,
    limit: usize,
    /// False once the body outgrew the limit: chunks are no longer kept.
    kept: bool,
    trailers: Option<HeaderMap>,
    ended: bool,
    failed: Option<String>,
    /// Readers waiting for the source, woken when it yields.
    waiting: Vec<Waker>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Replay")
            .field("buffered", &s.buffered)
            .field("kept", &s.kept)
            .finish()
    }
}

impl Replay {
    /// Wraps the downstream body; at most `limit` bytes are kept for replay.
    pub fn new(source: Body, limit: usize) -> Arc<Replay> {
        Arc::new(Replay {
            state: Mutex::new(State {
                source,
                chunks: Vec::new(),
                read: 0,
                buffered: 0,
                limit,
                kept: true,
                trailers: None,
                ended: false,
                failed: None,
                waiting: Vec::new(),
            }),
        })
    }

    /// Whether a new reader can still get the whole body.
    pub fn replayable(&self) -> bool {
        self.state.lock().kept
    }

    /// A new reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> Body {
        http_body_util::BodyExt::boxed(Reader {
            shared: self.clone(),
            pos: 0,
            trailers_sent: false,
        })
    }
}

struct Reader {
    shared: Arc<Replay>,
    pos: usize,
    trailers_sent: bool,
}

impl http_body::Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut s = this.shared.state.lock();
        if this.pos < s.read {
            return match s.chunks.get(this.pos) {
                Some(c) => {
                    let c = c.clone();
                    this.pos += 1;
                    Poll::Ready(Some(Ok(Frame::data(c))))
                }
                None => Poll::Ready(Some(Err(
                    "request body over the buffer limit cannot be replayed".into(),
                ))),
            };
        }
        if let Some(e) = &s.failed {
            return Poll::Ready(Some(Err(e.clone().into())));
        }
        if s.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        // The front: read from downstream.
        match Pin::new(&mut s.source).poll_frame(cx) {
            Poll::Pending => {
                if !s.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(frame) => {
                for w in s.waiting.drain(..) {
                    w.wake();
                }
                match frame {
                    None => {
                        s.ended = true;
                        Poll::Ready(None)
                    }
                    Some(Err(e)) => {
                        s.failed = Some(e.to_string());
                        Poll::Ready(Some(Err(e)))
                    }
                    Some(Ok(f)) => match f.into_data() {
                        Ok(data) => {
                            s.read += 1;
                            this.pos += 1;
                            if s.kept {
                                s.buffered += data.len();
                                if s.buffered > s.limit {
                                    s.kept = false;
                                    s.chunks = Vec::new();
                                } else {
                                    s.chunks.push(data.clone());
                                }
                            }
                            if s.source.is_end_stream() {
                                s.ended = true;
                            }
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Err(f) => {
                            if let Ok(t) = f.into_trailers() {
                                s.trailers = Some(t.clone());
                                s.ended = true;
                                this.trailers_sent = true;
                                return Poll::Ready(Some(Ok(Frame::trailers(t))));
                            }
                            Poll::Ready(Some(Err("unknown request body frame".into())))
                        }
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.shared.state.lock();
        s.ended && self.pos >= s.read && (self.trailers_sent || s.trailers.is_none())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn source(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn every_reader_gets_the_whole_body() {
        let r = Replay::new(source(&["ab", "cd", "ef"]), 100);
        let mut first = r.reader();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        // A second reader starts over, then reads past the first.
        let second = r.reader().collect().await.unwrap().to_bytes();
        assert_eq!(second, "abcdef");
        let rest = first.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "cdef");
        assert!(r.replayable());
    }

    #[tokio::test]
    async fn past_the_limit_the_body_streams_but_is_not_replayable() {
        let r = Replay::new(source(&["abcd", "efgh"]), 6);
        let all = r.reader().collect().await.unwrap().to_bytes();
        assert_eq!(all, "abcdefgh");
        assert!(!r.replayable());
        assert!(r.reader().collect().await.is_err());
    }
}
