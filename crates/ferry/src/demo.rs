//! `ferry demo`: the founding document's v2 configuration, as written except that its
//! addresses point at loopback, in front of a built-in backend.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

/// The founding document's configuration (v2 names, lower-case enums), on loopback.
pub const SEED: &str = include_str!("demo_seed.yaml");

/// Flags of `ferry demo`.
#[derive(clap::Parser, Debug)]
pub struct DemoArgs {
    /// Proxy listener port.
    #[arg(long, default_value_t = 10000)]
    port: u16,
    /// Admin port.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Built-in backend port.
    #[arg(long, default_value_t = 8080)]
    backend_port: u16,
    /// Send one request through the proxy, print the answer and exit (a smoke test).
    #[arg(long)]
    once: bool,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    crate::init_logging("info");
    let yaml = SEED
        .replace("port_value: 10000", &format!("port_value: {}", args.port))
        .replace(
            "port_value: 9901",
            &format!("port_value: {}", args.admin_port),
        )
        .replace(
            "port_value: 8080",
            &format!("port_value: {}", args.backend_port),
        );
    let loaded = crate::off_thread(move || crate::load_text(&yaml, ferry_config::Format::Yaml))
        .map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let backend = tokio::net::TcpListener::bind(("127.0.0.1", args.backend_port)).await?;
        tokio::spawn(serve_backend(backend));
        let port = args.port;
        println!("ferry demo: the seed configuration (v2, as written) on 127.0.0.1:{port}, admin on 127.0.0.1:{}", args.admin_port);
        println!("  curl -i http://127.0.0.1:{port}/service       # proxied to the built-in backend");
        println!("  curl -i http://127.0.0.1:{port}/other         # 404, no route (NR)");
        println!("  curl -s http://127.0.0.1:{}/clusters", args.admin_port);
        if args.once {
            let server = ferry_proxy::Server::start(loaded, ferry_proxy::ServerOptions::default()).await?;
            let body = get(port, "/service").await?;
            println!("GET /service -> {body}");
            server.request_shutdown();
            return Ok(0);
        }
        crate::serve(loaded, ferry_proxy::ServerOptions::default()).await
    })
}

async fn get(port: u16, path: &str) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "demo")
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}

async fn serve_backend(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!(
                        "hello from the ferry demo backend: {} {}\n",
                        req.method(),
                        req.uri()
                    );
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
