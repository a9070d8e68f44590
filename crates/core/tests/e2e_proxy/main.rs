//! End-to-end tests of the proxy path: real sockets on 127.0.0.1, real upstreams and
//! clients, the gateway in-process. One binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod big_body;
mod common;
mod grpc;
mod h2_quiet;
mod matrix;
mod reload_torture;
mod routing;
mod smoke;
mod streaming;
mod tls;
mod websocket;
