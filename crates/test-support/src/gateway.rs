//! A gateway running in the test's own runtime, started from TOML text.

use gatehouse_core::{Gateway, Source};
use std::net::SocketAddr;
use std::sync::Arc;

/// A running in-process gateway.
pub struct TestGateway {
    pub gw: Arc<Gateway>,
}

impl TestGateway {
    /// Starts a gateway from TOML text; panics with every config error if it is refused.
    pub async fn start(toml: &str) -> TestGateway {
        match Gateway::start(Source::Text {
            name: "test.toml".into(),
            text: toml.into(),
        })
        .await
        {
            Ok(gw) => TestGateway { gw },
            Err(e) => panic!("gateway refused its config:\n{e}"),
        }
    }

    /// The bound address of a listener.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.gw
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("no listener `{listener}`"))
    }

    /// `http://addr/path` for a listener.
    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.addr(listener), path)
    }

    /// The admin API's base URL.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.gw.admin_addr().expect("admin API not configured"),
            path
        )
    }
}
