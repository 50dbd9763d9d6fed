//! The export queue between the request path and a collector: spans go into a bounded
//! channel (a full channel drops the span and counts it, it never waits); a background
//! task batches them and sends a report when `min_flush_spans` are pending or the flush
//! timer fires, with a bounded number of reports in flight. A dead or slow collector
//! therefore costs at most the queue's memory and dropped-span counts, never latency.

// A span keeps the one allocation made on the request path: batches hold the boxes.
#![allow(clippy::vec_box)]

use super::Span;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Envoy's default `min_flush_spans` (runtime `tracing.<tracer>.min_flush_spans`).
pub const MIN_FLUSH_SPANS: usize = 5;
/// Envoy's default flush interval (runtime `tracing.<tracer>.flush_interval_ms`).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Spans waiting for the exporter task.
const QUEUE: usize = 1024;
/// Spans pending in the exporter while every report slot is busy.
const MAX_PENDING: usize = 1024;
/// Reports in flight at once.
const IN_FLIGHT: usize = 8;

/// The request path's end of the queue.
pub(super) struct Queue {
    tx: mpsc::Sender<Box<Span>>,
    dropped: Arc<dyn Fn() + Send + Sync>,
}

impl Queue {
    /// Queues a finished span, or drops it (counted) when the queue is full.
    pub fn push(&self, span: Box<Span>) {
        if self.tx.try_send(span).is_err() {
            (self.dropped)();
        }
    }
}

/// What an exporter reports through.
pub(super) trait Report: Send + Sync + 'static {
    /// Sends one batch (the task does not wait for it to finish before batching more).
    fn send(&self, batch: Vec<Box<Span>>) -> impl Future<Output = ()> + Send;
    /// Counts spans handed to a report.
    fn spans_sent(&self, n: u64);
    /// Counts a flush timer tick.
    fn timer_flushed(&self);
    /// Counts spans dropped (queue or pending buffer full).
    fn spans_dropped(&self, n: u64);
}

/// Starts the exporter task for `reporter` and returns the queue that feeds it. The
/// task ends, after a last flush, when the queue's sender is dropped (the connection
/// manager is gone).
pub(super) fn start<R: Report>(reporter: Arc<R>) -> Queue {
    let (tx, mut rx) = mpsc::channel::<Box<Span>>(QUEUE);
    let dropped_reporter = reporter.clone();
    let queue = Queue {
        tx,
        dropped: Arc::new(move || dropped_reporter.spans_dropped(1)),
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("tracing: no runtime, spans will not be exported");
        return queue;
    };
    handle.spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut pending: Vec<Box<Span>> = Vec::new();
        let mut timer =
            tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_INTERVAL, FLUSH_INTERVAL);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => {
                        pending.push(span);
                        if pending.len() >= MIN_FLUSH_SPANS {
                            flush(&reporter, &slots, &mut pending);
                        }
                    }
                    None => {
                        flush(&reporter, &slots, &mut pending);
                        return;
                    }
                },
                _ = timer.tick() => {
                    reporter.timer_flushed();
                    flush(&reporter, &slots, &mut pending);
                }
            }
        }
    });
    queue
}

/// Hands the pending spans to a report if a slot is free; otherwise keeps them, up to
/// [`MAX_PENDING`] (beyond that they are dropped and counted).
fn flush<R: Report>(reporter: &Arc<R>, slots: &Arc<Semaphore>, pending: &mut Vec<Box<Span>>) {
    if pending.is_empty() {
        return;
    }
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        if pending.len() >= MAX_PENDING {
            reporter.spans_dropped(pending.len() as u64);
            pending.clear();
        }
        return;
    };
    let batch = std::mem::take(pending);
    reporter.spans_sent(batch.len() as u64);
    let r = reporter.clone();
    tokio::spawn(async move {
        r.send(batch).await;
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A collector that never answers: every report hangs.
    #[derive(Default)]
    struct Hanging {
        sent: AtomicU64,
        dropped: AtomicU64,
        ticks: AtomicU64,
        reports: AtomicU64,
    }

    impl Report for Hanging {
        async fn send(&self, _batch: Vec<Box<Span>>) {
            self.reports.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        fn spans_sent(&self, n: u64) {
            self.sent.fetch_add(n, Ordering::Relaxed);
        }
        fn timer_flushed(&self) {
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
        fn spans_dropped(&self, n: u64) {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn span() -> Box<Span> {
        Box::new(Span {
            context: Default::default(),
            wide_trace_id: false,
            name: "s".into(),
            start: std::time::SystemTime::UNIX_EPOCH,
            end: std::time::SystemTime::UNIX_EPOCH,
            shared: false,
            client: false,
            tracestate: None,
            tags: Vec::new(),
        })
    }

    /// A dead collector holds at most the queue, the pending buffer and the reports in
    /// flight; every other span is dropped and counted, and pushing never waits.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_collector_bounds_what_is_kept() {
        let r = Arc::new(Hanging::default());
        let q = start(r.clone());
        let total = 20_000u64;
        for i in 0..total {
            q.push(span());
            if i % 64 == 0 {
                // Let the exporter run now and then, as the runtime would.
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let sent = r.sent.load(Ordering::Relaxed);
        let dropped = r.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0, "nothing dropped");
        assert_eq!(r.reports.load(Ordering::Relaxed), IN_FLIGHT as u64);
        let kept = total - sent - dropped;
        assert!(
            kept <= (QUEUE + MAX_PENDING) as u64,
            "{kept} spans kept (sent {sent}, dropped {dropped})"
        );
        assert!(sent <= (IN_FLIGHT * MAX_PENDING) as u64);
        // The flush timer still ticks.
        tokio::time::advance(FLUSH_INTERVAL * 2).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(r.ticks.load(Ordering::Relaxed) >= 1);
    }
}
