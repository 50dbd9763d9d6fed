//! App Mesh's REST API (service `appmesh`, API version 2019-01-25): the same paths
//! (`/v20190125/meshes/...`), the same request and response JSON, the same errors (an
//! HTTP status, the code in `x-amzn-ErrorType`, `{"message": ...}`), so that the AWS
//! CLI and SDKs drive it with `--endpoint-url`. Who may call is [`auth`]'s: anyone by
//! default (as local AWS emulators; the API listens on loopback unless told otherwise),
//! else SigV4 signatures by configured keys and bearer tokens.
//!
//! The mesh's operations are in [`meshes`], those of the resources of a mesh (one
//! set for every kind) in [`resources`], the tag operations in [`tags`]; this module
//! routes a request to its operation and writes the response.

pub mod auth;
mod ferry;
mod instances;
mod meshes;
mod resources;
mod tags;
mod txn;

use crate::model::kind::{Kind, Place};
use crate::model::mesh::{CreateMesh, MeshData, UpdateMesh};
use crate::model::{Account, TagRef};
use crate::store::{Store, StoreError};
use crate::ApiError;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use txn::Txn;

/// The largest request body taken (App Mesh's specs are a few KiB).
pub const MAX_BODY: usize = 1 << 20;

/// How long a client may take to send a request's head (at most the client timeout).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body, by default.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The path prefix of App Mesh's API version.
const PREFIX: &str = "/v20190125/";

/// The path prefix of ferrymesh's own operations ([`ferry`]).
const FERRY_PREFIX: &str = "/ferry/v1/";

/// The API: its store and the account its ARNs name.
pub struct Api {
    store: Arc<dyn Store>,
    account: Account,
    auth: auth::Auth,
    /// How long a client may take to send a request's body (and, up to 10 s, its head).
    client_timeout: Duration,
    /// Held by every operation that writes, from its first read to its commit: one
    /// writer at a time in this process, so that its writers do not make each other
    /// run again ([`Api::write`]; transactions keep replicas consistent, see [`txn`]).
    writes: tokio::sync::Mutex<()>,
    /// What this process's watch of the store has seen (what other replicas wrote
    /// included): for `ferry status`, and what the xDS server will follow.
    watched: Watched,
}

/// What the watch of the store has seen.
#[derive(Default)]
struct Watched {
    /// The revision of the last change.
    revision: AtomicU64,
    /// How many changes.
    events: AtomicU64,
    /// How many times the watch was started again (after an error).
    restarts: AtomicU64,
}

/// A stored resource: its data as the API returns it, its tags, and the client token
/// of the create that made it (a create sent again with it is the same create).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored<D> {
    data: D,
    #[serde(default)]
    tags: Vec<TagRef>,
    #[serde(default)]
    client_token: Option<String>,
    /// The client token of the update that made it as it is (an update sent again
    /// with it is the same update: answered, not applied again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update_token: Option<String>,
}

impl<D: Serialize + serde::de::DeserializeOwned> Stored<D> {
    fn encode(&self) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(self).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn decode(bytes: &[u8]) -> Result<Stored<D>, ApiError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::internal(format!("a stored resource cannot be read: {e}")))
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict => {
            ApiError::conflict("the resource was changed by another writer of the store")
        }
        StoreError::Backend(e) => ApiError::internal(e),
        StoreError::Limit(e) => ApiError::limit_exceeded(e),
    }
}

