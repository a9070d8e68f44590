//! HTTP glue on both sides of the proxy: the server side ([`server`]), upstream
//! connections, their pools ([`client`]) and their counts ([`conn_count`]), the edge's
//! request rules ([`edge`]), proxy header rules ([`headers`]), idle HTTP/1 connections
//! ([`park`]), and what an upstream response must be to pass ([`response_rules`]).

pub mod bare_reply;
pub mod client;
pub mod conn_count;
pub mod conn_state;
pub mod date;
pub mod edge;
pub mod h1;
pub mod h2;
pub mod headers;
pub mod park;
pub mod query;
pub mod response_rules;
mod rewind;
pub mod server;
