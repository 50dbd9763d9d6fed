//! `bench-load`: an open-loop, fixed-rate HTTP/1.1 load generator (the idea of wrk2).
//!
//! Each of `--connections` keep-alive connections runs on its own thread and owns an
//! equal share of `--rate`: request `k` of connection `i` is *intended* to start at
//! `start + (i + k * connections) / rate`. A thread sleeps until that time (never
//! earlier), sends, and reads the whole response. Latency is measured from the
//! intended time, so a response that holds a connection up delays the requests
//! behind it and that delay is counted — no coordinated omission. The latency from
//! the actual send time is reported too (`uncorrected`).
//!
//! The client's own wake-up delay (timer slack, scheduling) is part of every sample;
//! the harness's `direct` target shows that floor.
//!
//! Prints one JSON object on stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ferry_bench::{parse_response_head, percentile, BodyLength};

#[derive(Parser, Debug)]
#[command(about = "Open-loop fixed-rate HTTP/1.1 client; latency from intended send time")]
struct Args {
    /// Target address (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Host header.
    #[arg(long, default_value = "bench")]
    host: String,
    /// Total requests per second, over all connections.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections (one thread each).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Measured duration, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before measuring, seconds (sent at the same rate, not recorded).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(Default)]
struct ThreadResult {
    corrected_us: Vec<u32>,
    uncorrected_us: Vec<u32>,
    errors: u64,
    non_2xx: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "bench-load sends to loopback only, not {}",
        args.addr
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.connections > 0,
        "rate and connections must be > 0"
    );
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bench-load\r\n\r\n",
        args.path, args.host
    )
    .into_bytes();

    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);

    let mut handles = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let offset = Duration::from_secs_f64(i as f64 / args.rate);
        let request = request.clone();
        let addr = args.addr;
        let handle = std::thread::Builder::new()
            .name(format!("conn-{i}"))
            .spawn(move || {
                run_connection(addr, &request, start + offset, interval, measure_from, end)
            })
            .context("spawning a client thread")?;
        handles.push(handle);
    }
    let mut total = ThreadResult::default();
    for handle in handles {
        let r = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        total.corrected_us.extend(r.corrected_us);
        total.uncorrected_us.extend(r.uncorrected_us);
        total.errors += r.errors;
        total.non_2xx += r.non_2xx;
    }
    total.corrected_us.sort_unstable();
    total.uncorrected_us.sort_unstable();
    let c = &total.corrected_us;
    let u = &total.uncorrected_us;
    let ms = |v: u32| f64::from(v) / 1000.0;
    let out = serde_json::json!({
        "target_rate": args.rate,
        "connections": args.connections,
        "duration_s": args.duration,
        "completed": c.len(),
        "achieved_rps": c.len() as f64 / args.duration,
        "errors": total.errors,
        "non_2xx": total.non_2xx,
        "latency_ms": {
            "p50": ms(percentile(c, 0.50)),
            "p90": ms(percentile(c, 0.90)),
            "p99": ms(percentile(c, 0.99)),
            "p999": ms(percentile(c, 0.999)),
            "max": ms(c.last().copied().unwrap_or(0)),
        },
        "uncorrected_latency_ms": {
            "p50": ms(percentile(u, 0.50)),
            "p99": ms(percentile(u, 0.99)),
            "p999": ms(percentile(u, 0.999)),
        },
    });
    println!("{out}");
    Ok(())
}

fn run_connection(
    addr: SocketAddr,
    request: &[u8],
    first: Instant,
    interval: Duration,
    measure_from: Instant,
    end: Instant,
) -> ThreadResult {
    let mut result = ThreadResult::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut k: u32 = 0;
    loop {
        let intended = first + interval * k;
        k += 1;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match connect(addr) {
                Ok(s) => conn.insert(s),
                Err(_) => {
                    result.errors += 1;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match exchange(stream, request, &mut buf) {
            Ok(status) => {
                let done = Instant::now();
                if intended >= measure_from {
                    result
                        .corrected_us
                        .push(micros(done.saturating_duration_since(intended)));
                    result.uncorrected_us.push(micros(done - sent));
                    if !(200..300).contains(&status) {
                        result.non_2xx += 1;
                    }
                }
            }
            Err(_) => {
                result.errors += 1;
                conn = None;
            }
        }
    }
    result
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Sends one request and reads its whole response; returns the status code.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> std::io::Result<u16> {
    stream.write_all(request)?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    // Read the head.
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, length) = parse_response_head(&buf[..head_end])
        .ok_or_else(|| std::io::Error::other("malformed response head"))?;
    let body_start = head_end + 4;
    match length {
        BodyLength::Fixed(len) => {
            let mut have = buf.len() - body_start;
            while have < len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                have += n;
            }
        }
        BodyLength::Chunked => {
            while !buf[body_start..].ends_with(b"0\r\n\r\n") {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    Ok(status)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
