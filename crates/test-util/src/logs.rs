//! Reading access log files that proxies write while a test runs.

use std::path::Path;
use std::time::Duration;

/// The file's lines once it has at least `n` of them (or whatever it has after 10 s).
pub async fn lines_when(path: &Path, n: usize) -> Vec<String> {
    let read = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    crate::admin::poll(Duration::from_secs(10), || async {
        let lines = read();
        (lines.len() >= n).then_some(lines)
    })
    .await
    .unwrap_or_else(read)
}
