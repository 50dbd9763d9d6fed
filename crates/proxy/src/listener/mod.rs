//! Listeners: bind, accept, pick the filter chain, hand the connection to its network filter.

mod filter_chain;

pub use filter_chain::{select, ConnectionFacts};

use crate::http::conn_manager::HcmRuntime;
use crate::network::NetworkFilterRuntime;
use crate::server::Server;
use crate::Snapshot;
use ferry_config::listener::{FilterChain, Listener, TerminalFilter};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// Binds a listening socket as Envoy does (SO_REUSEADDR; IPv6 sockets are v6-only
/// unless `ipv4_compat` is set).
pub fn bind(addr: SocketAddr, ipv4_compat: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!ipv4_compat)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A filter chain with its network filter built for serving.
pub(crate) struct ChainRuntime {
    pub(crate) config: FilterChain,
    /// The network filters before the terminal one, in order.
    pub(crate) read_filters: Vec<Arc<dyn crate::network::ReadFilter>>,
    pub(crate) filter: NetworkRuntime,
}

/// The runtime of a chain's terminal filter.
pub(crate) enum NetworkRuntime {
    Http(Arc<HcmRuntime>),
    Filter(Arc<dyn crate::network::TerminalFilter>),
    /// A filter this proxy cannot build (its config came through another registry):
    /// connections are closed.
    Closed,
}

/// A listener ready to serve: its chains built against a snapshot.
pub struct ListenerRuntime {
    pub(crate) name: String,
    /// Turns true when this runtime's connections must close gracefully: the listener
    /// was replaced or removed, or the server drains.
    pub(crate) drain: tokio::sync::watch::Sender<crate::network::Drain>,
    /// `--drain-time-s`.
    pub(crate) drain_time: std::time::Duration,
    /// `listener.<address>.*`.
    pub(crate) stats: crate::stats::ListenerScope,
    pub(crate) buffer_limit: u32,
    pub(crate) chains: Vec<ChainRuntime>,
    pub(crate) default_chain: Option<ChainRuntime>,
}

impl ListenerRuntime {
    /// Builds the runtime of every filter chain.
    pub fn new(l: &Listener, snapshot: &Snapshot) -> ListenerRuntime {
        let scope = crate::stats::listener_scope(&l.stat_prefix, l.address);
        // One worker runs every listener's accept loop (tokio spreads the connections).
        let stats = crate::stats::ListenerScope::register(&snapshot.stats, &scope, "worker_0");
        let build = |fc: &FilterChain| ChainRuntime {
            config: fc.clone(),
            read_filters: fc
                .read_filters
                .iter()
                .filter_map(|f| match crate::network::build(f, snapshot)? {
                    NetworkFilterRuntime::Read(r) => Some(r),
                    NetworkFilterRuntime::Terminal(_) => None,
                })
                .collect(),
            filter: match &fc.filter {
                TerminalFilter::Http(h) => {
                    let hcm = Arc::new(HcmRuntime::new(h.clone(), snapshot, &scope, l.drain_type));
                    if let Some(rds) = &h.rds {
                        let routes = &snapshot.route_configs;
                        routes.subscribe(rds, &hcm, &h.stat_prefix, &snapshot.stats);
                    }
                    NetworkRuntime::Http(hcm)
                }
                TerminalFilter::Filter(f) => match crate::network::build(f, snapshot) {
                    Some(NetworkFilterRuntime::Terminal(t)) => NetworkRuntime::Filter(t),
                    _ => {
                        tracing::error!(filter = %f.name, "not a terminal network filter of this proxy");
                        NetworkRuntime::Closed
                    }
                },
            },
        };
        ListenerRuntime {
            name: l.name.clone(),
            drain: tokio::sync::watch::Sender::new(crate::network::Drain::Serving),
            drain_time: snapshot.drain_time,
            stats,
            buffer_limit: l.buffer_limit,
            chains: l.filter_chains.iter().map(build).collect(),
            default_chain: l.default_filter_chain.as_ref().map(build),
        }
    }
}

