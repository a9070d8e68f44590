//! DNS discovery end to end, against a DNS server the test runs on 127.0.0.1 (built on
//! hickory-proto's message codec): A records become endpoints and are looked up again
//! when their TTL runs out; a failing server keeps the last good set; SRV records give
//! ports and weights, best priority only. On tokio's paused clock.

use crate::health::{advance_until, bodies};
use crate::*;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

type Zone = HashMap<(String, RecordType), Vec<RData>>;

/// A DNS server answering from `zone` (names without the trailing dot), every record
/// with `TTL` seconds; `fail` makes it answer SERVFAIL.
struct TestDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    fail: Arc<AtomicBool>,
}

const TTL: u32 = 5;

impl TestDns {
    async fn start() -> TestDns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let (z, f) = (zone.clone(), fail.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&query, &z.lock().unwrap(), f.load(Ordering::Relaxed));
                let _ = sock.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        TestDns { addr, zone, fail }
    }

    fn set(&self, name: &str, kind: RecordType, records: Vec<RData>) {
        self.zone
            .lock()
            .unwrap()
            .insert((name.to_string(), kind), records);
    }

    fn a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.set(
            name,
            RecordType::A,
            ips.iter().map(|ip| RData::A(A(*ip))).collect(),
        );
    }
}

fn answer(q: &Message, zone: &Zone, fail: bool) -> Message {
    let id = q.metadata.id;
    if fail {
        return Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
    }
    let mut m = Message::response(id, OpCode::Query);
    for query in &q.queries {
        m.add_query(query.clone());
        let name = query
            .name
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        for rdata in zone.get(&(name, query.query_type)).into_iter().flatten() {
            m.add_answer(Record::from_rdata(query.name.clone(), TTL, rdata.clone()));
        }
    }
    m
}

fn discovery(dns: &TestDns, target: &str) -> String {
    format!(
        "[upstreams.discovery]\n{target}\nnameservers = [\"{}\"]\nmin_refresh = \"1s\"\n",
        dns.addr
    )
}

/// An upstream answering `name` on `ip:port`.
async fn named(ip: &str, port: u16, name: &'static str) -> Upstream {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    Upstream::start_on(addr, UpstreamOptions::default(), move |_| async move {
        ok(name)
    })
    .await
}

fn addresses(gw: &TestGateway) -> Vec<String> {
    let mut v: Vec<String> = gw.gw.snapshot().upstreams["backend"]
        .endpoints()
        .iter()
        .map(|e| e.label.to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn a_records_become_endpoints_and_follow_their_ttl() {
    let a = Upstream::fixed("a").await;
    let port = a.addr.port();
    let _b = named("127.0.0.2", port, "b").await;
    let dns = TestDns::start().await;
    dns.a("api.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let target = format!("dns = \"api.test:{port}\"");
    let toml = config_endpoints(&[], "", &discovery(&dns, &target)).replace("endpoints = []\n", "");
    let gw = TestGateway::start(&toml).await;
    advance_until("the first lookup", || addresses(&gw).len() == 1).await;
    assert!(bodies(&gw, 5).await.iter().all(|x| x == "a"));

    dns.a(
        "api.test",
        &[Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)],
    );
    let took = advance_until("the second address", || addresses(&gw).len() == 2).await;
    assert!(
        took <= Duration::from_secs(u64::from(TTL)),
        "re-resolved after {took:?}"
    );
    let seen = bodies(&gw, 10).await;
    assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));

    // A failing server keeps the last good set.
    dns.fail.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(addresses(&gw).len(), 2);
    assert_eq!(bodies(&gw, 4).await.len(), 4);

    // The name moves: the old endpoint leaves, the new set serves everything.
    dns.a("api.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    dns.fail.store(false, Ordering::Relaxed);
    advance_until("the move", || {
        addresses(&gw) == [format!("127.0.0.2:{port}")]
    })
    .await;
    assert!(bodies(&gw, 5).await.iter().all(|x| x == "b"));
}

#[tokio::test(start_paused = true)]
async fn srv_records_give_ports_and_weights_of_the_best_priority() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let dns = TestDns::start().await;
    let target = |n: &str| Name::from_ascii(format!("{n}.test.")).unwrap();
    dns.set(
        "_http._tcp.api.test",
        RecordType::SRV,
        vec![
            RData::SRV(SRV::new(10, 1, a.addr.port(), target("a"))),
            RData::SRV(SRV::new(10, 3, b.addr.port(), target("b"))),
            RData::SRV(SRV::new(20, 1, 9, target("backup"))),
        ],
    );
    for n in ["a.test", "b.test", "backup.test"] {
        dns.a(n, &[Ipv4Addr::new(127, 0, 0, 1)]);
    }
    let toml = config_endpoints(&[], "", &discovery(&dns, "srv = \"_http._tcp.api.test\""))
        .replace("endpoints = []\n", "");
    let gw = TestGateway::start(&toml).await;
    advance_until("the lookup", || addresses(&gw).len() == 2).await;
    let snap = gw.gw.snapshot();
    let eps = snap.upstreams["backend"].endpoints();
    let weight = |addr: SocketAddr| {
        eps.iter()
            .find(|e| *e.label == addr.to_string())
            .map(|e| e.spec.weight)
    };
    assert_eq!(weight(a.addr), Some(1));
    assert_eq!(weight(b.addr), Some(3));
    let seen = bodies(&gw, 8).await;
    assert_eq!(seen.iter().filter(|x| *x == "b").count(), 6, "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_group_with_nothing_found_yet_answers_503() {
    let dns = TestDns::start().await;
    let toml = config_endpoints(&[], "", &discovery(&dns, "dns = \"missing.test:80\""))
        .replace("endpoints = []\n", "");
    let gw = TestGateway::start(&toml).await;
    let r = fresh_client().get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("DNS found none yet"));
}
