//! What every source of the xDS client shares: the resources applied (one
//! [`Applied`], whichever stream or file they came from), the names the named
//! subscriptions (RDS, EDS) want and where each comes from, initialization, and the
//! TTLs of resources sent with one. Each update goes through [`Client::update`]; the
//! streams are told when something changed, so that they subscribe to what listeners
//! and clusters use now.

use super::apply::{apply, Applied, Update};
use super::stream::{self, Stream};
use super::{file, Init, ResourceType, Stats};
use crate::server::Server;
use ferry_config::dynamic::{ApiSource, ConfigSource};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The client.
pub(super) struct Client {
    pub(super) server: Arc<Server>,
    pub(super) stats: Stats,
    init: Arc<Init>,
    /// `ads_config`.
    ads: Option<ApiSource>,
    /// Where listeners and clusters come from (`lds_config`, `cds_config`).
    wildcard: Vec<(ResourceType, ConfigSource)>,
    state: parking_lot::Mutex<State>,
    /// Bumped after every update.
    changed: watch::Sender<u64>,
    /// Woken when a TTL is set.
    ttl_set: Notify,
}

#[derive(Default)]
struct State {
    applied: Applied,
    /// The wildcard types (LDS, CDS) of which a response came.
    came: HashSet<ResourceType>,
    /// When resources sent with a TTL expire, by type and name.
    expiry: HashMap<(ResourceType, String), Instant>,
    /// The sources started for named subscriptions.
    started: Vec<Started>,
}

/// A source started for a named type: a stream of its own, or a watched file.
#[derive(PartialEq)]
enum Started {
    Stream(ApiSource, ResourceType),
    File(PathBuf, ResourceType),
}

impl Client {
    pub(super) fn new(
        server: Arc<Server>,
        stats: Stats,
        init: Arc<Init>,
        ads: Option<ApiSource>,
        wildcard: Vec<(ResourceType, ConfigSource)>,
    ) -> Arc<Client> {
        Arc::new(Client {
            server,
            stats,
            init,
            ads,
            wildcard,
            state: Default::default(),
            changed: watch::channel(0).0,
            ttl_set: Notify::new(),
        })
    }

    /// Starts the sources of listeners and clusters (files are read now), of the named
    /// resources in use, the ADS stream, and the TTL timer.
    pub(super) fn start(self: &Arc<Self>) {
        for (t, source) in &self.wildcard {
            match source {
                ConfigSource::Ads { .. } => {}
                ConfigSource::Api { api, .. } => {
                    stream::spawn(self, Stream::Own(api.clone(), *t), api.clone())
                }
                ConfigSource::Path {
                    path,
                    watched_directory,
                } => file::start(self, *t, path.clone(), watched_directory.clone()),
            }
        }
        self.start_named();
        if let Some(ads) = &self.ads {
            stream::spawn(self, Stream::Ads, ads.clone());
        }
        tokio::spawn(expire(self.clone()));
    }

    /// The wildcard types `stream` carries.
    pub(super) fn wildcard(&self, stream: &Stream) -> Vec<ResourceType> {
        self.wildcard
            .iter()
            .filter(|(t, s)| stream.serves(*t, s))
            .map(|(t, _)| *t)
            .collect()
    }

    /// The names of a named type (RDS, EDS) that `stream` subscribes to now.
    pub(super) fn names(&self, stream: &Stream, t: ResourceType) -> Vec<String> {
        let state = self.state.lock();
        state
            .applied
            .wanted(&self.server, t)
            .into_iter()
            .filter(|(_, source)| stream.serves(t, source))
            .map(|(name, _)| name)
            .collect()
    }

    /// The version of each resource of `t` the client has.
    pub(super) fn versions(&self, t: ResourceType) -> HashMap<String, String> {
        self.server.dynamic_config.lock().versions(t)
    }

