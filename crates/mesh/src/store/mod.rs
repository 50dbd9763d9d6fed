//! Where the control plane keeps its resources: one [`Store`] trait — keys to values,
//! each value with the revision it was written at, writes conditional on the revision
//! the writer read (optimistic concurrency) — and its implementations: [`embedded`]
//! (a durable, transactional file, the default) and [`etcd`] (for several
//! control-plane replicas on one etcd cluster). A commit writes several keys in one
//! transaction, each conditional on what its writer read; a watch reports every
//! commit, so that what one replica writes reaches the others.
//!
//! Keys: `mesh/<name>` for meshes; the resources of a mesh `<kind>/<mesh>/<name>`, and
//! those that live in another `<kind>/<mesh>/<parent>/<name>` (a route:
//! `route/<mesh>/<router>/<name>`).

pub mod embedded;
pub mod etcd;

use futures_util::future::BoxFuture;

/// A value with the revision it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// Increases with every write to the store.
    pub revision: u64,
    /// The bytes written.
    pub value: Vec<u8>,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The key's revision is not the one expected (it was written, created or deleted
    /// meanwhile).
    Conflict,
    /// The store itself failed (I/O, corruption).
    Backend(String),
    /// The commit is larger than the store takes (etcd's `--max-txn-ops`).
    Limit(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("the resource changed meanwhile"),
            StoreError::Backend(e) => write!(f, "store: {e}"),
            StoreError::Limit(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What a write expects of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key is absent (a create).
    Absent,
    /// The key is at this revision (an update or delete of what was read).
    Revision(u64),
}

impl Expect {
    /// What a writer that read `found` expects.
    pub fn of(found: Option<&Versioned>) -> Expect {
        found.map_or(Expect::Absent, |v| Expect::Revision(v.revision))
    }
}

/// What a commit does to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Writes this value.
    Put(Vec<u8>),
    /// Deletes the key.
    Delete,
    /// Leaves the key as it is: only its expectation counts (what the writer read and
    /// relied on).
    Check,
}

/// One key of a commit: what it must be, and what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: String,
    /// What the key must be for the commit to happen.
    pub expect: Expect,
    /// What becomes of it.
    pub change: Change,
}

/// A change of a key, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The key.
    pub key: String,
    /// The revision of the commit that made the change.
    pub revision: u64,
    /// The new value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

/// The changes a watch reports, commit by commit in revision order; an error ends it
/// (a watcher that fell behind, a store that went away), after which the watcher reads
/// the store again.
pub type Events = futures_util::stream::BoxStream<'static, Result<Event, StoreError>>;

/// The store.
pub trait Store: Send + Sync {
    /// Which store this is, for `ferry status` (`embedded /path`, `etcd http://...`).
    fn describe(&self) -> String;

    /// The value at `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>>;

    /// Every key starting with `prefix`, in key order, with its value.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Versioned)>, StoreError>>;

    /// Applies every write if every key is as its write expects, else none
    /// ([`StoreError::Conflict`]): one transaction, one new revision (returned).
    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The changes committed from now on to keys starting with `prefix`. A watcher
    /// that also needs what is there already watches first, then lists, and skips
    /// the events at or before the revisions it listed.
    fn watch<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Events, StoreError>>;

    /// Writes `value` at `key` if the key is as `expect` says; the new revision.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expect: Expect,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.commit(vec![Write {
            key: key.to_string(),
            expect,
            change: Change::Put(value),
        }])
    }

    /// Deletes `key` if it is at `revision`.
    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        let commit = self.commit(vec![Write {
            key: key.to_string(),
            expect: Expect::Revision(revision),
            change: Change::Delete,
        }]);
        Box::pin(async move { commit.await.map(|_| ()) })
    }
}

