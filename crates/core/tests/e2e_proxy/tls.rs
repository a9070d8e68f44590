//! TLS termination: the certificate chosen by SNI (exact, wildcard, default, no SNI),
//! TLS 1.2 and 1.3, `min_version`, client certificates (required and optional), and the
//! `redirect` listener that sends plain-HTTP clients to HTTPS.

use super::common::QUIET;
use gatehouse_test_support::certs::{Leaf, TestCa};
use gatehouse_test_support::{empty, Conn, Proto, TestGateway, TlsClient};
use http::Method;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A `respond` route, so these tests need no upstream.
const OK_ROUTE: &str = "[[routes]]\nname = \"ok\"\nrespond = { status = 200, body = \"tls ok\" }\n";

fn cert_entry(l: &Leaf, extra: &str) -> String {
    format!(
        "{{ cert = \"{}\", key = \"{}\"{extra} }}",
        l.cert.display(),
        l.key.display()
    )
}

fn https_listener(certs: &[String], tls_extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
         [listeners.tls]\ncertificates = [{}]\n{tls_extra}\n",
        certs.join(", ")
    )
}

fn presented(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref()
        .1
        .peer_certificates()
        .expect("no server certificate")[0]
        .clone()
        .into_owned()
}

/// One HTTP/1.1 GET over an established TLS stream; the status, or the error.
async fn get_over(s: TlsStream<TcpStream>, authority: &str) -> Result<u16, hyper::Error> {
    get_path_over(s, authority, "/").await
}

async fn get_path_over(
    s: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
) -> Result<u16, hyper::Error> {
    let mut c = Conn::over(s, Proto::H1, "https", authority.to_string()).await;
    let req = c.request(Method::GET, path).body(empty()).unwrap();
    let resp = c.send(req).await?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn certificate_is_chosen_by_sni() {
    let ca = TestCa::new();
    let exact = ca.leaf("exact", &["api.example.com"]);
    let wild = ca.leaf("wild", &["*.example.com"]);
    // The default answers names nothing else claims, so its SANs cover the names the
    // test falls back with, while its configured name is something else.
    let fallback = ca.leaf(
        "fallback",
        &["unknown.test", "deep.sub.example.com", "127.0.0.1"],
    );
    let first = ca.leaf("first", &["first.test"]);
    let certs = [
        cert_entry(&first, ""),
        cert_entry(&wild, ""),
        cert_entry(&exact, ""),
        cert_entry(&fallback, ", names = [\"fallback.test\"], default = true"),
    ];
    let gw = TestGateway::start(&format!("{QUIET}{}{OK_ROUTE}", https_listener(&certs, ""))).await;
    let addr = gw.addr("tls");
    let client = TlsClient::new(&ca.cert_pem);
    for (sni, want) in [
        ("api.example.com", &exact),
        ("www.example.com", &wild),
        // A wildcard covers one label only.
        ("deep.sub.example.com", &fallback),
        ("unknown.test", &fallback),
        ("first.test", &first),
        // An IP address sends no SNI at all.
        ("127.0.0.1", &fallback),
    ] {
        let s = client
            .connect(addr, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert!(presented(&s) == want.der(), "{sni}: wrong certificate");
        let authority = format!("{sni}:{}", addr.port());
        assert_eq!(get_over(s, &authority).await.unwrap(), 200, "{sni}");
    }
}

async fn connect_version(
    addr: SocketAddr,
    ca: &TestCa,
    v: &'static rustls::SupportedProtocolVersion,
) -> std::io::Result<TlsStream<TcpStream>> {
    let versions = [v];
    let client = TlsClient {
        versions: &versions,
        ..TlsClient::new(&ca.cert_pem)
    };
    client.connect(addr, "localhost").await
}

#[tokio::test]
async fn tls12_and_tls13_both_work_and_min_version_refuses_12() {
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let gw = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(&[cert_entry(&leaf, "")], "")
    ))
    .await;
    let addr = gw.addr("tls");
    for (v, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let s = connect_version(addr, &ca, v).await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(want));
        assert_eq!(get_over(s, "localhost").await.unwrap(), 200);
    }

    let strict = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(&[cert_entry(&leaf, "")], "min_version = \"1.3\"")
    ))
    .await;
    let addr = strict.addr("tls");
    let refused = connect_version(addr, &ca, &rustls::version::TLS12).await;
    assert!(
        refused.is_err(),
        "TLS 1.2 was accepted by a 1.3-only listener"
    );
    let s = connect_version(addr, &ca, &rustls::version::TLS13)
        .await
        .unwrap();
    assert_eq!(get_over(s, "localhost").await.unwrap(), 200);
}

