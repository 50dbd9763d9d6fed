//! A response body limited to a throughput (the fault filter's `response_rate_limit`),
//! released as Envoy's stream rate limiter does: a sixteenth of a second's worth of
//! bytes every 1/16 s.

use bytes::Bytes;
use ferry_upstream::{Body, BoxError};
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

const TICK: Duration = Duration::from_micros(62_500);

/// A body that goes no faster than `kbps` KiB per second.
pub struct Throttled {
    inner: Body,
    /// Bytes per tick.
    per_tick: usize,
    pending: Bytes,
    /// Trailers (or the end) waiting behind `pending`.
    after: Option<Option<Frame<Bytes>>>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Throttled {
    /// Wraps `inner`.
    pub fn new(inner: Body, kbps: u64) -> Throttled {
        let per_tick = (kbps.saturating_mul(1024) / 16).max(1);
        Throttled {
            inner,
            per_tick: usize::try_from(per_tick).unwrap_or(usize::MAX),
            pending: Bytes::new(),
            after: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl http_body::Body for Throttled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let n = this.per_tick.min(this.pending.len());
                let chunk = this.pending.split_to(n);
                let next = tokio::time::Instant::now() + TICK;
                this.timer.as_mut().reset(next);
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if let Some(after) = this.after.take() {
                return Poll::Ready(after.map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(other) => this.after = Some(Some(other)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test(start_paused = true)]
    async fn one_kib_per_second_takes_a_second_per_kib() {
        let body = Full::new(Bytes::from(vec![0u8; 2048]))
            .map_err(|never| match never {})
            .boxed();
        let start = tokio::time::Instant::now();
        let all = Throttled::new(body, 1).collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 2048);
        // 2 KiB at 64 bytes per 1/16 s: 32 ticks, the first at once.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }
}
