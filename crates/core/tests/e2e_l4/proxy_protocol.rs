//! The PROXY protocol: v1 and v2 headers accepted from trusted peers on HTTP and TCP
//! listeners (the client address then stands for the peer), refused from anyone else and
//! required from trusted peers; and v1 and v2 headers sent to upstreams that want them.

use crate::*;
use gatehouse_config::spec::ProxyProtocolVersion;
use gatehouse_core::proxy_protocol::encode;
use gatehouse_test_support::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn client_addr() -> SocketAddr {
    "203.0.113.9:5555".parse().unwrap()
}

fn front_addr() -> SocketAddr {
    "198.51.100.1:443".parse().unwrap()
}

/// An HTTP listener with `proxy_protocol = true` and `trusted` as the trusted proxies,
/// routing everything to `up`.
async fn http_gateway(up: &Upstream, trusted: &str) -> TestGateway {
    start(&format!(
        "[global]\ntrusted_proxies = [\"{trusted}\"]\n\n{}\
         [[routes]]\nname = \"all\"\nupstream = \"back\"\n\n{}",
        listener("web", "http", "proxy_protocol = true"),
        upstream("back", &[up.addr], "")
    ))
    .await
}

async fn send(gw: &TestGateway, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(gw.addr("web")).await.unwrap();
    let _ = c.write_all(bytes).await;
    read_to_close(&mut c).await
}

fn with_request(header: &[u8]) -> Vec<u8> {
    [header, REQUEST].concat()
}