/// Connects with an optional client certificate and makes one request. With TLS 1.3
/// the server checks the client's certificate after the client considers the handshake
/// done, so a refusal may surface at the request rather than at connect.
async fn mtls_get(addr: SocketAddr, ca: &TestCa, cert: Option<&Leaf>) -> Result<u16, String> {
    let client = TlsClient {
        client_cert: cert,
        ..TlsClient::new(&ca.cert_pem)
    };
    let s = client
        .connect(addr, "localhost")
        .await
        .map_err(|e| e.to_string())?;
    get_over(s, "localhost").await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn client_certificates_required_and_optional() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let good = ca.leaf("client", &["client.test"]);
    let stranger = other_ca.leaf("stranger", &["client.test"]);
    let client_ca = format!("client_ca = \"{}\"", ca.ca_path.display());

    let required = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(&[cert_entry(&leaf, "")], &client_ca)
    ))
    .await;
    let addr = required.addr("tls");
    assert_eq!(mtls_get(addr, &ca, Some(&good)).await, Ok(200));
    assert!(
        mtls_get(addr, &ca, None).await.is_err(),
        "no certificate was accepted"
    );
    assert!(
        mtls_get(addr, &ca, Some(&stranger)).await.is_err(),
        "a certificate from an unknown CA was accepted"
    );

    let optional = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(
            &[cert_entry(&leaf, "")],
            &format!("{client_ca}\nclient_auth = \"optional\"")
        )
    ))
    .await;
    let addr = optional.addr("tls");
    assert_eq!(mtls_get(addr, &ca, Some(&good)).await, Ok(200));
    assert_eq!(mtls_get(addr, &ca, None).await, Ok(200));
    // Optional means a client may send none, not that a bad one is let in.
    assert!(mtls_get(addr, &ca, Some(&stranger)).await.is_err());
}

/// Two redirect listeners: `r` sends clients to port 8443, `r443` to the default port.
const REDIRECTS: &str = "[[listeners]]\nname = \"r\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"redirect\"\nredirect_port = 8443\n\
    [[listeners]]\nname = \"r443\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"redirect\"\n";

#[tokio::test]
async fn redirect_listener_sends_clients_to_https() {
    let gw = TestGateway::start(&format!("{QUIET}{REDIRECTS}{OK_ROUTE}")).await;
    let mut c = Conn::plain(gw.addr("r"), Proto::H1).await;
    let req = c
        .request_to(Method::GET, "Example.com:8080", "/a/b?c=1")
        .body(empty())
        .unwrap();
    let (parts, _) = c.fetch(req).await;
    assert_eq!(parts.status, 301);
    assert_eq!(
        parts.headers["location"],
        "https://example.com:8443/a/b?c=1"
    );
    assert!(parts.headers.contains_key("x-request-id"));

    let req = c
        .request_to(Method::POST, "example.com", "/form")
        .body(gatehouse_test_support::full("x=1"))
        .unwrap();
    let (parts, _) = c.fetch(req).await;
    assert_eq!(parts.status, 308, "a POST keeps its method");
    assert_eq!(parts.headers["location"], "https://example.com:8443/form");

    // HTTP/2 clients are redirected too; the default HTTPS port is left out.
    let mut c = Conn::plain(gw.addr("r443"), Proto::H2).await;
    let req = c
        .request_to(Method::GET, "example.com", "/x")
        .body(empty())
        .unwrap();
    let (parts, _) = c.fetch(req).await;
    assert_eq!(parts.status, 301);
    assert_eq!(parts.headers["location"], "https://example.com/x");
}

/// Connects with a client config kept across connections (so it holds the session from
/// the first), makes one request (which also reads the TLS 1.3 tickets) and says how the
/// handshake went.
async fn handshake_kind(
    addr: SocketAddr,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let kind = s.get_ref().1.handshake_kind().expect("handshake done");
    assert_eq!(get_over(s, "localhost").await.unwrap(), 200);
    kind
}

/// A client config for one TLS version; `tickets = false` resumes TLS 1.2 by session id
/// only, so the server's session cache is what it must find.
fn resuming_client(
    ca: &TestCa,
    v: &'static rustls::SupportedProtocolVersion,
    tickets: bool,
) -> std::sync::Arc<rustls::ClientConfig> {
    let versions = [v];
    let mut cfg = (*TlsClient {
        versions: &versions,
        ..TlsClient::new(&ca.cert_pem)
    }
    .config())
    .clone();
    if !tickets {
        cfg.resumption = rustls::client::Resumption::in_memory_sessions(8)
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    }
    std::sync::Arc::new(cfg)
}

