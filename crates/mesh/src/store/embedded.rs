//! The embedded store: one `redb` file. redb is a pure-Rust embedded key-value store
//! with ACID transactions whose commits are durable when they return (copy-on-write
//! pages, fsynced; two-phase, as redb advises for values from untrusted input), so a
//! write the API acknowledged survives a crash or `kill -9`, and a conditional write is
//! one transaction (read the revision, compare, write). The file is checked when it is
//! opened. Each value is stored behind the 8-byte revision it was written at; a
//! counter in the same file gives revisions.

use super::{Expect, Store, StoreError, Versioned};
use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// The store in a file.
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Database>,
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
        Ok(Embedded { db: Arc::new(db) })
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

/// Writes (or deletes, `value` None) `key` in one transaction if it is as `expect`
/// says; the new revision.
fn write(
    db: &Database,
    key: &str,
    value: Option<&[u8]>,
    expect: Expect,
) -> Result<u64, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    // Values come from API clients: redb's two-phase commit keeps a crafted value from
    // ever passing for a commit's checksum.
    txn.set_two_phase_commit(true);
    let revision = {
        let mut resources = txn.open_table(RESOURCES).map_err(backend)?;
        let current = match resources.get(key).map_err(backend)? {
            Some(v) => Some(decode(v.value())?.revision),
            None => None,
        };
        let ok = match expect {
            Expect::Absent => current.is_none(),
            Expect::Revision(r) => current == Some(r),
        };
        if !ok {
            return Err(StoreError::Conflict);
        }
        let mut meta = txn.open_table(META).map_err(backend)?;
        let revision = meta
            .get(REVISION)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0)
            + 1;
        meta.insert(REVISION, revision).map_err(backend)?;
        match value {
            Some(value) => {
                let mut bytes = revision.to_be_bytes().to_vec();
                bytes.extend_from_slice(value);
                resources.insert(key, bytes.as_slice()).map_err(backend)?;
            }
            None => {
                resources.remove(key).map_err(backend)?;
            }
        }
        revision
    };
    txn.commit().map_err(backend)?;
    Ok(revision)
}

impl Store for Embedded {
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

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expect: Expect,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let key = key.to_string();
        self.blocking(move |db| write(db, &key, Some(&value), expect))
    }

    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.to_string();
        self.blocking(move |db| write(db, &key, None, Expect::Revision(revision)).map(|_| ()))
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
