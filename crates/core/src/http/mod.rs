//! HTTP glue on both sides of the proxy: the server side ([`server`]), upstream
//! connections and their pools ([`client`]), and proxy header rules ([`headers`]).

pub mod client;
pub mod conn_state;
pub mod headers;
pub mod server;
