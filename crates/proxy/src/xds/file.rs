//! File config sources (`path_config_source`, or the deprecated `path`): a file holding
//! a `DiscoveryResponse` (YAML, or JSON for `.json`), read at start and again each time
//! a file is moved into place (an atomic rename, as Envoy watches it; with
//! `watched_directory`, any move into that directory). Each version is applied as a
//! state-of-the-world response (for route configurations and assignments, those the
//! file holds); a bad one is refused (logged and counted), the last good config
//! staying in force. The same content read again (a move can bring several events) is
//! not applied again.

use super::apply::Update;
use super::client::Client;
use super::ResourceType;
use ferry_envoy_api::pb::envoy::service::discovery::v3::DiscoveryResponse;
use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads `path` for resources of type `t` now, then each time it is moved into place.
pub(super) fn start(
    client: &Arc<Client>,
    t: ResourceType,
    path: PathBuf,
    watched_directory: Option<PathBuf>,
) {
    let mut last = load(client, t, &path, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let name = path.file_name().map(|n| n.to_os_string());
    let directory = watched_directory.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let moved_in = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                | EventKind::Create(_)
        );
        let ours = directory.is_some()
            || event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if moved_in && ours {
            let _ = tx.send(());
        }
    };
    let watched = watched_directory
        .clone()
        .or_else(|| path.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&watched, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(path = %watched.display(), "xDS file source: cannot watch: {e}");
            return;
        }
    };
    let client = client.clone();
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Several events of one move come together: read once.
            while rx.try_recv().is_ok() {}
            if client.server.is_draining() {
                return;
            }
            last = load(&client, t, &path, last.take());
        }
    });
}

/// Reads the file and applies it, unless it holds what was read `last` (one move can
/// bring several events); what it read.
fn load(
    client: &Arc<Client>,
    t: ResourceType,
    path: &Path,
    last: Option<String>,
) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(path = %path.display(), "xDS file source: cannot read: {e}");
            client.failed(t);
            return last;
        }
    };
    if last.as_ref() == Some(&text) {
        return last;
    }
    let response = match decode(path, &text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), "xDS file source: {e}");
            client.failed(t);
            return Some(text);
        }
    };
    let update = Update {
        resources: response
            .resources
            .into_iter()
            .map(|any| (response.version_info.clone(), any))
            .collect(),
        complete: true,
        ..Default::default()
    };
    if let Err(detail) = client.update(t, &response.version_info, update, Vec::new()) {
        tracing::warn!(path = %path.display(), "xDS file source: update rejected: {detail}");
    }
    Some(text)
}

fn decode(path: &Path, text: &str) -> Result<DiscoveryResponse, String> {
    let format = if path.extension().is_some_and(|e| e == "json") {
        ferry_envoy_api::Format::Json
    } else {
        ferry_envoy_api::Format::Yaml
    };
    ferry_envoy_api::decode_message(text, format, "envoy.service.discovery.v3.DiscoveryResponse")
        .map(|d| d.message)
        .map_err(|e| e.to_string())
}
