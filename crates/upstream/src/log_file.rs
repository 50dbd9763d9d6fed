//! Files that logs are appended to (access logs, health check and outlier event logs),
//! written by a background task per file so that the caller never blocks on I/O.
//!
//! Every file is opened through one [`LogFiles`] (Envoy's access log manager): logs of
//! the same path share a writer, and [`LogFiles::reopen`] (SIGUSR1, admin
//! `/reopen_logs`) makes every writer reopen its path, so that logrotate's
//! move-then-signal works. What waits to be written is bounded per file
//! ([`DEFAULT_QUEUE_LIMIT`] bytes): past it lines are dropped and counted
//! (`filesystem.write_dropped`), so a stuck disk never grows memory without bound.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

/// The most bytes a file's queue holds before lines are dropped.
pub const DEFAULT_QUEUE_LIMIT: usize = 16 * 1024 * 1024;

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, created if missing and appended to (`/dev/stdout` and `/dev/stderr`
    /// mean the standard streams).
    Path(PathBuf),
}

impl Target {
    /// The target for a configured path.
    pub fn path(p: impl AsRef<Path>) -> Target {
        let p = p.as_ref();
        if p.as_os_str() == "/dev/stdout" {
            Target::Stdout
        } else if p.as_os_str() == "/dev/stderr" {
            Target::Stderr
        } else {
            Target::Path(p.to_path_buf())
        }
    }
}

ferry_stats::stat_group! {
    /// `filesystem.*`: Envoy's file writer stats, plus `write_dropped` (lines dropped
    /// because a file's queue was full; Envoy has no such bound).
    pub struct FilesystemStats {
        counters: { write_buffered, write_completed, write_failed, flushed_by_timer, reopen_failed, write_dropped }
        gauges: { write_total_buffered }
    }
}

/// The stats and the bytes queued over every file (the gauge's source).
#[derive(Debug, Default)]
struct Totals {
    stats: Arc<FilesystemStats>,
    queued: AtomicUsize,
}

impl Totals {
    fn queued(&self, delta: isize) {
        let now = if delta >= 0 {
            self.queued.fetch_add(delta as usize, Ordering::Relaxed) + delta as usize
        } else {
            let d = delta.unsigned_abs();
            self.queued
                .fetch_sub(d, Ordering::Relaxed)
                .saturating_sub(d)
        };
        self.stats.write_total_buffered.set(now as u64);
    }
}

/// Opens log files and reopens them all on request. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct LogFiles {
    inner: Arc<Files>,
}

#[derive(Debug)]
struct Files {
    reopen: watch::Sender<u64>,
    stats: Arc<Totals>,
    open: Mutex<HashMap<Target, Weak<Shared>>>,
    limit: usize,
}

impl Default for LogFiles {
    fn default() -> Self {
        LogFiles::new(DEFAULT_QUEUE_LIMIT)
    }
}

impl LogFiles {
    /// A manager whose files queue at most `limit` bytes each.
    pub fn new(limit: usize) -> LogFiles {
        let (reopen, _) = watch::channel(0);
        LogFiles {
            inner: Arc::new(Files {
                reopen,
                stats: Arc::default(),
                open: Mutex::default(),
                limit,
            }),
        }
    }

    /// Registers the `filesystem.*` stats in `store`.
    pub fn register_stats(&self, store: &ferry_stats::Store) {
        store.register("filesystem.", &self.inner.stats.stats);
    }

    /// The `filesystem.*` stats.
    pub fn stats(&self) -> &FilesystemStats {
        &self.inner.stats.stats
    }

    /// The log of `target`: the writer already open for it, else a new one started on
    /// the current tokio runtime. A file that cannot be opened is reported, and its
    /// lines dropped until a reopen succeeds. Outside a runtime every line is dropped.
    pub fn open(&self, target: Target) -> LogFile {
        let mut open = self.inner.open.lock();
        if let Some(shared) = open.get(&target).and_then(Weak::upgrade) {
            return LogFile { shared };
        }
        open.retain(|_, w| w.strong_count() > 0);
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let shared = Arc::new(Shared {
            tx,
            queued: AtomicUsize::new(0),
            limit: self.inner.limit,
            stats: self.inner.stats.clone(),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(write_lines(
                    target.clone(),
                    rx,
                    self.inner.reopen.subscribe(),
                    Arc::downgrade(&shared),
                    self.inner.stats.clone(),
                ));
            }
            Err(_) => tracing::error!(?target, "log opened outside a tokio runtime: not written"),
        }
        open.insert(target, Arc::downgrade(&shared));
        LogFile { shared }
    }