/// A bound listener as the server runs it: the runtime new connections get (replaced
/// when the listener is updated in place) and the signal that stops its accept loop.
pub(crate) struct ActiveListener {
    /// The listener's config.
    pub(crate) config: Listener,
    /// The bound address (port 0 resolved).
    pub(crate) address: SocketAddr,
    pub(crate) runtime: Arc<arc_swap::ArcSwap<ListenerRuntime>>,
    /// Stops accepting (the listener is removed, moves, or the server drains).
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
}

impl ActiveListener {
    /// Starts serving `socket` with `runtime`.
    pub(crate) fn start(
        server: &Arc<Server>,
        config: Listener,
        runtime: ListenerRuntime,
        socket: TcpListener,
    ) -> ActiveListener {
        let address = socket.local_addr().unwrap_or(config.address);
        let runtime = Arc::new(arc_swap::ArcSwap::from_pointee(runtime));
        let stop = tokio::sync::watch::Sender::new(false);
        tokio::spawn(serve(
            server.clone(),
            runtime.clone(),
            stop.subscribe(),
            socket,
        ));
        ActiveListener {
            config,
            address,
            runtime,
            stop,
        }
    }

    /// Stops accepting and closes the connections gracefully (the server drains).
    pub(crate) fn close(&self) {
        self.halt(crate::network::Drain::Closing);
    }

    /// Stops accepting (the listener was removed or moved by LDS); its connections
    /// drain as those of an updated listener do, over the drain time.
    pub(crate) fn drain(&self) {
        self.halt(crate::network::Drain::Updated);
    }

    fn halt(&self, drain: crate::network::Drain) {
        self.stop.send_replace(true);
        self.runtime.load().drain.send_replace(drain);
    }

    /// Serves new connections with `runtime`; the connections of the one it replaces
    /// close gracefully.
    pub(crate) fn replace_runtime(&self, runtime: ListenerRuntime) {
        let old = self.runtime.swap(Arc::new(runtime));
        old.drain.send_replace(crate::network::Drain::Updated);
    }
}

/// Accepts until the listener stops.
async fn serve(
    server: Arc<Server>,
    runtime: Arc<arc_swap::ArcSwap<ListenerRuntime>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    listener: TcpListener,
) {
    let name = runtime.load().name.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|d| *d) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: keep the listener, try again shortly.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        // The connection keeps the runtime it was accepted with.
        let rt = runtime.load_full();
        server.active_connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            handle(&rt, stream, peer, server.draining()).await;
            if server.active_connections.fetch_sub(1, Ordering::SeqCst) == 1 {
                server.connections_closed.notify_waiters();
            }
        });
    }
    tracing::info!(listener = %name, "listener stopped accepting");
}

async fn handle(
    rt: &ListenerRuntime,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _counted = crate::stats::ConnectionStats::open(&rt.stats);
    // Without a TLS inspector, connections are plain text with no SNI or ALPN.
    let facts = ConnectionFacts {
        destination_port: local.port(),
        server_name: None,
        transport_protocol: "raw_buffer",
        application_protocols: &[],
    };
    let chain = match select(rt.chains.iter().map(|c| &c.config.matcher), &facts) {
        Some(i) => &rt.chains[i],
        None => match &rt.default_chain {
            Some(c) => c,
            None => {
                rt.stats.stats.no_filter_chain_match.inc();
                tracing::debug!(listener = %rt.name, %peer, "no filter chain matches; closing");
                return;
            }
        },
    };
    if !chain.read_filters.iter().all(|f| f.on_new_connection()) {
        tracing::debug!(listener = %rt.name, %peer, "connection rate limited; closing");
        return;
    }
    let downstream = crate::network::Downstream {
        stream,
        peer,
        local,
        buffer_limit: rt.buffer_limit,
        drain: rt.drain.subscribe(),
        drain_time: rt.drain_time,
        shutdown,
    };
    match &chain.filter {
        NetworkRuntime::Http(h) => crate::network::hcm::serve(h.clone(), downstream).await,
        NetworkRuntime::Filter(t) => t.clone().serve(downstream).await,
        NetworkRuntime::Closed => drop(downstream),
    }
}
