//! End-to-end tests of the edge: raw requests an intermediary must refuse or repair,
//! upstream responses that must not reach the client, and the differential run of the
//! request corpus against a naive origin, and the own HTTP/1.1 response reader against
//! hyper's client at every byte split. Real sockets on 127.0.0.1, the gateway
//! in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod differential;
mod h1_reader;
mod h1_writer;
mod h2;
mod requests;
mod responses;

use gatehouse_test_support::raw::RawOrigin;
use gatehouse_test_support::TestGateway;

/// A gateway whose one listener `web` sends everything to `origin`, with the access log
/// off; `extra` goes at the end (more tables, or keys of the upstream).
pub async fn gateway_to(origin: &RawOrigin, extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[access_log]\nenabled = false\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[routes]]\nname = \"all\"\nupstream = \"origin\"\n\n\
         [[upstreams]]\nname = \"origin\"\nendpoints = [\"{}\"]\n{extra}\n",
        origin.addr
    ))
    .await
}
