//! Client networks a route lets in and keeps out (403), on the client address after
//! PROXY protocol and trusted `X-Forwarded-For` handling.

use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{local_reply, ErrorKind};
use gatehouse_config::spec::IpRulesSpec;
use http::request;

pub struct IpRules(pub IpRulesSpec);

impl Filter for IpRules {
    fn name(&self) -> &'static str {
        "ip_rules"
    }

    fn stage(&self) -> Stage {
        Stage::Auth
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        _head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        let flow = if self.0.admits(ctx.client_ip) {
            Flow::Continue
        } else {
            let msg = format!(
                "client address {} is not allowed on this route",
                ctx.client_ip
            );
            Flow::Respond(Box::new(local_reply(
                ErrorKind::Forbidden,
                &msg,
                ctx.request_id,
            )))
        };
        FilterFuture::ready(flow)
    }
}
