//! Files that logs are appended to (access logs, health check and outlier event logs),
//! written by a background task per file so that the caller never blocks on I/O.

use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// An open log: lines handed to [`LogFile::write`] are appended in order by a writer
/// task, which batches what is queued into one write.
#[derive(Debug, Clone)]
pub struct LogFile {
    tx: mpsc::UnboundedSender<String>,
}

impl LogFile {
    /// Starts the writer of `target` on the current tokio runtime. A file that cannot
    /// be opened is reported once, and its lines are dropped. Outside a runtime every
    /// line is dropped.
    pub fn open(target: Target) -> LogFile {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(write_lines(target, rx));
            }
            Err(_) => tracing::error!(?target, "log opened outside a tokio runtime: not written"),
        }
        LogFile { tx }
    }

    /// Queues `line`, which ends with a newline.
    pub fn write(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

async fn write_lines(target: Target, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &target {
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::Stderr => Box::new(tokio::io::stderr()),
        Target::Path(p) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .await
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                tracing::error!(path = %p.display(), error = %e, "cannot open log file");
                return;
            }
        },
    };
    while let Some(line) = rx.recv().await {
        let mut buf = line.into_bytes();
        // Batch what is already queued into one write.
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(more.as_bytes());
        }
        if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
            tracing::warn!(?target, "log write failed");
        }
    }
}
