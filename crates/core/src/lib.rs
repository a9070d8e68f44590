//! Gatehouse's data plane and control plane as a library. The request path, in module
//! order: [`listener`] accepts, [`tls`] terminates, [`http::server`] speaks HTTP/1.1 and
//! HTTP/2, [`proxy`] routes ([`route`]) and forwards through [`upstream`] groups and
//! [`http::client`] pools; [`body`] streams and finishes each response into the
//! [`access_log`] and [`metrics`]. [`runtime`] holds the compiled config snapshot and
//! [`gateway`] loads, reloads and drains it; [`admin`] exposes it. Layer-4 listeners
//! (TCP, UDP, TLS passthrough) hand their connections to [`l4`] instead of HTTP; [`copy`]
//! moves the bytes of their sessions and of upgraded tunnels; and
//! [`proxy_protocol`] reads and writes PROXY headers for both kinds. [`upgrade`] hands
//! the listening sockets to a new binary without closing them.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod body_edit;
pub mod consumer;
pub mod copy;
pub mod drain;
pub mod error;
pub mod filter;
pub mod gateway;
pub mod http;
pub mod l4;
pub mod limit;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod proxy_protocol;
pub mod route;
pub mod runtime;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod wake_gate;

pub use gateway::{Gateway, LoadErrors, Source};
