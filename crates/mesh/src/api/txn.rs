//! A transaction of the API over the store: an operation (or a whole `ferry apply`)
//! reads through it, stages its writes in it, and commits them as one store commit.
//!
//! What an operation checked must still hold when it writes, in this process and
//! across replicas on one etcd: a route's targets still exist, nothing began to name
//! a node being deleted. Each mesh has a generation key (`generation/<mesh>`) that
//! every commit writing in the mesh rewrites, conditional on the revision the
//! transaction read first; so two transactions that write in one mesh cannot both
//! commit, whatever they listed, and the loser runs again on what the winner wrote
//! ([`super::Api::write`]). Each written key is conditional on what was read of it too.

use crate::store::{Change, Expect, Store, StoreError, Versioned, Write};
use std::collections::BTreeMap;

/// The key whose revision orders the commits that write in `mesh`.
fn generation_key(mesh: &str) -> String {
    format!("generation/{mesh}")
}

/// The mesh a key belongs to: `mesh/<mesh>` and `<kind>/<mesh>/...` alike.
fn mesh_of(key: &str) -> Option<&str> {
    key.split('/').nth(1)
}

/// A transaction: what it read (each key's revision, or absent), what it will write.
pub(super) struct Txn<'a> {
    store: &'a dyn Store,
    read: BTreeMap<String, Option<u64>>,
    /// Staged writes: a value, or `None` for a deletion.
    staged: BTreeMap<String, Option<Vec<u8>>>,
}

