//! The server: starts listeners and admin for a snapshot, drains on request.

use crate::listener::{ActiveListener, ListenerRuntime};
use crate::Snapshot;
use arc_swap::ArcSwap;
use ferry_config::Loaded;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The longest start-up waits for a cluster's first host set.
const CLUSTER_WARMING_LIMIT: Duration = Duration::from_secs(15);

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--service-node`: overrides `node.id`.
    pub service_node: Option<String>,
    /// `--service-cluster`: overrides `node.cluster`.
    pub service_cluster: Option<String>,
    /// `--drain-time-s`: how long in-flight work may take after a drain starts.
    pub drain_time: Duration,
    /// Worker threads the process runs (for `/server_info`).
    pub concurrency: usize,
    /// The allocator's view of memory (`server.memory_*`, admin `/memory`).
    pub memory: Option<fn() -> crate::stats::Memory>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            service_node: None,
            service_cluster: None,
            drain_time: Duration::from_secs(600),
            concurrency: 1,
            memory: None,
        }
    }
}

/// Shared state of a running server.
pub struct Server {
    /// The current snapshot (static config: set once).
    pub snapshot: ArcSwap<Snapshot>,
    /// Options it was started with.
    pub options: ServerOptions,
    /// The listeners being served (each replaceable alone).
    listeners: parking_lot::Mutex<Vec<ActiveListener>>,
    /// The admin address, if any.
    pub admin_addr: Option<SocketAddr>,
    /// Every stat of the process, for admin `/stats`.
    pub stats: Arc<ferry_stats::Store>,
    /// `server.*`.
    pub server_stats: Arc<crate::stats::ServerStats>,
    /// How stats are listed: tags and the stats matcher of `stats_config`.
    pub stats_view: StatsView,
    /// `cluster_manager.*` and `listener_manager.*` (owned here: the store holds
    /// groups weakly).
    _manager_stats: (
        Arc<crate::stats::ClusterManagerStats>,
        Arc<crate::stats::ListenerManagerStats>,
    ),
    /// Set by `/healthcheck/fail`.
    pub health_failed: Arc<AtomicBool>,
    /// When the server started.
    pub started: Instant,
    /// Draining: listeners stop accepting, connections close when idle.
    drain_tx: watch::Sender<bool>,
    /// Shutdown requested (`/quitquitquit`, SIGTERM after drain).
    shutdown: Notify,
    shutdown_requested: AtomicBool,
    /// Open downstream connections.
    pub(crate) active_connections: AtomicUsize,
    pub(crate) connections_closed: Notify,
    /// Envoy's INITIALIZING: the first xDS responses (or their `initial_fetch_timeout`)
    /// are awaited; `/ready` answers 503 meanwhile.
    initializing: AtomicBool,
    /// What the xDS client applied or holds warming (for `/config_dump`).
    pub(crate) dynamic_config: parking_lot::Mutex<crate::xds::dump::DynamicConfig>,
}

/// How stats are listed and sent (from `stats_config`).
#[derive(Debug)]
pub struct StatsView {
    /// Tag extraction (Prometheus, DogStatsD).
    pub tags: ferry_stats::tags::TagProducer,
    /// `stats_matcher`: the stats that exist.
    pub matcher: ferry_config::stats::StatsMatcher,
}

impl StatsView {
    fn new(c: &ferry_config::stats::Stats) -> Result<StatsView, String> {
        use ferry_config::stats::TagValue;
        use ferry_stats::tags::{Custom, Extractor};
        let mut custom = Vec::new();
        for (name, v) in &c.tags {
            custom.push(match v {
                TagValue::Fixed(value) => Custom::Extractor(Extractor::fixed(name, value)),
                TagValue::Regex(r) => Custom::Extractor(Extractor::regex(name, r)?),
                TagValue::Default => Custom::DefaultOf(name.clone()),
            });
        }
        Ok(StatsView {
            tags: ferry_stats::tags::TagProducer::new(custom, c.use_all_default_tags)?,
            matcher: c.matcher.clone(),
        })
    }
}

impl Server {
    /// Every stat the stats matcher keeps, with the computed `server.*` gauges fresh.
    pub fn stats_snapshot(&self) -> std::collections::BTreeMap<String, ferry_stats::Value> {
        refresh_server(self);
        let mut all = self.stats.snapshot();
        if !matches!(
            self.stats_view.matcher,
            ferry_config::stats::StatsMatcher::All
        ) {
            all.retain(|name, _| self.stats_view.matcher.accepts(name));
        }
        all
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("bound", &self.bound())
            .finish()
    }
}

/// Error starting a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener or the admin address could not be bound.
    #[error("cannot bind {name} to {addr}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config needs something the command line did not give either.
    #[error("{0}")]
    Config(String),
}

impl Server {
    /// Binds every listener and the admin endpoint, then serves them on the current
    /// tokio runtime.
    pub async fn start(loaded: Loaded, options: ServerOptions) -> Result<Arc<Server>, StartError> {
        let begun = Instant::now();
        let mut bootstrap = loaded.bootstrap;
        if let Some(n) = &options.service_node {
            bootstrap.node_id = n.clone();
        }
        if let Some(c) = &options.service_cluster {
            bootstrap.node_cluster = c.clone();
        }
        // Envoy's rule, checked once the command line's node is known.
        let tcp_statsd = bootstrap.stats.sinks.iter().any(|s| {
            matches!(
                s,
                ferry_config::stats::StatsSink::Statsd {
                    target: ferry_config::stats::StatsdTarget::Tcp(_),
                    ..
                }
            )
        });
        if tcp_statsd && (bootstrap.node_id.is_empty() || bootstrap.node_cluster.is_empty()) {
            return Err(StartError::Config(
                "tcp statsd: node 'id' and 'cluster' are required. Set it either in 'node' \
                 config or via --service-node and --service-cluster options."
                    .into(),
            ));
        }
        let stats_view = StatsView::new(&bootstrap.stats)
            .map_err(|e| StartError::Config(format!("stats_config.stats_tags: {e}")))?;
        let stats = ferry_stats::Store::new();
        let server_stats = Arc::new(crate::stats::ServerStats::default());
        stats.register("server.", &server_stats);
        server_stats.concurrency.set(options.concurrency as u64);
        // No TLS certificates: Envoy's value when there are none.
        server_stats
            .days_until_first_cert_expiring
            .set(u64::from(u32::MAX));
        let cm_stats = Arc::new(crate::stats::ClusterManagerStats::default());
        stats.register("cluster_manager.", &cm_stats);
        cm_stats.cluster_added.add(bootstrap.clusters.len() as u64);
        cm_stats
            .active_clusters
            .set(bootstrap.clusters.len() as u64);
        let lm_stats = Arc::new(crate::stats::ListenerManagerStats::default());
        stats.register("listener_manager.", &lm_stats);
        let health_failed = Arc::new(AtomicBool::new(false));
        let log_files = ferry_upstream::log_file::LogFiles::default();
        log_files.register_stats(&stats);
        let clusters = ferry_upstream::ClusterManager::with_options(
            &bootstrap.clusters,
            &stats,
            &ferry_upstream::ClusterManagerOptions {
                outlier_event_log: bootstrap.outlier_event_log.clone(),
                log_files: log_files.clone(),
            },
        );
        // Envoy's cluster warming: listeners open once every cluster has its first host
        // set (a DNS cluster after its first resolution attempt, successful or not).
        for c in clusters.clusters() {
            if tokio::time::timeout(CLUSTER_WARMING_LIMIT, c.ready())
                .await
                .is_err()
            {
                tracing::warn!(cluster = %c.config.name, "cluster not ready in time; starting anyway");
            }
        }
        let snapshot = Snapshot {
            bootstrap: Arc::new(bootstrap),
            clusters,
            config_json: Arc::from(loaded.json),
            local_address: crate::snapshot::local_address(),
            stats: stats.clone(),
            health_failed: health_failed.clone(),
            log_files,
            route_configs: Arc::default(),
            drain_time: options.drain_time,
        };
        let mut sockets = Vec::new();
        for l in &snapshot.bootstrap.listeners {
            sockets.push((l.clone(), bind_listener(l)?));
        }
        let admin = match &snapshot.bootstrap.admin {
            Some(a) => Some((a.clone(), bind("admin", a.address, a.ipv4_compat)?)),
            None => None,
        };
        let (drain_tx, _) = watch::channel(false);
        let server = Arc::new(Server {
            snapshot: ArcSwap::from_pointee(snapshot.clone()),
            options,
            listeners: parking_lot::Mutex::new(Vec::new()),
            admin_addr: admin.as_ref().and_then(|(_, s)| s.local_addr().ok()),
            stats: stats.clone(),
            server_stats: server_stats.clone(),
            stats_view,
            _manager_stats: (cm_stats, lm_stats.clone()),
            health_failed: health_failed.clone(),
            started: Instant::now(),
            drain_tx,
            shutdown: Notify::new(),
            shutdown_requested: AtomicBool::new(false),
            active_connections: AtomicUsize::new(0),
            connections_closed: Notify::new(),
            initializing: AtomicBool::new(false),
            dynamic_config: Default::default(),
        });
        for (l, sock) in sockets {
            server.activate(l, sock, &snapshot);
        }
        lm_stats.workers_started.set(1);
        server_stats.live.set(1);
        server_stats
            .initialization_time_ms
            .record(crate::stats::ms_since(begun));
        // xDS first: the server is INITIALIZING before admin's `/ready` can answer.
        crate::xds::start(&server);
        if let Some((_, sock)) = admin {
            tokio::spawn(crate::admin::serve(server.clone(), sock));
        }
        crate::sinks::start(&server);
        Ok(server)
    }

    /// Reopens every access and event log file (SIGUSR1, admin `/reopen_logs`): after
    /// logrotate moved a file, new lines go to a new file at the configured path.
    pub fn reopen_logs(&self) {
        self.snapshot.load().log_files.reopen();
    }

    /// Turns true when the server starts draining.
    pub(crate) fn draining(&self) -> watch::Receiver<bool> {
        self.drain_tx.subscribe()
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.drain_tx.borrow()
    }

    /// Whether the first xDS responses are still awaited (Envoy's INITIALIZING).
    pub fn is_initializing(&self) -> bool {
        self.initializing.load(Ordering::Relaxed)
    }

    /// Sets whether the first xDS responses are awaited.
    pub(crate) fn set_initializing(&self, initializing: bool) {
        self.initializing.store(initializing, Ordering::Relaxed);
    }

    /// Starts draining: listeners stop accepting, HTTP connections close after their
    /// in-flight requests (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY).
    pub fn drain_listeners(&self) {
        self.drain_tx.send_replace(true);
        for l in self.listeners.lock().iter() {
            l.close();
        }
    }

    /// The listeners' names and bound addresses (port 0 resolved).
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .lock()
            .iter()
            .map(|l| (l.config.name.clone(), l.address))
            .collect()
    }

    /// Serves `sock` as listener `l` (counted in `listener_manager.*`).
    fn activate(
        self: &Arc<Self>,
        l: ferry_config::listener::Listener,
        sock: tokio::net::TcpListener,
        snapshot: &Snapshot,
    ) {
        let rt = ListenerRuntime::new(&l, snapshot);
        let lm = &self._manager_stats.1;
        lm.listener_added.inc();
        lm.listener_create_success.inc();
        lm.total_listeners_active.inc();
        self.listeners
            .lock()
            .push(ActiveListener::start(self, l, rt, sock));
    }

    /// Adds listener `l`, or replaces the listener of its name (as LDS does), leaving
    /// every other listener as it is. At the same address the socket is kept: new
    /// connections get the new filter chains while the old ones close gracefully. At
    /// another address the new socket is bound first (an error leaves the old listener
    /// in force), then the old one stops accepting and its connections close
    /// gracefully.
    pub fn add_or_update_listener(
        self: &Arc<Self>,
        l: ferry_config::listener::Listener,
    ) -> Result<(), StartError> {
        if self.is_draining() {
            return Err(StartError::Config(format!(
                "listener {}: the server is draining",
                l.name
            )));
        }
        let snapshot = self.snapshot.load_full();
        let lm = &self._manager_stats.1;
        let mut listeners = self.listeners.lock();
        if let Some(i) = listeners.iter().position(|a| a.config.name == l.name) {
            let same_address = listeners[i].config.address == l.address;
            if same_address {
                let rt = ListenerRuntime::new(&l, &snapshot);
                listeners[i].replace_runtime(rt);
                listeners[i].config = l;
            } else {
                let sock = bind_listener(&l).inspect_err(|_| lm.listener_create_failure.inc())?;
                let rt = ListenerRuntime::new(&l, &snapshot);
                let new = ActiveListener::start(self, l, rt, sock);
                // Its name now is the new listener's: the dump shows that one.
                self.drain_listener(std::mem::replace(&mut listeners[i], new), false);
            }
            lm.listener_modified.inc();
            return Ok(());
        }
        drop(listeners);
        let sock = bind_listener(&l).inspect_err(|_| lm.listener_create_failure.inc())?;
        self.activate(l, sock, &snapshot);
        Ok(())
    }

    /// Renames listener `old` to `l`'s name when it listens where `l` is to listen and
    /// no listener has that name yet, so that `l`, replacing it under another name in
    /// one update, takes over its socket (Envoy shares a leaving listener's socket the
    /// same way). Whether it did.
    pub(crate) fn hand_over_listener(
        &self,
        old: &str,
        l: &ferry_config::listener::Listener,
    ) -> bool {
        let listeners = self.listeners.lock();
        let same_place = listeners
            .iter()
            .any(|a| a.config.name == old && a.config.address == l.address);
        let free = !listeners.iter().any(|a| a.config.name == l.name);
        drop(listeners);
        same_place && free && self.rename_listener(old, &l.name)
    }

    /// Renames listener `from` to `to`; whether there was one.
    pub(crate) fn rename_listener(&self, from: &str, to: &str) -> bool {
        let mut listeners = self.listeners.lock();
        match listeners.iter_mut().find(|a| a.config.name == from) {
            Some(a) => {
                a.config.name = to.to_string();
                true
            }
            None => false,
        }
    }

    /// Removes the listener called `name`: it stops accepting and its connections
    /// drain. Whether there was one.
    pub fn remove_listener(self: &Arc<Self>, name: &str) -> bool {
        let mut listeners = self.listeners.lock();
        let Some(i) = listeners.iter().position(|a| a.config.name == name) else {
            return false;
        };
        let removed = listeners.remove(i);
        drop(listeners);
        self.drain_listener(removed, true);
        let lm = &self._manager_stats.1;
        lm.listener_removed.inc();
        lm.total_listeners_active.dec();
        true
    }

    /// A listener that LDS removed or moved: it stops accepting now, and its
    /// connections drain over the drain time (`total_listeners_draining` meanwhile),
    /// as Envoy drains a listener it removes; `dumped`: `/config_dump` shows it
    /// draining meanwhile (a removed one; a moved one's name is its successor's).
    fn drain_listener(self: &Arc<Self>, l: ActiveListener, dumped: bool) {
        l.drain();
        let name = l.config.name.clone();
        if dumped {
            self.dynamic_config.lock().drain(&name);
        }
        let lm = self._manager_stats.1.clone();
        lm.total_listeners_draining.inc();
        let drain_time = self.options.drain_time;
        let server = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(drain_time).await;
            lm.total_listeners_draining.dec();
            if let Some(server) = server.upgrade() {
                server.dynamic_config.lock().drained(&name);
            }
            drop(l);
        });
    }

    /// Adds cluster `c`, or replaces the cluster of its name (as CDS does): routes that
    /// name it send to it from the next request; pools, health and outlier state of
    /// hosts that stay are kept; requests in flight finish where they started.
    pub fn add_or_update_cluster(&self, c: &ferry_config::cluster::Cluster) {
        let snapshot = self.snapshot.load();
        let existed = snapshot.clusters.get(&c.name).is_some();
        snapshot.clusters.add_or_update(c, &snapshot.stats);
        let cm = &self._manager_stats.0;
        if existed {
            cm.cluster_modified.inc();
        } else {
            cm.cluster_added.inc();
            cm.active_clusters.inc();
        }
    }

    /// The xDS client's warming listeners and clusters (Envoy's
    /// `listener_manager.total_listeners_warming`, `cluster_manager.warming_clusters`).
    pub(crate) fn set_warming(&self, listeners: usize, clusters: usize) {
        self._manager_stats
            .1
            .total_listeners_warming
            .set(listeners as u64);
        self._manager_stats.0.warming_clusters.set(clusters as u64);
    }

    /// Removes the cluster called `name`: new requests routed to it get 503 (no
    /// cluster); requests in flight finish. Whether there was one.
    pub fn remove_cluster(&self, name: &str) -> bool {
        let removed = self.snapshot.load().clusters.remove(name);
        if removed {
            let cm = &self._manager_stats.0;
            cm.cluster_removed.inc();
            cm.active_clusters.dec();
        }
        removed
    }

    /// Asks the process to exit (`/quitquitquit`).
    pub fn request_shutdown(&self) {
        self.shutdown_requested.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
    }

    /// Resolves when shutdown is requested.
    pub async fn shutdown_requested(&self) {
        if self.shutdown_requested.load(Ordering::SeqCst) {
            return;
        }
        self.shutdown.notified().await;
    }

    /// Drains, then waits up to the drain time for connections to close.
    pub async fn drain_and_wait(&self) {
        self.drain_listeners();
        let deadline = tokio::time::Instant::now() + self.options.drain_time;
        loop {
            let notified = self.connections_closed.notified();
            if self.active_connections.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    open = self.active_connections.load(Ordering::SeqCst),
                    "drain time elapsed with connections still open"
                );
                return;
            }
        }
    }
}

/// Refreshes the computed `server.*` gauges (uptime, memory, connections, state).
fn refresh_server(server: &Server) {
    let s = &server.server_stats;
    s.uptime.set(server.started.elapsed().as_secs());
    s.total_connections
        .set(server.active_connections.load(Ordering::Relaxed) as u64);
    // 0 LIVE, 1 DRAINING, 3 INITIALIZING (Envoy's server.state).
    let draining = server.is_draining();
    let state = if draining {
        1
    } else if server.is_initializing() {
        3
    } else {
        0
    };
    s.state.set(state);
    s.live.set(u64::from(state == 0));
    if let Some(memory) = server.options.memory {
        let m = memory();
        s.memory_allocated.set(m.allocated);
        s.memory_heap_size.set(m.heap_size);
        s.memory_physical_size.set(m.physical_size);
    }
}

/// Binds listener `l`'s address.
fn bind_listener(
    l: &ferry_config::listener::Listener,
) -> Result<tokio::net::TcpListener, StartError> {
    bind(&l.name, l.address, l.ipv4_compat)
}

/// Binds `addr` for the listener (or admin endpoint) called `name`.
fn bind(
    name: &str,
    addr: SocketAddr,
    ipv4_compat: bool,
) -> Result<tokio::net::TcpListener, StartError> {
    crate::listener::bind(addr, ipv4_compat).map_err(|source| StartError::Bind {
        name: name.to_string(),
        addr,
        source,
    })
}

#[cfg(test)]
mod tests;
