//! The corpus sent to a naive origin twice: through Gatehouse, and straight. Through
//! Gatehouse every request the origin reads is one Gatehouse forwarded (it carries
//! Gatehouse's `Via` and request id: a request hidden in another's body would not), the
//! origin never reads bytes that are not a request, and no header the edge removes
//! arrives. The smuggling cases show what the same bytes do to the naive origin alone.

use crate::corpus::{CASES, NEVER_FORWARDED};
use crate::gateway_to;
use gatehouse_test_support::raw::{exchange, RawOrigin};

/// Requests that hide a second one from a parser that frames them differently, and
/// whether the naive origin alone is fooled into reading more than Gatehouse does.
const SMUGGLING: &[(&str, &[u8], bool)] = &[
    (
        "cl_te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    ),
    (
        "te_te_obfuscated",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    ),
    (
        "chunk_size_with_lf",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\nxx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    ),
    (
        "chunked_twice",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    ),
    (
        "h2c_upgrade",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        false,
    ),
];

#[tokio::test]
async fn the_origin_never_sees_more_than_the_client_sent() {
    let behind = RawOrigin::ok().await;
    let gw = gateway_to(&behind, "").await;
    let alone = RawOrigin::ok().await;
    let corpus = CASES.iter().map(|c| (c.name, c.raw, false));
    for (name, raw, fools) in corpus.chain(SMUGGLING.iter().copied()) {
        behind.clear();
        alone.clear();
        let _ = exchange(gw.addr("web"), raw).await;
        let _ = exchange(alone.addr, raw).await;
        let through = behind.seen();
        assert!(
            behind.garbage().is_empty(),
            "{name}: the origin got bytes that are not a request"
        );
        for r in &through {
            assert!(
                r.get("via").is_some() && r.get("x-request-id").is_some(),
                "{name}: a request Gatehouse did not forward reached the origin: {r:?}"
            );
            assert!(!r.target.contains("smuggled"), "{name}: {r:?}");
            for h in NEVER_FORWARDED {
                assert!(r.get(h).is_none(), "{name}: `{h}` reached the origin");
            }
        }
        let direct = alone.seen();
        if fools {
            assert!(
                direct.iter().any(|r| r.target.contains("smuggled")),
                "{name}: the case does not fool the naive origin: {direct:?}"
            );
        }
    }
}
