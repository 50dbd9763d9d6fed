//! The request body kept for retries, hedged attempts and mirrors: each reader gets the
//! whole body, the chunks already read from downstream first, then new ones as they
//! arrive. Chunks are kept only up to the route's buffer limit; past it the body
//! streams on to the readers at the front but can no longer be replayed (Envoy gives up
//! retrying and shadowing then).
//!
//! Only the request's own attempts (primary readers) pull from downstream; a mirror
//! (follower) reads what they have pulled, so a fast mirror never moves the front and a
//! slow one only loses its own copy. Downstream is polled with a waker that wakes every
//! waiting reader, so no reader depends on another one polling.

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
    /// Readers waiting at the front, woken when downstream yields.
    waiting: Arc<WakeAll>,
}

/// A waker that wakes every reader registered with it.
#[derive(Default)]
struct WakeAll(Mutex<Vec<Waker>>);

impl WakeAll {
    fn register(&self, w: &Waker) {
        let mut list = self.0.lock();
        if !list.iter().any(|x| x.will_wake(w)) {
            list.push(w.clone());
        }
    }

    fn wake_all(&self) {
        let list = std::mem::take(&mut *self.0.lock());
        for w in list {
            w.wake();
        }
    }
}

impl std::task::Wake for WakeAll {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
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
                waiting: Arc::new(WakeAll::default()),
            }),
        })
    }

    /// Whether a new reader can still get the whole body.
    pub fn replayable(&self) -> bool {
        self.state.lock().kept
    }

    /// A new reader from the first byte, for one of the request's attempts: it pulls
    /// the body from downstream when it is at the front.
    pub fn reader(self: &Arc<Self>) -> Body {
        self.new_reader(true)
    }

    /// A new reader from the first byte for a mirror: it reads only what the attempts
    /// have pulled, and fails if it falls behind past the buffer limit.
    pub fn follower(self: &Arc<Self>) -> Body {
        self.new_reader(false)
    }

    fn new_reader(self: &Arc<Self>, primary: bool) -> Body {
        http_body_util::BodyExt::boxed(Reader {
            shared: self.clone(),
            pos: 0,
            trailers_sent: false,
            primary,
        })
    }
}

struct Reader {
    shared: Arc<Replay>,
    pos: usize,
    trailers_sent: bool,
    primary: bool,
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
        // The front: wait for it to move, or (an attempt) move it.
        s.waiting.register(cx.waker());
        if !this.primary {
            return Poll::Pending;
        }
        let wake_all = Waker::from(s.waiting.clone());
        let mut all = Context::from_waker(&wake_all);
        match Pin::new(&mut s.source).poll_frame(&mut all) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => {
                s.waiting.wake_all();
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
    async fn a_follower_reads_only_what_an_attempt_pulled() {
        let r = Replay::new(source(&["ab", "cd"]), 100);
        let mut follower = r.follower();
        // Nothing pulled yet: the follower waits.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), follower.frame()).await;
        assert!(waiting.is_err());
        let all = r.reader().collect().await.unwrap().to_bytes();
        assert_eq!(all, "abcd");
        let copy = follower.collect().await.unwrap().to_bytes();
        assert_eq!(copy, "abcd");
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
