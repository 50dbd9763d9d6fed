//! A small authoritative DNS server on 127.0.0.1 (UDP) for DNS cluster tests: answers
//! A/AAAA queries from a table the test changes at will, with the TTL it sets, answers
//! NXDOMAIN for names it does not know, and counts the queries per name.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Zone {
    /// Lower-case name without the trailing dot → (addresses, TTL in seconds).
    records: HashMap<String, (Vec<IpAddr>, u32)>,
    /// Queries seen per name.
    queries: HashMap<String, usize>,
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start() -> anyhow::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(reply) = answer(&buf[..n], &z) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Ok(DnsServer { addr, zone, task })
    }

    /// Answers `name` with `ips` (A and AAAA by family) and `ttl` seconds from now on.
    pub fn set(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        if let Ok(mut z) = self.zone.lock() {
            z.records.insert(key(name), (ips.to_vec(), ttl));
        }
    }

    /// Forgets `name`: queries for it get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        if let Ok(mut z) = self.zone.lock() {
            z.records.remove(&key(name));
        }
    }

    /// How many queries (of any type) asked for `name`.
    pub fn queries(&self, name: &str) -> usize {
        self.zone
            .lock()
            .map(|z| z.queries.get(&key(name)).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn answer(packet: &[u8], zone: &Mutex<Zone>) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    let mut zone = zone.lock().ok()?;
    for q in &request.queries {
        reply.add_query(q.clone());
        let name = key(&q.name().to_ascii());
        *zone.queries.entry(name.clone()).or_default() += 1;
        let Some((ips, ttl)) = zone.records.get(&name) else {
            reply.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        for ip in ips {
            let rdata = match (ip, q.query_type()) {
                (IpAddr::V4(v4), RecordType::A) => RData::A((*v4).into()),
                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA((*v6).into()),
                _ => continue,
            };
            let owner: Name = q.name().clone();
            reply.add_answer(Record::from_rdata(owner, *ttl, rdata));
        }
    }
    reply.to_vec().ok()
}
