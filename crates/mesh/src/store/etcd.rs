//! The etcd store, for several control-plane replicas: every replica reads and writes
//! the same etcd cluster (v3 API, through the `etcd-client` crate). A resource's
//! revision is its etcd `mod_revision`; a commit is one etcd transaction whose
//! comparisons are the writes' expectations (`version == 0` for an absent key,
//! `mod_revision == r` for one read at `r`), so two replicas never both win; a watch is
//! an etcd watch, so what one replica commits reaches the others as it is made.
//!
//! Keys live under a prefix (`--etcd-prefix`, default `/ferrymesh/`), so that several
//! meshes' control planes, or tests, can share a cluster.

use super::{check_writes, Change, Event, Events, Expect, Store, StoreError, Versioned, Write};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchOptions,
};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::time::Duration;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/ferrymesh/";

/// How long a request to etcd may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The store on an etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: Vec<String>,
    prefix: String,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

/// etcd's revisions are positive `i64`s.
fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

impl Etcd {
    /// Connects to the cluster at `endpoints` (`http://127.0.0.1:2379`, …), keeping keys
    /// under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Etcd, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Backend(
                "etcd: no endpoints (--etcd-endpoints)".into(),
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(TIMEOUT)
            .with_timeout(TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(backend)?;
        // A prefix ends with `/`, so that `/fm/` is not also `/fm2/`'s.
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let store = Etcd {
            client,
            endpoints: endpoints.to_vec(),
            prefix,
        };
        // Refuse at start, not at the first request, a cluster that does not answer.
        store.get("mesh/").await?;
        Ok(store)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The key without the prefix.
    fn short(&self, key: &[u8]) -> Result<String, StoreError> {
        let key = std::str::from_utf8(key).map_err(backend)?;
        key.strip_prefix(self.prefix.as_str())
            .map(str::to_string)
            .ok_or_else(|| backend(format!("a key outside {}: {key}", self.prefix)))
    }
}

impl Store for Etcd {
    fn describe(&self) -> String {
        format!("etcd {} (prefix {})", self.endpoints.join(","), self.prefix)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            let resp = kv.get(self.full(key), None).await.map_err(backend)?;
            Ok(resp.kvs().first().map(|kv| Versioned {
                revision: revision(kv.mod_revision()),
                value: kv.value().to_vec(),
            }))
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Versioned)>, StoreError>> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            let resp = kv
                .get(self.full(prefix), Some(options))
                .await
                .map_err(backend)?;
            resp.kvs()
                .iter()
                .map(|kv| {
                    let versioned = Versioned {
                        revision: revision(kv.mod_revision()),
                        value: kv.value().to_vec(),
                    };
                    Ok((self.short(kv.key())?, versioned))
                })
                .collect()
        })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            check_writes(&writes)?;
            let mut compares = Vec::with_capacity(writes.len());
            let mut ops = Vec::with_capacity(writes.len());
            for w in &writes {
                let key = self.full(&w.key);
                compares.push(match w.expect {
                    Expect::Absent => Compare::version(key.clone(), CompareOp::Equal, 0),
                    Expect::Revision(r) => {
                        let r = i64::try_from(r).map_err(backend)?;
                        Compare::mod_revision(key.clone(), CompareOp::Equal, r)
                    }
                });
                match &w.change {
                    Change::Put(value) => ops.push(TxnOp::put(key, value.clone(), None)),
                    Change::Delete => ops.push(TxnOp::delete(key, None)),
                    Change::Check => {}
                }
            }
            let txn = Txn::new().when(compares).and_then(ops);
            let resp = self.client.kv_client().txn(txn).await.map_err(|e| {
                let message = e.to_string();
                if message.contains("too many operations") {
                    StoreError::Limit(format!(
                        "etcd takes fewer operations in one transaction than the {} this one needs: raise etcd's --max-txn-ops (default 128)",
                        writes.len()
                    ))
                } else {
                    backend(message)
                }
            })?;
            if !resp.succeeded() {
                return Err(StoreError::Conflict);
            }
            let header = resp
                .header()
                .ok_or_else(|| backend("a transaction's answer without its header"))?;
            Ok(revision(header.revision()))
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Events, StoreError>> {
        Box::pin(async move {
            let mut client = self.client.watch_client();
            let options = WatchOptions::new().with_prefix();
            let mut stream = client
                .watch(self.full(prefix), Some(options))
                .await
                .map_err(backend)?;
            // The watch counts from its creation, which etcd confirms first.
            match stream.message().await.map_err(backend)? {
                Some(resp) if resp.created() => {}
                _ => return Err(backend("the watch was not created")),
            }
            let this = self.clone();
            let responses = futures_util::stream::unfold(Some(stream), |stream| async move {
                let mut stream = stream?;
                match stream.message().await {
                    Ok(Some(resp)) if resp.canceled() => {
                        let why = format!("the watch was cancelled: {}", resp.cancel_reason());
                        Some((Err(backend(why)), None))
                    }
                    Ok(Some(resp)) => Some((Ok(resp), Some(stream))),
                    Ok(None) => Some((Err(backend("the watch ended")), None)),
                    Err(e) => Some((Err(backend(e)), None)),
                }
            });
            let events = responses.flat_map(move |resp| {
                let events: Vec<Result<Event, StoreError>> = match resp {
                    Ok(resp) => resp
                        .events()
                        .iter()
                        .filter_map(|e| {
                            let kv = e.kv()?;
                            // A deletion's key has version 0, a put's 1 or more (read
                            // so, not by `event_type`, which panics on a type it does
                            // not know).
                            let value = (kv.version() > 0).then(|| kv.value().to_vec());
                            Some(this.short(kv.key()).map(|key| Event {
                                key,
                                revision: revision(kv.mod_revision()),
                                value,
                            }))
                        })
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(events)
            });
            Ok(events.boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The conformance suite on a real etcd (Debian's `etcd-server`, which the test
    /// command installs), started for the test on free loopback ports.
    #[tokio::test]
    async fn the_etcd_store_conforms() {
        let etcd = ferry_test_util::etcd::Etcd::start();
        let store = Etcd::connect(&[etcd.url()], "/conformance/").await.unwrap();
        super::super::conformance::run(&store).await;
        // Another prefix on the same cluster sees none of it.
        let other = Etcd::connect(&[etcd.url()], "/other/").await.unwrap();
        assert!(other.list("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_commit_larger_than_etcd_takes_is_a_limit_named() {
        let etcd = ferry_test_util::etcd::Etcd::start_with(&["--max-txn-ops", "4"]);
        let store = Etcd::connect(&[etcd.url()], "/limit").await.unwrap();
        let writes = (0..5)
            .map(|i| Write {
                key: format!("mesh/m{i}"),
                expect: Expect::Absent,
                change: Change::Put(b"m".to_vec()),
            })
            .collect();
        match store.commit(writes).await {
            Err(StoreError::Limit(e)) => assert!(e.contains("--max-txn-ops"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The prefix got its `/`.
        assert!(store.describe().ends_with("(prefix /limit/)"));
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_an_error_at_start() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let Err(e) = Etcd::connect(&[url], DEFAULT_PREFIX).await else {
            panic!("connected to nothing");
        };
        assert!(e.to_string().contains("etcd"), "{e}");
    }
}
