//! Dev-only fixtures shared by the end-to-end tests: an in-process gateway started from
//! config text ([`gateway`]), upstream servers that record what they receive
//! ([`upstream`]), and certificates made at test time ([`certs`]). Everything binds
//! 127.0.0.1 port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod gateway;
pub mod upstream;

pub use gateway::TestGateway;
pub use upstream::{Upstream, UpstreamOptions};