    /// Makes every open file reopen its path (after pending lines are written).
    pub fn reopen(&self) {
        self.inner.reopen.send_modify(|n| *n += 1);
    }
}

/// The log files a cluster writes events to: the outlier event log of the cluster
/// manager, and the manager that opens health check event logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterLogs {
    /// `cluster_manager.outlier_detection.event_log_path`.
    pub(crate) outlier: Option<LogFile>,
    /// Opens `event_log_path` / `event_logger` files.
    pub(crate) files: LogFiles,
}

/// An open log: lines handed to [`LogFile::write`] are appended in order by a writer
/// task, which batches what is queued into one write.
#[derive(Debug, Clone)]
pub struct LogFile {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::UnboundedSender<String>,
    /// Bytes queued and not written yet.
    queued: AtomicUsize,
    limit: usize,
    stats: Arc<Totals>,
}

impl LogFile {
    /// A log of `target` with a manager of its own (tests, and logs that are never
    /// reopened).
    pub fn open(target: Target) -> LogFile {
        LogFiles::default().open(target)
    }

    /// Queues `line`, which ends with a newline; dropped (and counted) when the
    /// file's queue is full.
    pub fn write(&self, line: String) {
        let s = &self.shared;
        let len = line.len();
        if s.queued.fetch_add(len, Ordering::Relaxed) + len > s.limit {
            s.queued.fetch_sub(len, Ordering::Relaxed);
            s.stats.stats.write_dropped.inc();
            return;
        }
        s.stats.stats.write_buffered.inc();
        s.stats.queued(len as isize);
        if s.tx.send(line).is_err() {
            s.queued.fetch_sub(len, Ordering::Relaxed);
            s.stats.queued(-(len as isize));
        }
    }
}

type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn open_target(target: &Target) -> std::io::Result<Writer> {
    Ok(match target {
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::Stderr => Box::new(tokio::io::stderr()),
        Target::Path(p) => Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await?,
        ),
    })
}

async fn write_lines(
    target: Target,
    mut rx: mpsc::UnboundedReceiver<String>,
    mut reopen: watch::Receiver<u64>,
    shared: Weak<Shared>,
    totals: Arc<Totals>,
) {
    let stats = &totals.stats;
    reopen.borrow_and_update();
    let mut out = match open_target(&target).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(?target, error = %e, "cannot open log file");
            None
        }
    };
    loop {
        tokio::select! {
            // Lines already queued go to the file they were written for.
            biased;
            line = rx.recv() => {
                let Some(line) = line else { return };
                let mut buf = line.into_bytes();
                // Batch what is already queued into one write.
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(more.as_bytes());
                }
                let ok = match out.as_mut() {
                    Some(w) => w.write_all(&buf).await.is_ok() && w.flush().await.is_ok(),
                    None => false,
                };
                if ok {
                    stats.write_completed.inc();
                } else {
                    stats.write_failed.inc();
                    tracing::warn!(?target, "log write failed");
                }
                if let Some(s) = shared.upgrade() {
                    s.queued.fetch_sub(buf.len(), Ordering::Relaxed);
                }
                totals.queued(-(buf.len() as isize));
            }
            changed = reopen.changed() => {
                if changed.is_err() {
                    // The manager is gone: no more reopens, keep writing.
                    reopen = watch::channel(0).1;
                    continue;
                }
                if matches!(target, Target::Path(_)) {
                    match open_target(&target).await {
                        Ok(w) => out = Some(w),
                        Err(e) => {
                            stats.reopen_failed.inc();
                            tracing::error!(?target, error = %e, "cannot reopen log file");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = LogFiles::new(100);
        let log = files.open(Target::path(dir.path().join("a.log")));
        // The writer cannot run while this task does not yield: the queue fills up.
        for _ in 0..20 {
            log.write("0123456789\n".into());
        }
        assert_eq!(files.stats().write_buffered.value(), 9);
        assert_eq!(files.stats().write_dropped.value(), 11);
        assert_eq!(files.stats().write_total_buffered.value(), 99);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_writer_per_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = LogFiles::new(1000);
        let a = files.open(Target::path(dir.path().join("a.log")));
        let b = files.open(Target::path(dir.path().join("a.log")));
        let c = files.open(Target::path(dir.path().join("c.log")));
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
    }
}
