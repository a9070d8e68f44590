//! Every case of the request corpus through Gatehouse: the status the client gets, the
//! JSON body and the close on a refusal, and what the origin saw.

use crate::corpus::{Origin, CASES, NEVER_FORWARDED};
use crate::gateway_to;
use gatehouse_test_support::raw::{closes, exchange, RawOrigin};

#[tokio::test]
async fn the_request_corpus() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let addr = gw.addr("web");
    let mut failures = Vec::new();
    for case in CASES {
        origin.clear();
        let (resp, mut conn) = exchange(addr, case.raw).await;
        let outcome = std::panic::AssertUnwindSafe(async {
            let resp = resp.unwrap_or_else(|| panic!("no response"));
            assert_eq!(
                resp.status,
                case.status,
                "status; body {:?}",
                String::from_utf8_lossy(&resp.body)
            );
            let seen = origin.seen();
            match case.origin {
                Origin::Nothing => {
                    assert!(seen.is_empty(), "the origin saw {seen:?}");
                    if resp.status >= 400 {
                        let body = resp.json();
                        assert_eq!(body["status"], case.status);
                        assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
                        assert!(
                            closes(&mut conn).await,
                            "the connection stays open after a refusal"
                        );
                    } else {
                        assert!(
                            resp.get("allow").is_some(),
                            "an OPTIONS answer names what is allowed"
                        );
                    }
                }
                Origin::One(check) => {
                    assert_eq!(seen.len(), 1, "the origin saw {seen:?}");
                    check(&seen[0]);
                    for name in NEVER_FORWARDED {
                        assert!(
                            seen[0].get(name).is_none(),
                            "`{name}` reached the origin: {:?}",
                            seen[0]
                        );
                    }
                }
            }
        });
        if let Err(e) = futures_util::FutureExt::catch_unwind(outcome).await {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Transfer-Encoding with Content-Length: hyper goes by the chunked framing, drops the
/// Content-Length, and closes the connection after the response (RFC 9112 6.1), so a
/// request smuggled behind it is never read.
#[tokio::test]
async fn te_with_content_length_closes_the_connection_after() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    assert_eq!(resp.unwrap().status, 200);
    assert!(closes(&mut conn).await);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/");
}

/// A refused CONNECT closes the connection: the bytes after it are the tunnel the
/// client hoped for, not a request.
#[tokio::test]
async fn connect_is_never_a_tunnel() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\nGET /inner HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    let resp = resp.unwrap();
    assert_eq!(resp.status, 405);
    assert!(resp.get("allow").is_some_and(|a| !a.contains("CONNECT")));
    assert!(closes(&mut conn).await);
    assert!(origin.seen().is_empty());
    assert_eq!(origin.connections(), 0);
}

/// An h2c upgrade goes on as a plain request: answered 200 over HTTP/1.1, never 101.
#[tokio::test]
async fn h2c_upgrade_is_answered_as_http1() {
    let origin = RawOrigin::ok().await;
    let gw = gateway_to(&origin, "").await;
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, mut conn) = exchange(gw.addr("web"), raw).await;
    assert_eq!(resp.unwrap().status, 200);
    let next = gatehouse_test_support::raw::read_response(&mut conn)
        .await
        .unwrap();
    assert_eq!(next.status, 200, "the connection is still HTTP/1.1");
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.get("upgrade").is_none()));
}
