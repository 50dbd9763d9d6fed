//! Reading access log files that proxies write while a test runs.

use std::path::Path;
use std::time::Duration;

/// The file's lines (none if it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The file's lines once `done` holds for them (None after `deadline`).
pub async fn lines_until(
    path: &Path,
    deadline: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Option<Vec<String>> {
    crate::admin::poll(deadline, || async {
        let l = lines(path);
        done(&l).then_some(l)
    })
    .await
}

/// The file's lines once it has at least `n` of them (or whatever it has after 10 s).
pub async fn lines_when(path: &Path, n: usize) -> Vec<String> {
    lines_until(path, Duration::from_secs(10), |l| l.len() >= n)
        .await
        .unwrap_or_else(|| lines(path))
}
