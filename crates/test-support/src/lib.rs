//! Dev-only fixtures shared by the end-to-end tests: an in-process gateway started from
//! config text ([`gateway`]), upstream servers that record what they receive
//! ([`upstream`]), certificates made at test time ([`certs`]), clients that pick
//! the exact wire protocol ([`client`]), byte-level peers for the edge tests ([`raw`]),
//! a real `redis-server` ([`redis`]), scratch folders that a later run removes
//! ([`scratch`]), and ways to wait without sleeping ([`wait`]).
//! Everything binds 127.0.0.1 port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod client;
pub mod gateway;
pub mod raw;
pub mod redis;
pub mod scratch;
pub mod sockets;
pub mod tokens;
pub mod upstream;
pub mod wait;

pub use client::{Conn, Proto, TlsClient};
pub use gateway::TestGateway;
pub use redis::{RedisServer, Sentinel};
pub use sockets::{dead_addr, read_to_close};
pub use upstream::{channel_body, empty, full, send_body, Upstream, UpstreamOptions};
pub use wait::{eventually, temp_path, Gate};