fn forwarded_for(up: &Upstream) -> String {
    up.last().headers["x-forwarded-for"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn http_takes_v1_from_a_trusted_peer() {
    let up = Upstream::fixed("ok").await;
    let gw = http_gateway(&up, "127.0.0.1").await;
    let header = b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n";
    let resp = send(&gw, &with_request(header)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(forwarded_for(&up), "203.0.113.9");
}

#[tokio::test]
async fn http_takes_v2_from_a_trusted_peer() {
    let up = Upstream::fixed("ok").await;
    let gw = http_gateway(&up, "127.0.0.0/8").await;
    let header = encode(ProxyProtocolVersion::V2, client_addr(), front_addr());
    let resp = send(&gw, &with_request(&header)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(forwarded_for(&up), "203.0.113.9");
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_refused() {
    let up = Upstream::fixed("ok").await;
    let gw = http_gateway(&up, "10.9.9.9").await;
    let v1 = b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n";
    assert_eq!(send(&gw, &with_request(v1)).await, "");
    let v2 = encode(ProxyProtocolVersion::V2, client_addr(), front_addr());
    assert_eq!(send(&gw, &with_request(&v2)).await, "");
    assert_eq!(up.count(), 0);
    // Without a header the untrusted peer is served as itself.
    let resp = send(&gw, REQUEST).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(forwarded_for(&up), "127.0.0.1");
}

#[tokio::test]
async fn a_trusted_peer_must_send_a_valid_header() {
    let up = Upstream::fixed("ok").await;
    let gw = http_gateway(&up, "127.0.0.1").await;
    assert_eq!(send(&gw, REQUEST).await, "");
    let bad = b"PROXY TCP4 not-an-address 198.51.100.1 5555 443\r\n";
    assert_eq!(send(&gw, &with_request(bad)).await, "");
    assert_eq!(up.count(), 0);
}

/// Reads a PROXY header (v1 or v2) off a backend connection, byte-exact.
async fn read_proxy_header(s: &mut TcpStream) -> Vec<u8> {
    let mut got = vec![s.read_u8().await.unwrap()];
    if got[0] == b'P' {
        while !got.ends_with(b"\r\n") {
            got.push(s.read_u8().await.unwrap());
        }
        return got;
    }
    let mut rest = [0u8; 15];
    s.read_exact(&mut rest).await.unwrap();
    got.extend_from_slice(&rest);
    let len = u16::from_be_bytes([got[14], got[15]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    got.extend_from_slice(&body);
    got
}

/// A backend that reads the PROXY header, writes back the client address it names
/// (`src=ip:port dst=ip:port;`), then echoes.
async fn proxy_reading_echo() -> SocketAddr {
    serve_tcp(|mut s| async move {
        let header = read_proxy_header(&mut s).await;
        let (src, dst) = match ppp::HeaderResult::parse(&header) {
            ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => (
                    format!("{}:{}", a.source_address, a.source_port),
                    format!("{}:{}", a.destination_address, a.destination_port),
                ),
                other => (format!("{other:?}"), String::new()),
            },
            ppp::HeaderResult::V2(Ok(h)) => match h.addresses {
                ppp::v2::Addresses::IPv4(a) => (
                    format!("{}:{}", a.source_address, a.source_port),
                    format!("{}:{}", a.destination_address, a.destination_port),
                ),
                other => (format!("{other:?}"), String::new()),
            },
            other => (format!("{other:?}"), String::new()),
        };
        let kind = if header[0] == b'P' { "v1" } else { "v2" };
        s.write_all(format!("{kind} src={src} dst={dst};").as_bytes())
            .await?;
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await?;
        w.shutdown().await
    })
    .await
}

/// Reads the backend's `...;` preamble.
async fn preamble(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    while !got.ends_with(b";") {
        got.push(c.read_u8().await.unwrap());
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn tcp_passes_the_client_address_on_in_a_v1_header() {
    let back = proxy_reading_echo().await;
    let gw = start(&format!(
        "[global]\ntrusted_proxies = [\"127.0.0.1\"]\n\n{}{}",
        listener("tcp", "tcp", "upstream = \"back\"\nproxy_protocol = true"),
        upstream("back", &[back], "proxy_protocol = \"v1\"")
    ))
    .await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    // A v2 header in, a v1 header out, with the same addresses.
    let header = encode(ProxyProtocolVersion::V2, client_addr(), front_addr());
    c.write_all(&header).await.unwrap();
    c.write_all(b"data").await.unwrap();
    assert_eq!(
        preamble(&mut c).await,
        "v1 src=203.0.113.9:5555 dst=198.51.100.1:443;"
    );
    assert_eq!(read_n(&mut c, 4).await, "data");
}

#[tokio::test]
async fn tcp_sends_a_v2_header_naming_the_real_peer() {
    let back = proxy_reading_echo().await;
    let gw = start(
        &(listener("tcp", "tcp", "upstream = \"back\"")
            + &upstream("back", &[back], "proxy_protocol = \"v2\"")),
    )
    .await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    let me = c.local_addr().unwrap();
    let front = gw.addr("tcp");
    assert_eq!(preamble(&mut c).await, format!("v2 src={me} dst={front};"));
    c.write_all(b"x").await.unwrap();
    assert_eq!(read_n(&mut c, 1).await, "x");
}

#[tokio::test]
async fn tcp_refuses_a_header_from_an_untrusted_peer() {
    let a = echo("A").await;
    let gw = start(
        &(listener("tcp", "tcp", "upstream = \"back\"\nproxy_protocol = true")
            + &upstream("back", &[a], "")),
    )
    .await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    // The upstream connection opens first (so a server-first protocol works for
    // untrusted clients); the forged header is then refused and nothing of it is sent.
    assert_eq!(read_n(&mut c, 2).await, "A|");
    c.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\nhi")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut c).await, "");
}

#[tokio::test]
async fn the_proxied_address_drives_ip_hash_and_the_access_log() {
    let (a, b) = (Upstream::fixed("A").await, Upstream::fixed("B").await);
    let log = temp_path("access.log");
    let gw = TestGateway::start(&format!(
        "[global]\ntrusted_proxies = [\"127.0.0.1\"]\n\n\
         [access_log]\ntarget = \"{}\"\n\n{}\
         [[routes]]\nname = \"all\"\nupstream = \"back\"\n\n{}",
        log.display(),
        listener("web", "http", "proxy_protocol = true"),
        upstream("back", &[a.addr, b.addr], "balancer = \"ip_hash\"")
    ))
    .await;
    let mut seen = std::collections::HashSet::new();
    for i in 1..=16 {
        let client = format!("203.0.113.{i}");
        let header = format!("PROXY TCP4 {client} 198.51.100.1 5555 80\r\n");
        let mut bodies = Vec::new();
        // The same client, from different ports of the balancer, on the same endpoint.
        for _ in 0..3 {
            let resp = send(&gw, &with_request(header.as_bytes())).await;
            bodies.push(resp.rsplit("\r\n\r\n").next().unwrap().to_string());
        }
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "{client}: {bodies:?}"
        );
        seen.insert(bodies[0].clone());
    }
    assert_eq!(seen.len(), 2, "16 clients all hashed to one endpoint");
    let lines = eventually("48 access lines", || async {
        let t = std::fs::read_to_string(&log).ok()?;
        (t.lines().count() == 48).then_some(t)
    })
    .await;
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["client"], "203.0.113.1", "{first}");
}
