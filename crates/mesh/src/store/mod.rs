//! Where the control plane keeps its resources: one [`Store`] trait — keys to values,
//! each value with the revision it was written at, writes conditional on the revision
//! the writer read (optimistic concurrency) — and its implementations: [`embedded`]
//! (a durable, transactional file, the default).
//!
//! Keys: `mesh/<name>` for meshes; the resources of a mesh `<kind>/<mesh>/<name>`, and
//! those that live in another `<kind>/<mesh>/<parent>/<name>` (a route:
//! `route/<mesh>/<router>/<name>`).

pub mod embedded;

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
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("the resource changed meanwhile"),
            StoreError::Backend(e) => write!(f, "store: {e}"),
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

/// The store.
pub trait Store: Send + Sync {
    /// The value at `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>>;

    /// Every key starting with `prefix`, in key order, with its value.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Versioned)>, StoreError>>;

    /// Writes `value` at `key` if the key is as `expect` says; the new revision.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expect: Expect,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Deletes `key` if it is at `revision`.
    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<(), StoreError>>;
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
    }
}