    /// Told when something changed (streams then look again at their names).
    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies an update of `t` at `version` (the response's), counts it, and sets the
    /// TTL of each resource in `ttls` (None: it has none). `Err`: the NACK's detail.
    pub(super) fn update(
        self: &Arc<Self>,
        t: ResourceType,
        version: &str,
        update: Update,
        ttls: Vec<(String, Option<Duration>)>,
    ) -> Result<(), String> {
        let sub = self.stats.of(t);
        if let Some(sub) = sub {
            sub.update_attempt.inc();
        }
        let result = self.apply(t, update, ttls);
        if let Some(sub) = sub {
            match &result {
                Ok(()) => {
                    sub.update_success.inc();
                    sub.version.set(super::version_hash(version));
                    sub.update_time.set(super::now_ms());
                }
                Err(_) => sub.update_rejected.inc(),
            }
        }
        if let Err(detail) = &result {
            tracing::warn!(
                type_url = t.type_url(),
                version,
                "xDS update rejected: {detail}"
            );
        }
        result
    }

    /// Applies an update (not counted: an expired TTL's removal goes here alone), then
    /// tells the streams and starts the sources of new names.
    fn apply(
        self: &Arc<Self>,
        t: ResourceType,
        update: Update,
        ttls: Vec<(String, Option<Duration>)>,
    ) -> Result<(), String> {
        let result = {
            let mut state = self.state.lock();
            self.apply_locked(&mut state, t, update, ttls)
        };
        self.applied();
        result
    }

    fn apply_locked(
        &self,
        state: &mut State,
        t: ResourceType,
        update: Update,
        ttls: Vec<(String, Option<Duration>)>,
    ) -> Result<(), String> {
        let outcome = apply(&self.server, t, &update, &mut state.applied);
        if outcome.changed && t == ResourceType::Cluster {
            let reload = &self.stats.cds_reload;
            reload.config_reload.inc();
            reload.config_reload_time_ms.set(super::now_ms());
        }
        let result = outcome.result;
        state.applied.count_warming(&self.server);
        let now = Instant::now();
        for name in update.removed {
            state.expiry.remove(&(t, name));
        }
        for (name, ttl) in ttls {
            match ttl {
                Some(ttl) => state.expiry.insert((t, name), now + ttl),
                None => state.expiry.remove(&(t, name)),
            };
        }
        self.initialized(state, t);
        result
    }

    /// After an update: the TTL timer, the streams and the named sources are told.
    fn applied(self: &Arc<Self>) {
        self.ttl_set.notify_one();
        self.changed.send_modify(|g| *g += 1);
        self.start_named();
    }

    /// A response of `t` refused whole before it could be applied (it cannot be
    /// decoded, or breaks a rule of the protocol): counted, and it ends `t`'s part of
    /// initialization as an applied one would.
    pub(super) fn refused(&self, t: ResourceType) {
        if let Some(sub) = self.stats.of(t) {
            sub.update_attempt.inc();
            sub.update_rejected.inc();
        }
        let mut state = self.state.lock();
        self.initialized(&mut state, t);
    }

    /// Removes the resources whose TTL has run out, checked under the lock that
    /// removes them (a resource refreshed meanwhile stays).
    fn expire_due(self: &Arc<Self>) {
        let now = Instant::now();
        {
            let mut state = self.state.lock();
            let due: Vec<(ResourceType, String)> = state
                .expiry
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for (t, name) in due {
                tracing::info!(
                    type_url = t.type_url(),
                    name,
                    "xDS: the resource's TTL ran out"
                );
                state.expiry.remove(&(t, name.clone()));
                let removal = Update {
                    removed: vec![name],
                    ..Default::default()
                };
                let _ = self.apply_locked(&mut state, t, removal, Vec::new());
            }
        }
        self.applied();
    }

    /// Refreshes the TTLs of resources a heartbeat names (those the client has).
    pub(super) fn refresh(&self, t: ResourceType, ttls: Vec<(String, Option<Duration>)>) {
        let mut state = self.state.lock();
        let now = Instant::now();
        for (name, ttl) in ttls {
            if let (Some(ttl), Some(at)) = (ttl, state.expiry.get_mut(&(t, name))) {
                *at = now + ttl;
            }
        }
    }

    /// An update of `t` that could not be read (a file source).
    pub(super) fn failed(&self, t: ResourceType) {
        if let Some(sub) = self.stats.of(t) {
            sub.update_attempt.inc();
            sub.update_failure.inc();
        }
    }

    /// Tells initialization what came: listeners and clusters count once none is
    /// warming; route configurations and assignments once every one in use has come.
    fn initialized(&self, state: &mut State, t: ResourceType) {
        if t.wildcard() {
            state.came.insert(t);
        }
        for t in [ResourceType::Cluster, ResourceType::Listener] {
            if state.came.contains(&t) && !state.applied.warming(t) {
                self.init.received(t);
            }
        }
        for t in [
            ResourceType::RouteConfiguration,
            ResourceType::ClusterLoadAssignment,
        ] {
            if state.applied.complete(&self.server, t) {
                self.init.received(t);
            }
        }
    }

    /// Starts the sources that route configurations and assignments in use come from
    /// and that are not running yet: a stream of their own, or a watched file (ADS
    /// carries the others).
    fn start_named(self: &Arc<Self>) {
        let mut wanted = Vec::new();
        {
            let mut state = self.state.lock();
            for t in [
                ResourceType::RouteConfiguration,
                ResourceType::ClusterLoadAssignment,
            ] {
                for (_, source) in state.applied.wanted(&self.server, t) {
                    let started = match &source {
                        ConfigSource::Ads { .. } => continue,
                        ConfigSource::Api { api, .. } => Started::Stream(api.clone(), t),
                        ConfigSource::Path { path, .. } => Started::File(path.clone(), t),
                    };
                    if !state.started.contains(&started) {
                        state.started.push(started);
                        wanted.push((t, source));
                    }
                }
            }
        }
        for (t, source) in wanted {
            match source {
                ConfigSource::Api { api, .. } => {
                    stream::spawn(self, Stream::Own(api.clone(), t), api)
                }
                ConfigSource::Path {
                    path,
                    watched_directory,
                } => file::start(self, t, path, watched_directory),
                ConfigSource::Ads { .. } => {}
            }
        }
    }
}

/// Removes the resources whose TTL ran out (as if the control plane had removed them),
/// for the life of the client.
async fn expire(client: Arc<Client>) {
    loop {
        let set = client.ttl_set.notified();
        let next = client.state.lock().expiry.values().min().copied();
        match next {
            Some(at) if at > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = set => continue,
                }
            }
            Some(_) => {}
            None => {
                set.await;
                continue;
            }
        }
        if client.server.is_draining() {
            return;
        }
        client.expire_due();
    }
}