/// Checks a commit's writes before it is sent: one write per key.
pub(crate) fn check_writes(writes: &[Write]) -> Result<(), StoreError> {
    let mut keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    keys.sort_unstable();
    match keys.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(StoreError::Backend(format!(
            "a commit writes {} twice",
            w[0]
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod conformance {
    //! The behaviour every store must have; each implementation runs it.
    use super::*;

    pub(crate) async fn run(store: &dyn Store) {
        // Create, read, list.
        assert_eq!(store.get("mesh/a").await, Ok(None));
        let r1 = store
            .put("mesh/a", b"1".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let got = store.get("mesh/a").await.unwrap().unwrap();
        assert_eq!(got.value, b"1");
        assert_eq!(got.revision, r1);
        // A second create of the same key conflicts.
        assert_eq!(
            store.put("mesh/a", b"2".to_vec(), Expect::Absent).await,
            Err(StoreError::Conflict)
        );
        // An update of what was read succeeds; of an older revision, conflicts.
        let r2 = store
            .put("mesh/a", b"2".to_vec(), Expect::Revision(r1))
            .await
            .unwrap();
        assert!(r2 > r1);
        assert_eq!(
            store
                .put("mesh/a", b"3".to_vec(), Expect::Revision(r1))
                .await,
            Err(StoreError::Conflict)
        );
        store
            .put("mesh/b", b"b".to_vec(), Expect::Absent)
            .await
            .unwrap();
        store
            .put("virtualNode/a/n", b"n".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let listed: Vec<String> = store
            .list("mesh/")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, ["mesh/a", "mesh/b"]);
        // Delete of an older revision conflicts; of the current one, deletes.
        assert_eq!(store.delete("mesh/a", r1).await, Err(StoreError::Conflict));
        store.delete("mesh/a", r2).await.unwrap();
        assert_eq!(store.get("mesh/a").await, Ok(None));
        assert_eq!(store.delete("mesh/a", r2).await, Err(StoreError::Conflict));

        // A commit of several keys: all or nothing, one revision, seen by a watch as
        // it was made.
        let mut events = store.watch("virtualNode/").await.unwrap();
        let n = store.get("virtualNode/a/n").await.unwrap().unwrap();
        let put = |key: &str, expect, value: &[u8]| Write {
            key: key.to_string(),
            expect,
            change: Change::Put(value.to_vec()),
        };
        let refused = store
            .commit(vec![
                put("virtualNode/a/m", Expect::Absent, b"m"),
                // Not at this revision: nothing of the commit is written.
                put("virtualNode/a/n", Expect::Revision(n.revision + 100), b"n2"),
            ])
            .await;
        assert_eq!(refused, Err(StoreError::Conflict));
        assert_eq!(store.get("virtualNode/a/m").await, Ok(None));
        let b = store.get("mesh/b").await.unwrap().unwrap();
        let r3 = store
            .commit(vec![
                put("virtualNode/a/m", Expect::Absent, b"m"),
                Write {
                    key: "virtualNode/a/n".into(),
                    expect: Expect::Revision(n.revision),
                    change: Change::Delete,
                },
                // Read and relied on, not written.
                Write {
                    key: "mesh/b".into(),
                    expect: Expect::Revision(b.revision),
                    change: Change::Check,
                },
            ])
            .await
            .unwrap();
        assert!(r3 > r2);
        assert_eq!(
            store
                .get("virtualNode/a/m")
                .await
                .unwrap()
                .unwrap()
                .revision,
            r3
        );
        assert_eq!(store.get("virtualNode/a/n").await, Ok(None));
        assert_eq!(
            store.get("mesh/b").await.unwrap().unwrap().revision,
            b.revision
        );
        // A commit that names a key twice is refused.
        assert!(matches!(
            store
                .commit(vec![
                    put("mesh/x", Expect::Absent, b"1"),
                    put("mesh/x", Expect::Absent, b"2"),
                ])
                .await,
            Err(StoreError::Backend(_))
        ));
        // A write outside the watched prefix is not reported.
        store
            .put("mesh/z", b"z".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let r4 = store
            .put("virtualNode/a/o", b"o".to_vec(), Expect::Absent)
            .await
            .unwrap();
        use futures_util::StreamExt;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(events.next().await.unwrap().unwrap());
        }
        seen.sort_by(|a, b| (a.revision, &a.key).cmp(&(b.revision, &b.key)));
        assert_eq!(
            seen,
            [
                Event {
                    key: "virtualNode/a/m".into(),
                    revision: r3,
                    value: Some(b"m".to_vec())
                },
                Event {
                    key: "virtualNode/a/n".into(),
                    revision: r3,
                    value: None
                },
                Event {
                    key: "virtualNode/a/o".into(),
                    revision: r4,
                    value: Some(b"o".to_vec())
                },
            ]
        );
    }
}
