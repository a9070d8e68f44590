//! The seam for requests the auth stage makes to other services (a key set, token
//! introspection, an external auth check). The runtime, which owns the upstream
//! groups, hands in a [`Call`] that sends through one; filters never reach `proxy`.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A request to send: the path carries the query.
pub struct Ask {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// The answer, its body read whole (bounded).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type CallFuture = Pin<Box<dyn Future<Output = Result<Answer, String>> + Send>>;

/// Sends an [`Ask`] through one upstream group.
pub type Call = Arc<dyn Fn(Ask) -> CallFuture + Send + Sync>;

impl Ask {
    pub fn get(path: impl Into<String>) -> Ask {
        Ask {
            method: Method::GET,
            path: path.into(),
            headers: HeaderMap::new(),
            body: None,
        }
    }
}
