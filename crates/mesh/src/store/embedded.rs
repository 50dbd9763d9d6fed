//! The embedded store: one `redb` file. redb is a pure-Rust embedded key-value store
//! with ACID transactions whose commits are durable when they return (copy-on-write
//! pages, fsynced; two-phase, as redb advises for values from untrusted input), so a
//! write the API acknowledged survives a crash or `kill -9`, and a conditional write is
//! one transaction (read the revision, compare, write). The file is checked when it is
//! opened. Each value is stored behind the 8-byte revision it was written at; a
//! counter in the same file gives revisions. Watches are served from the process
//! (the file has one writer: the process that opened it).

use super::{check_writes, Change, Event, Events, Expect, Store, StoreError, Versioned, Write};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// How many commits a watcher may fall behind before its watch ends.
const WATCH_BACKLOG: usize = 4096;

/// The store in a file.
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Database>,
    path: PathBuf,
    /// Every commit's changes, to the watchers (this process is the file's only writer).
    changes: broadcast::Sender<Arc<Vec<Event>>>,
    /// Held from a commit to its report, so that reports come in the commits' order.
    ordered: Arc<parking_lot::Mutex<()>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Embedded {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let existed = path.exists();
        // A damaged file is found at open (and refused with an error), not later.
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(backend)?;
        if !existed {
            // The new file's directory entry is durable too (a power loss right after
            // the first writes keeps them).
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(backend)?;
            }
        }
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(RESOURCES).map_err(backend)?;
        txn.open_table(META).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Embedded {
            db: Arc::new(db),
            path: path.to_path_buf(),
            changes: broadcast::channel(WATCH_BACKLOG).0,
            ordered: Arc::new(parking_lot::Mutex::new(())),
        })
    }

    /// Runs `f` on a blocking thread (redb's calls block on I/O).
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(backend)?
        })
    }
}

fn decode(bytes: &[u8]) -> Result<Versioned, StoreError> {
    if bytes.len() < 8 {
        return Err(StoreError::Backend("a value without its revision".into()));
    }
    let (revision, value) = bytes.split_at(8);
    let mut r = [0u8; 8];
    r.copy_from_slice(revision);
    Ok(Versioned {
        revision: u64::from_be_bytes(r),
        value: value.to_vec(),
    })
}

/// Commits `writes` in one transaction if every key is as expected; the new revision
/// and the changes made.
fn commit(db: &Database, writes: &[Write]) -> Result<(u64, Vec<Event>), StoreError> {
    check_writes(writes)?;
    let mut txn = db.begin_write().map_err(backend)?;
    // Values come from API clients: redb's two-phase commit keeps a crafted value from
    // ever passing for a commit's checksum.
    txn.set_two_phase_commit(true);
    let (revision, events) = {
        let mut resources = txn.open_table(RESOURCES).map_err(backend)?;
        for w in writes {
            let current = match resources.get(w.key.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?.revision),
                None => None,
            };
            let ok = match w.expect {
                Expect::Absent => current.is_none(),
                Expect::Revision(r) => current == Some(r),
            };
            if !ok {
                // Dropping the transaction aborts it.
                return Err(StoreError::Conflict);
            }
        }
        let mut meta = txn.open_table(META).map_err(backend)?;
        let revision = meta
            .get(REVISION)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0)
            + 1;
        meta.insert(REVISION, revision).map_err(backend)?;
        let mut events = Vec::new();
        for w in writes {
            let value = match &w.change {
                Change::Put(value) => {
                    let mut bytes = revision.to_be_bytes().to_vec();
                    bytes.extend_from_slice(value);
                    resources
                        .insert(w.key.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                    Some(value.clone())
                }
                Change::Delete => {
                    resources.remove(w.key.as_str()).map_err(backend)?;
                    None
                }
                Change::Check => continue,
            };
            events.push(Event {
                key: w.key.clone(),
                revision,
                value,
            });
        }
        (revision, events)
    };
    txn.commit().map_err(backend)?;
    Ok((revision, events))
}

impl Store for Embedded {
    fn describe(&self) -> String {
        format!("embedded {}", self.path.display())
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            let value = resources.get(key.as_str()).map_err(backend)?;
            value.map(|v| decode(v.value())).transpose()
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Versioned)>, StoreError>> {
        let prefix = prefix.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            let mut out = Vec::new();
            for entry in resources.range(prefix.as_str()..).map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                if !k.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push((k.value().to_string(), decode(v.value())?));
            }
            Ok(out)
        })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<u64, StoreError>> {
        let (changes, ordered) = (self.changes.clone(), self.ordered.clone());
        self.blocking(move |db| {
            // Commits are reported in the order they were made.
            let _ordered = ordered.lock();
            let (revision, events) = commit(db, &writes)?;
            if !events.is_empty() {
                // No watcher is not an error.
                let _ = changes.send(Arc::new(events));
            }
            Ok(revision)
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Events, StoreError>> {
        let receiver = self.changes.subscribe();
        let prefix = prefix.to_string();
        // A watcher that fell behind gets an error, and its watch ends.
        let commits = futures_util::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(events) => Some((Ok(events), Some(receiver))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let e = StoreError::Backend(format!("the watcher fell {n} commits behind"));
                    Some((Err(e), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        let events = commits.flat_map(move |commit| {
            let events: Vec<Result<Event, StoreError>> = match commit {
                Ok(events) => events
                    .iter()
                    .filter(|e| e.key.starts_with(prefix.as_str()))
                    .cloned()
                    .map(Ok)
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures_util::stream::iter(events)
        });
        Box::pin(async move { Ok(events.boxed()) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_conforms_and_keeps_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = Embedded::open(&path).unwrap();
            super::super::conformance::run(&store).await;
        }
        // Reopened: what was written is there, and revisions go on increasing.
        let store = Embedded::open(&path).unwrap();
        let b = store.get("mesh/b").await.unwrap().unwrap();
        assert_eq!(b.value, b"b");
        let next = store
            .put("mesh/c", b"c".to_vec(), Expect::Absent)
            .await
            .unwrap();
        assert!(next > b.revision);
    }
}
