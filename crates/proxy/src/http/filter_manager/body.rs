//! The body side of the filter manager: a body passed through the data and trailer
//! hooks of one direction, with what filters pace or buffer held back.

use super::{DataStatus, FilterChain, Hooks, TrailersStatus};
use bytes::{Bytes, BytesMut};
use ferry_upstream::{Body, BoxError};
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which way a body goes, which decides the hooks and their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Downstream to upstream: filters in config order.
    Request,
    /// Upstream to downstream: filters in reverse order.
    Response,
}

/// Data a filter paced: offered to it again at `sleep`'s deadline.
struct Paced {
    /// The filter's position in the direction's order.
    at: usize,
    data: Bytes,
    end_stream: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// Data a filter is buffering.
struct Buffered {
    at: usize,
    data: BytesMut,
}

/// What a body's filters hold back.
struct Held {
    paced: Option<Paced>,
    buffered: Option<Buffered>,
    /// The most a filter may buffer.
    limit: usize,
}

/// Why a filtered body failed.
#[derive(Debug, thiserror::Error)]
#[error("a filter buffered more than the buffer limit ({0} bytes)")]
pub struct BufferOverflow(usize);

pin_project_lite::pin_project! {
    /// A body passed through the data and trailer hooks of one direction.
    pub struct FilteredBody {
        #[pin]
        inner: Body,
        chain: FilterChain,
        direction: Direction,
        run_hooks: bool,
        held: Held,
        // Trailers held while earlier data is still paced or buffered.
        trailers: Option<HeaderMap>,
        inner_done: bool,
    }
}

impl FilteredBody {
    pub(super) fn new(
        inner: Body,
        chain: FilterChain,
        direction: Direction,
        limit: usize,
    ) -> FilteredBody {
        let hooks = match direction {
            Direction::Request => Hooks::REQUEST_BODY,
            Direction::Response => Hooks::RESPONSE_BODY,
        };
        FilteredBody {
            run_hooks: chain.hooks().has(hooks),
            inner,
            chain,
            direction,
            held: Held {
                paced: None,
                buffered: None,
                limit,
            },
            trailers: None,
            inner_done: false,
        }
    }
}

/// Runs the data hooks from position `from` on (in `direction`'s order). Returns the
/// data to pass on now, if any; pacing and buffering are recorded in `held`.
fn run_data(
    chain: &FilterChain,
    direction: Direction,
    from: usize,
    mut data: Bytes,
    end_stream: bool,
    held: &mut Held,
) -> Result<Option<Bytes>, BufferOverflow> {
    let Held {
        paced,
        buffered,
        limit,
    } = held;
    let limit = *limit;
    let mut filters = chain.filters.lock();
    let n = filters.len();
    let mut end_stream = end_stream;
    for pos in from..n {
        let index = match direction {
            Direction::Request => pos,
            Direction::Response => n - 1 - pos,
        };
        let Some(f) = filters.get_mut(index) else {
            continue;
        };
        let status = match direction {
            Direction::Request => f.on_request_data(&mut data, end_stream),
            Direction::Response => f.on_response_data(&mut data, end_stream),
        };
        match status {
            DataStatus::Continue => {
                // A filter that was buffering lets its buffer go with this data.
                if let Some(b) = buffered.take_if(|b| b.at == pos) {
                    let mut all = b.data;
                    all.extend_from_slice(&data);
                    data = all.freeze();
                }
            }
            DataStatus::StopIterationAndBuffer => {
                let b = buffered.get_or_insert_with(|| Buffered {
                    at: pos,
                    data: BytesMut::new(),
                });
                if b.data.len() + data.len() > limit {
                    return Err(BufferOverflow(limit));
                }
                b.data.extend_from_slice(&data);
                if !end_stream {
                    return Ok(None);
                }
                // The stream ends: nothing more will come to release it.
                data = buffered.take().map(|b| b.data.freeze()).unwrap_or_default();
            }
            DataStatus::Pace { rest, at } => {
                if !rest.is_empty() {
                    *paced = Some(Paced {
                        at: pos,
                        data: rest,
                        end_stream,
                        sleep: Box::pin(tokio::time::sleep_until(at)),
                    });
                    end_stream = false;
                }
            }
        }
    }
    Ok((!data.is_empty()).then_some(data))
}

impl http_body::Body for FilteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if !*this.run_hooks {
            return this.inner.poll_frame(cx);
        }
        loop {
            // Paced data first, when its time comes.
            if let Some(p) = this.held.paced.as_mut() {
                if p.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let p = this.held.paced.take();
                if let Some(p) = p {
                    let out = run_data(
                        this.chain,
                        *this.direction,
                        p.at,
                        p.data,
                        p.end_stream,
                        this.held,
                    );
                    match out {
                        Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                    }
                }
            }
            // What a filter still buffers goes out before the trailers.
            if this.trailers.is_some() {
                if let Some(b) = this.held.buffered.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b.data.freeze()))));
                }
            }
            if let Some(mut t) = this.trailers.take() {
                let mut filters = this.chain.filters.lock();
                let n = filters.len();
                for pos in 0..n {
                    let index = match this.direction {
                        Direction::Request => pos,
                        Direction::Response => n - 1 - pos,
                    };
                    if let Some(f) = filters.get_mut(index) {
                        let TrailersStatus::Continue = match this.direction {
                            Direction::Request => f.on_request_trailers(&mut t),
                            Direction::Response => f.on_response_trailers(&mut t),
                        };
                    }
                }
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if *this.inner_done {
                // What a filter still buffers goes out at the end.
                if let Some(b) = this.held.buffered.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b.data.freeze()))));
                }
                return Poll::Ready(None);
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    *this.inner_done = true;
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    let end_stream = this.inner.is_end_stream();
                    *this.inner_done |= end_stream;
                    let out = run_data(this.chain, *this.direction, 0, data, end_stream, this.held);
                    match out {
                        Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        *this.inner_done = true;
                        *this.trailers = Some(t);
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if !self.run_hooks {
            return self.inner.is_end_stream();
        }
        self.inner_done
            && self.held.paced.is_none()
            && self.held.buffered.is_none()
            && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.run_hooks {
            // Filters may change the body's length.
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