impl<'a> Txn<'a> {
    pub(super) fn new(store: &'a dyn Store) -> Txn<'a> {
        Txn {
            store,
            read: BTreeMap::new(),
            staged: BTreeMap::new(),
        }
    }

    /// The value at `key` as this transaction sees it (its own writes included). A
    /// staged value has revision 0 until it is committed.
    pub(super) async fn get(&mut self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.generation(key).await?;
        if let Some(staged) = self.staged.get(key) {
            return Ok(staged.as_ref().map(|value| Versioned {
                revision: 0,
                value: value.clone(),
            }));
        }
        let found = self.store.get(key).await?;
        self.read
            .entry(key.to_string())
            .or_insert(found.as_ref().map(|v| v.revision));
        Ok(found)
    }

    /// Every key starting with `prefix`, in key order, as this transaction sees them.
    pub(super) async fn list(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        self.generation(prefix).await?;
        let stored = self.store.list(prefix).await?;
        if self.staged.is_empty() {
            return Ok(stored);
        }
        let mut all: BTreeMap<String, Versioned> = stored.into_iter().collect();
        for (key, staged) in self.staged.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match staged {
                Some(value) => {
                    let v = Versioned {
                        revision: 0,
                        value: value.clone(),
                    };
                    all.insert(key.clone(), v);
                }
                None => {
                    all.remove(key);
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Stages a write of `value` at `key`.
    pub(super) async fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.touch(key).await?;
        self.staged.insert(key.to_string(), Some(value));
        Ok(())
    }

    /// Stages the deletion of `key`.
    pub(super) async fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.touch(key).await?;
        self.staged.insert(key.to_string(), None);
        Ok(())
    }

    /// Reads `key` if not read yet, so that the commit is conditional on it.
    async fn touch(&mut self, key: &str) -> Result<(), StoreError> {
        if !self.read.contains_key(key) && !self.staged.contains_key(key) {
            self.get(key).await?;
        }
        Ok(())
    }

    /// Reads the generation of the mesh of `key` (or prefix) before anything else of
    /// the mesh, if not read yet: a commit of another writer after this read makes
    /// this transaction's commit fail, whatever it read after.
    async fn generation(&mut self, key: &str) -> Result<(), StoreError> {
        let Some(mesh) = mesh_of(key).filter(|m| !m.is_empty()) else {
            return Ok(());
        };
        if key.starts_with("generation/") {
            return Ok(());
        }
        let generation = generation_key(mesh);
        if !self.read.contains_key(&generation) {
            let found = self.store.get(&generation).await?;
            self.read.insert(generation, found.map(|v| v.revision));
        }
        Ok(())
    }

    /// Whether no commit has written in the meshes this transaction read since it read
    /// them: what it read is one consistent view of each (a reader that must not mix
    /// two states checks this, and reads again if not).
    pub(super) async fn still_current(&self) -> Result<bool, StoreError> {
        for (key, revision) in self.read.range("generation/".to_string()..) {
            if !key.starts_with("generation/") {
                break;
            }
            let now = self.store.get(key).await?.map(|v| v.revision);
            if now != *revision {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits the staged writes (nothing when there are none): the store revision.
    pub(super) async fn commit(self) -> Result<Option<u64>, StoreError> {
        if self.staged.is_empty() {
            return Ok(None);
        }
        let expect = |key: &str| match self.read.get(key) {
            Some(Some(r)) => Expect::Revision(*r),
            _ => Expect::Absent,
        };
        let mut writes: Vec<Write> = self
            .staged
            .iter()
            .map(|(key, value)| Write {
                key: key.clone(),
                expect: expect(key),
                change: match value {
                    Some(v) => Change::Put(v.clone()),
                    None => Change::Delete,
                },
            })
            .collect();
        let mut meshes: Vec<&str> = self.staged.keys().filter_map(|k| mesh_of(k)).collect();
        meshes.sort_unstable();
        meshes.dedup();
        for mesh in meshes {
            let key = generation_key(mesh);
            // A deleted mesh takes its generation with it (a later one starts absent,
            // which orders its writers as well).
            let deleted = matches!(self.staged.get(&format!("mesh/{mesh}")), Some(None));
            writes.push(Write {
                expect: expect(&key),
                key,
                change: if deleted {
                    Change::Delete
                } else {
                    Change::Put(Vec::new())
                },
            });
        }
        self.store.commit(writes).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::embedded::Embedded;

    #[tokio::test]
    async fn two_transactions_writing_in_one_mesh_cannot_both_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb")).unwrap();
        store
            .put("mesh/m", b"m".to_vec(), Expect::Absent)
            .await
            .unwrap();
        // One deletes a node after checking that nothing names it; the other creates
        // a route naming it. Different keys; the mesh's generation orders them.
        store
            .put("virtualNode/m/n", b"n".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let mut a = Txn::new(&store);
        let mut b = Txn::new(&store);
        assert!(a.list("route/m/").await.unwrap().is_empty());
        assert!(b.get("virtualNode/m/n").await.unwrap().is_some());
        b.put("route/m/r/x", b"x".to_vec()).await.unwrap();
        b.commit().await.unwrap();
        // A's check is stale although it stages its write only now.
        a.delete("virtualNode/m/n").await.unwrap();
        assert_eq!(a.commit().await, Err(StoreError::Conflict));
        assert!(store.get("virtualNode/m/n").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_deleted_mesh_takes_its_generation_and_readers_see_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb")).unwrap();
        let mut t = Txn::new(&store);
        t.put("mesh/m", b"m".to_vec()).await.unwrap();
        t.commit().await.unwrap();
        assert!(store.get("generation/m").await.unwrap().is_some());
        let mut reader = Txn::new(&store);
        reader.list("virtualNode/m/").await.unwrap();
        assert!(reader.still_current().await.unwrap());
        let mut t = Txn::new(&store);
        t.delete("mesh/m").await.unwrap();
        t.commit().await.unwrap();
        assert!(store.get("generation/m").await.unwrap().is_none());
        assert!(!reader.still_current().await.unwrap());
    }

    #[tokio::test]
    async fn a_transaction_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb")).unwrap();
        store
            .put("virtualNode/m/a", b"a".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let mut t = Txn::new(&store);
        t.put("virtualNode/m/b", b"b".to_vec()).await.unwrap();
        t.delete("virtualNode/m/a").await.unwrap();
        let keys: Vec<String> = t
            .list("virtualNode/m/")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["virtualNode/m/b"]);
        assert!(t.get("virtualNode/m/a").await.unwrap().is_none());
        t.commit().await.unwrap();
        assert!(store.get("virtualNode/m/a").await.unwrap().is_none());
        assert!(store.get("virtualNode/m/b").await.unwrap().is_some());
    }
}
