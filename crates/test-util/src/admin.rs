//! Reading a running proxy's admin endpoint (ferry or Envoy alike), and waiting on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::proc::admin_get;

/// Every stat of admin `/stats` (`name: value` lines; histograms skipped).
pub async fn stats(admin_port: u16) -> BTreeMap<String, u64> {
    let body = admin_get(admin_port, "/stats")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One stat (0 when absent).
pub async fn stat(admin_port: u16, name: &str) -> u64 {
    stats(admin_port).await.get(name).copied().unwrap_or(0)
}

/// The value of `<cluster>::<host>::<field>` in admin `/clusters` (e.g. `health_flags`).
pub async fn host_field(admin_port: u16, cluster: &str, host: &str, field: &str) -> Option<String> {
    let body = admin_get(admin_port, "/clusters").await.ok()?.1;
    let prefix = format!("{cluster}::{host}::{field}::");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Calls `probe` until it returns Some, every 50 ms, for at most `deadline`; returns the
/// last attempt's value (None if the deadline passed).
pub async fn poll<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        // The poll interval of a condition wait, not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stat once `pred` holds for it (polled for up to 10 s); its last value otherwise.
pub async fn stat_when(admin_port: u16, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
    let found = poll(Duration::from_secs(10), || async {
        let v = stat(admin_port, name).await;
        pred(v).then_some(v)
    })
    .await;
    match found {
        Some(v) => v,
        None => stat(admin_port, name).await,
    }
}
