use super::*;
use gatehouse_config::spec::HeaderRulesSpec;

fn rules() -> HeaderRulesSpec {
    HeaderRulesSpec {
        set: vec![("x-env".into(), "prod".into())],
        add: vec![("x-tag".into(), "b".into())],
        remove: vec!["x-secret".into(), "x-tag".into()],
        ..Default::default()
    }
}

/// Builds a chain with no consumers or providers.
fn chain(specs: &[FilterSpec]) -> Chain {
    let auth = auth::AuthRt::default();
    let metrics = crate::metrics::Metrics::new();
    let limits = std::collections::HashMap::new();
    let openapi = std::collections::HashMap::new();
    Chain::new(
        specs,
        &BuildCtx {
            auth: &auth,
            limits: &limits,
            metrics: &metrics,
            route: "r",
            openapi: &openapi,
        },
    )
}

fn ctx_parts() -> (HeaderValue, request::Parts) {
    let mut req = http::Request::new(());
    let h = req.headers_mut();
    h.insert("x-env", HeaderValue::from_static("dev"));
    h.insert("x-secret", HeaderValue::from_static("1"));
    h.append("x-tag", HeaderValue::from_static("a"));
    (HeaderValue::from_static("id"), req.into_parts().0)
}

#[tokio::test]
async fn request_rules_remove_then_set_then_add() {
    let chain = chain(&[FilterSpec::RequestHeaders(rules())]);
    let (id, mut head) = ctx_parts();
    let ctx = FilterCtx {
        request_id: &id,
        client: "127.0.0.1:1".parse().unwrap(),
        client_ip: "127.0.0.1".parse().unwrap(),
        client_cert: None,
        route: "r",
    };
    assert!(matches!(
        chain.on_request(&mut head, &ctx).await,
        Flow::Continue
    ));
    assert_eq!(head.headers["x-env"], "prod");
    assert!(!head.headers.contains_key("x-secret"));
    let tags: Vec<_> = head.headers.get_all("x-tag").iter().collect();
    assert_eq!(tags, vec!["b"]);
}

#[tokio::test]
async fn response_rules_leave_the_request_alone() {
    let chain = chain(&[FilterSpec::ResponseHeaders(rules())]);
    let (id, mut head) = ctx_parts();
    let ctx = FilterCtx {
        request_id: &id,
        client: "127.0.0.1:1".parse().unwrap(),
        client_ip: "127.0.0.1".parse().unwrap(),
        client_cert: None,
        route: "r",
    };
    let _ = chain.on_request(&mut head, &ctx).await;
    assert_eq!(head.headers["x-env"], "dev");
    let mut resp = http::Response::new(()).into_parts().0;
    resp.headers
        .insert("x-secret", HeaderValue::from_static("1"));
    chain.on_response(&mut resp, &ctx);
    assert_eq!(resp.headers["x-env"], "prod");
    assert!(!resp.headers.contains_key("x-secret"));
}

#[test]
fn chain_sorts_by_stage_keeping_config_order() {
    let chain = chain(&[
        FilterSpec::ResponseHeaders(rules()),
        FilterSpec::RequestHeaders(rules()),
    ]);
    let names: Vec<_> = chain.filters.iter().map(|f| f.name()).collect();
    assert_eq!(names, vec!["response_headers", "request_headers"]);
}