#[tokio::test]
async fn sessions_resume_by_ticket_and_by_session_id_unless_turned_off() {
    use rustls::version::{TLS12, TLS13};
    use rustls::HandshakeKind::{Full, Resumed};
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let on = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(&[cert_entry(&leaf, "")], "")
    ))
    .await;
    for (v, tickets) in [(&TLS13, true), (&TLS12, true), (&TLS12, false)] {
        let cfg = resuming_client(&ca, v, tickets);
        let what = format!("{v:?} tickets={tickets}");
        assert_eq!(handshake_kind(on.addr("tls"), &cfg).await, Full, "{what}");
        assert_eq!(
            handshake_kind(on.addr("tls"), &cfg).await,
            Resumed,
            "{what}"
        );
    }

    let off = TestGateway::start(&format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(
            &[cert_entry(&leaf, "")],
            "session_tickets = false\nsession_cache = 0"
        )
    ))
    .await;
    for (v, tickets) in [(&TLS13, true), (&TLS12, true), (&TLS12, false)] {
        let cfg = resuming_client(&ca, v, tickets);
        let what = format!("{v:?} tickets={tickets}");
        assert_eq!(handshake_kind(off.addr("tls"), &cfg).await, Full, "{what}");
        assert_eq!(handshake_kind(off.addr("tls"), &cfg).await, Full, "{what}");
    }
}

/// Tickets are sealed with keys the process keeps across reloads: a session from
/// before a reload resumes after it.
#[tokio::test]
async fn a_ticket_from_before_a_reload_still_resumes() {
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let config = format!(
        "{QUIET}{}{OK_ROUTE}",
        https_listener(&[cert_entry(&leaf, "")], "")
    );
    let gw = TestGateway::start(&config).await;
    let cfg = resuming_client(&ca, &rustls::version::TLS13, true);
    assert_eq!(
        handshake_kind(gw.addr("tls"), &cfg).await,
        rustls::HandshakeKind::Full
    );
    gw.gw
        .reload_text(&config.replace("tls ok", "tls ok again"))
        .await
        .unwrap();
    assert_eq!(
        handshake_kind(gw.addr("tls"), &cfg).await,
        rustls::HandshakeKind::Resumed
    );
}

/// mTLS consumers: a verified client certificate names a consumer by fingerprint,
/// subject alternative name or subject, and routes allow by consumer.
#[tokio::test]
async fn client_certificates_name_consumers() {
    let ca = TestCa::new();
    let leaf = ca.leaf("gw-c", &["localhost"]);
    let acme = ca.leaf("acme", &["acme.client.test"]);
    let beta = ca.leaf("beta", &["beta.client.test"]);
    let other = ca.leaf("other", &["other.test"]);
    let fingerprint: String = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, beta.der().as_ref());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}:"))
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let tls = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        ca.ca_path.display()
    );
    let text = format!(
        r#"{QUIET}{listener}
[[consumers]]
name = "acme"
certificates = [{{ san = "acme.client.test" }}]

[[consumers]]
name = "beta"
certificates = [{{ fingerprint = "{fingerprint}" }}]

[[consumers]]
name = "gamma"
certificates = [{{ subject = "cn = rcgen self signed cert" }}]

[[routes]]
name = "acme-only"
match = {{ prefix = "/acme" }}
respond = {{ status = 200, body = "acme" }}
auth = {{ methods = ["mtls"], consumers = ["acme"] }}

[[routes]]
name = "gamma-only"
match = {{ prefix = "/gamma" }}
respond = {{ status = 200, body = "gamma" }}
auth = {{ methods = ["mtls"], consumers = ["gamma"] }}

[[routes]]
name = "any-cert"
respond = {{ status = 200, body = "any" }}
auth = {{ methods = ["mtls"] }}
"#,
        listener = https_listener(&[cert_entry(&leaf, "")], &tls)
    );
    let gw = TestGateway::start(&text).await;
    let addr = gw.addr("tls");
    async fn get(addr: SocketAddr, ca: &TestCa, cert: Option<&Leaf>, path: &str) -> u16 {
        let client = TlsClient {
            client_cert: cert,
            ..TlsClient::new(&ca.cert_pem)
        };
        let s = client.connect(addr, "localhost").await.unwrap();
        get_path_over(s, "localhost", path).await.unwrap()
    }
    assert_eq!(get(addr, &ca, Some(&acme), "/acme").await, 200, "by SAN");
    assert_eq!(
        get(addr, &ca, Some(&beta), "/acme").await,
        403,
        "beta is not acme"
    );
    assert_eq!(
        get(addr, &ca, Some(&beta), "/").await,
        200,
        "any verified certificate"
    );
    assert_eq!(
        get(addr, &ca, Some(&other), "/gamma").await,
        200,
        "by subject"
    );
    assert_eq!(
        get(addr, &ca, Some(&acme), "/gamma").await,
        403,
        "a SAN match comes before the subject"
    );
    assert_eq!(
        get(addr, &ca, None, "/").await,
        401,
        "no certificate on an optional listener"
    );
}
