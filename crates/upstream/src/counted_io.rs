//! A connection's bytes, counted as they are read and written (`*_cx_rx_bytes_total` /
//! `*_cx_tx_bytes_total`): one relaxed add per read or write call.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a connection's bytes are counted.
pub trait CountBytes: Send + Sync + 'static {
    /// `n` bytes were read.
    fn read(&self, n: u64);
    /// `n` bytes were written.
    fn written(&self, n: u64);
}

impl CountBytes for crate::ClusterStats {
    fn read(&self, n: u64) {
        self.upstream_cx_rx_bytes_total.add(n);
    }

    fn written(&self, n: u64) {
        self.upstream_cx_tx_bytes_total.add(n);
    }
}

pin_project_lite::pin_project! {
    /// `inner` with its traffic counted in `stats`.
    pub struct CountedIo<S, C> {
        #[pin]
        inner: S,
        stats: Arc<C>,
    }
}

impl<S, C> CountedIo<S, C> {
    /// Counts `inner`'s traffic in `stats`.
    pub fn new(inner: S, stats: Arc<C>) -> Self {
        CountedIo { inner, stats }
    }
}

impl<S: AsyncRead, C: CountBytes> AsyncRead for CountedIo<S, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.stats.read(n as u64);
        }
        r
    }
}

impl<S: AsyncWrite, C: CountBytes> AsyncWrite for CountedIo<S, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.stats.written(*n as u64);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            this.stats.written(*n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