/// How many times an operation runs when other replicas' commits keep winning.
const WRITE_ATTEMPTS: usize = 8;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An operation that writes, as [`Api::write`] runs it.
enum Op<'a> {
    CreateMesh(&'a CreateMesh),
    UpdateMesh(&'a str, &'a UpdateMesh),
    DeleteMesh(&'a str),
    Create(&'a Kind, Place<'a>, &'a Map<String, Value>),
    Update(&'a Kind, Place<'a>, &'a str, &'a Map<String, Value>),
    Delete(&'a Kind, Place<'a>, &'a str),
    Retag(&'a str, &'a str, &'a tags::TagChange),
    Apply(&'a ferry::ApplyInput),
    Register(
        &'a str,
        &'a str,
        &'a str,
        &'a crate::model::instance::Instance,
    ),
    Deregister(&'a str, &'a str, &'a str),
}

impl Api {
    /// Runs `op` in `txn`.
    async fn run(&self, txn: &mut Txn<'_>, op: &Op<'_>) -> Result<Value, ApiError> {
        let value =
            |v: &MeshData| serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()));
        match *op {
            Op::CreateMesh(input) => value(&self.create_mesh(txn, input).await?),
            Op::UpdateMesh(name, input) => value(&self.update_mesh(txn, name, input).await?),
            Op::DeleteMesh(name) => value(&self.delete_mesh(txn, name).await?),
            Op::Create(kind, ref place, members) => self.create(txn, kind, place, members).await,
            Op::Update(kind, ref place, name, members) => {
                self.update(txn, kind, place, name, members).await
            }
            Op::Delete(kind, ref place, name) => self.delete(txn, kind, place, name).await,
            Op::Apply(input) => self.apply(txn, input).await,
            Op::Register(mesh, node, id, instance) => {
                self.register(txn, mesh, node, id, instance).await
            }
            Op::Deregister(mesh, node, id) => self.deregister(txn, mesh, node, id).await,
            Op::Retag(key, arn, change) => {
                tags::retag(txn, key, arn, change).await?;
                Ok(Value::Object(Map::new()))
            }
        }
    }
}

/// A request as the operations take it.
struct Call<'a> {
    method: &'a Method,
    /// The path's segments after the version prefix, percent-decoded.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl Call<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Api {
    /// The API over `store`, naming resources in `account`, taking the callers `auth`
    /// takes, and waiting `client_timeout` at most for a request's body.
    pub fn new(
        store: Arc<dyn Store>,
        account: Account,
        auth: auth::Auth,
        client_timeout: Duration,
    ) -> Arc<Api> {
        Arc::new(Api {
            store,
            account,
            auth,
            client_timeout,
            writes: tokio::sync::Mutex::new(()),
            watched: Watched::default(),
        })
    }

    /// Runs `op` in a transaction and commits what it wrote: the operation's output.
    /// Runs it again on what another replica committed meanwhile in the same mesh (its
    /// checks may no longer hold), a few times, before it answers a conflict.
    async fn write(&self, op: &Op<'_>) -> Result<Value, ApiError> {
        let _write = self.writes.lock().await;
        let mut attempt = 1;
        loop {
            let mut txn = Txn::new(&*self.store);
            let mut out = self.run(&mut txn, op).await?;
            if matches!(op, Op::Apply(input) if input.dry_run) {
                return Ok(out);
            }
            match txn.commit().await {
                Ok(revision) => {
                    if let (Op::Apply(_), Some(r)) = (op, revision) {
                        out["revision"] = r.into();
                    }
                    return Ok(out);
                }
                Err(StoreError::Conflict) if attempt < WRITE_ATTEMPTS => {
                    // Replicas that keep meeting on one mesh spread out.
                    let jitter = rand::random_range(1..=5 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    attempt += 1;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// Follows the store's changes for as long as the task runs, watching again
    /// after an error.
    async fn follow(self: Arc<Self>) {
        use futures_util::StreamExt;
        loop {
            match self.store.watch("").await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(e) => {
                                self.watched
                                    .revision
                                    .fetch_max(e.revision, Ordering::Relaxed);
                                self.watched.events.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::warn!("control plane: the store's watch ended: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("control plane: cannot watch the store: {e}"),
            }
            self.watched.restarts.fetch_add(1, Ordering::Relaxed);
            // Back-off before watching again.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Serves the API on `listener`, for as long as the task runs (connections already
    /// open finish on their own); follows the store's changes meanwhile.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let follower = tokio::spawn(self.clone().follow());
        let _stop_following = AbortOnDrop(follower);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("control plane API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let api = self.clone();
            let api_timeout = self.client_timeout;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT.min(api_timeout))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY).collect();
        let body = match tokio::time::timeout(self.client_timeout, body).await {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => {
                let message = format!(
                    "the request body did not arrive within {:?}",
                    self.client_timeout
                );
                return error(&ApiError::bad_request(message));
            }
            Ok(Err(e)) => {
                let message =
                    format!("the request body cannot be read (at most {MAX_BODY} bytes): {e}");
                return error(&ApiError::bad_request(message));
            }
        };
        if let Err(e) = self.auth.check(&parts, &body) {
            return error(&e);
        }
        let uri_path = parts.uri.path();
        let (ours, path) = match (
            uri_path.strip_prefix(PREFIX),
            uri_path.strip_prefix(FERRY_PREFIX),
        ) {
            (Some(path), _) => (false, path),
            (None, Some(path)) => (true, path),
            (None, None) => {
                return error(&ApiError::not_found(format!("no operation at {uri_path}")))
            }
        };
        let call = Call {
            method: &parts.method,
            segments: path.split('/').map(|s| percent_decode(s, false)).collect(),
            query: parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
            body,
        };
        let result = match call.segments.first().map(String::as_str) {
            _ if ours => self.ferry(&call).await,
            _ if call.query("meshOwner").is_some() => match self.mesh_owner(&call) {
                Err(e) => Err(e),
                Ok(()) if call.segments.len() > 2 => self.in_mesh(&call).await,
                Ok(()) => self.meshes(&call).await,
            },
            Some("meshes") if call.segments.len() > 2 => self.in_mesh(&call).await,
            Some("meshes") => self.meshes(&call).await,
            Some("tag" | "untag" | "tags") => self.tags(&call).await,
            _ => Err(ApiError::not_found(format!(
                "no operation at {}",
                parts.uri.path()
            ))),
        };
        match result {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => error(&e),
        }
    }
}

impl Api {
    /// Checks a `meshOwner` (a shared mesh's account) on a mesh's operations: this
    /// control plane holds one account's meshes, so another account's mesh does not
    /// exist here.
    fn mesh_owner(&self, call: &Call<'_>) -> Result<(), ApiError> {
        let owner = call.query("meshOwner").unwrap_or_default();
        if call.segments.first().map(String::as_str) != Some("meshes") {
            return Err(ApiError::bad_request(
                "meshOwner: only on the operations of a mesh",
            ));
        }
        if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(format!(
                "meshOwner: an account id of 12 digits, not {owner:?}"
            )));
        }
        if owner != self.account.id {
            let mesh = call.segments.get(1).map_or("", String::as_str);
            return Err(ApiError::not_found(format!(
                "mesh {mesh} of account {owner} does not exist here (this control plane holds account {}'s meshes)",
                self.account.id
            )));
        }
        Ok(())
    }
}

/// Stored entries, in key order.
type Entries<'a> = &'a [(String, crate::store::Versioned)];

/// A list operation's `limit` (1–`max`, default `max`).
fn limit(call: &Call<'_>, max: usize) -> Result<usize, ApiError> {
    match call.query("limit") {
        None => Ok(max),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit: must be a number from 1 to {max}, not {l:?}"
            ))),
        },
    }
}

/// One page of a list operation over `all` (in key order), whose `nextToken` is the
/// name listed last and `key` makes a name a key: the entries after that key, at most
/// `limit` (1–100, default 100), and whether more follow.
fn page<'a>(
    call: &Call<'_>,
    all: Entries<'a>,
    key: impl Fn(&str) -> String,
) -> Result<(Entries<'a>, bool), ApiError> {
    let limit = limit(call, 100)?;
    let start = match call.query("nextToken") {
        Some(t) => {
            let after = key(t);
            all.partition_point(|(k, _)| *k <= after)
        }
        None => 0,
    };
    let rest = &all[start..];
    Ok((&rest[..rest.len().min(limit)], rest.len() > limit))
}

/// A response body.
fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = http::HeaderValue::from_str(&crate::model::request_id()) {
        headers.insert("x-amzn-RequestId", id);
    }
    resp
}

/// An error as App Mesh writes it.
fn error(e: &ApiError) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": e.message }).to_string();
    let mut resp = json(e.status, body.into_bytes());
    resp.headers_mut()
        .insert("x-amzn-ErrorType", http::HeaderValue::from_static(e.code));
    resp
}

/// `%XX` decoded (and, in a query, `+` as a space).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz", true), "%zz");
    }
}
