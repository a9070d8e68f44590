//! Route matching with 10,000 routes (hosts, wildcards, exact paths, prefixes, templates
//! and regexes): the cost of one `find` per kind of request, against a scan of every
//! route, and the cost of loading and indexing them. `cargo bench -p gatehouse-core
//! --bench routes`; figures in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse_config::{load, Format};
use gatehouse_core::route::{self, RouteTable};
use http::{HeaderMap, Method};
use std::fmt::Write;
use std::hint::black_box;

/// 10,000 routes as a config: 2,500 hosts with an exact path and a prefix each, 500
/// wildcard domains with a template and a catch-all each, and 4,000 host-less routes
/// (1,000 exact paths, 1,000 prefixes, 1,000 templates, 1,000 regexes).
fn config() -> String {
    let mut t = String::from("[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n");
    let mut route = |name: String, m: String| {
        let _ = write!(
            t,
            "[[routes]]\nname = \"{name}\"\nrespond = {{ status = 200 }}\nmatch = {{ {m} }}\n"
        );
    };
    for i in 0..2500 {
        route(
            format!("h{i}-health"),
            format!("host = \"svc{i}.example.com\", path = \"/health\""),
        );
        route(
            format!("h{i}-api"),
            format!(
                "host = \"svc{i}.example.com\", prefix = \"/api/v{}\"",
                i % 5
            ),
        );
    }
    for i in 0..500 {
        route(
            format!("w{i}-orders"),
            format!("host = \"*.t{i}.example.net\", path = \"/users/{{id}}/orders/{{order}}\""),
        );
        route(
            format!("w{i}-all"),
            format!("host = \"*.t{i}.example.net\", prefix = \"/\""),
        );
    }
    for i in 0..1000 {
        route(format!("e{i}"), format!("path = \"/exact/{i}\""));
        route(format!("p{i}"), format!("prefix = \"/p{i}/\""));
        route(format!("t{i}"), format!("path = \"/items/{{id}}/t{i}\""));
        route(format!("r{i}"), format!("regex = \"/r{i}/v[0-9]+/.*\""));
    }
    t
}

fn table(text: &str) -> RouteTable<String> {
    let spec = load(text, "routes.toml", Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    RouteTable::new(
        spec.routes
            .into_iter()
            .map(|r| (r.matcher, r.name))
            .collect(),
    )
}

/// (bench name, host, path, the route it must find).
const REQUESTS: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "exact-host-exact-path",
        "svc1234.example.com",
        "/health",
        Some("h1234-health"),
    ),
    (
        "exact-host-prefix",
        "svc77.example.com",
        "/api/v2/users/9",
        Some("h77-api"),
    ),
    (
        "wildcard-template",
        "a.t321.example.net",
        "/users/5/orders/8",
        Some("w321-orders"),
    ),
    ("any-host-exact", "other.org", "/exact/999", Some("e999")),
    ("any-host-prefix", "other.org", "/p500/a/b/c", Some("p500")),
    (
        "any-host-template",
        "other.org",
        "/items/42/t700",
        Some("t700"),
    ),
    ("any-host-regex", "other.org", "/r999/v12/x", Some("r999")),
    ("miss", "other.org", "/nothing/here", None),
];

fn matching(c: &mut Criterion) {
    let t = table(&config());
    let headers = HeaderMap::new();
    let mut g = c.benchmark_group("find-10k");
    for (name, host, path, want) in REQUESTS {
        let head = route::head(&Method::GET, host, path, None, &headers);
        assert_eq!(t.find(&head).map(String::as_str), *want, "{name}");
        assert_eq!(t.find_by_scan(&head).map(String::as_str), *want, "{name}");
        g.bench_function(*name, |b| b.iter(|| black_box(t.find(black_box(&head)))));
    }
    g.finish();
    let mut g = c.benchmark_group("scan-10k");
    g.sample_size(20);
    for (name, host, path, _) in REQUESTS
        .iter()
        .filter(|r| r.0 == "miss" || r.0 == "any-host-regex")
    {
        let head = route::head(&Method::GET, host, path, None, &headers);
        g.bench_function(*name, |b| {
            b.iter(|| black_box(t.find_by_scan(black_box(&head))))
        });
    }
    g.finish();
}

fn building(c: &mut Criterion) {
    let text = config();
    let mut g = c.benchmark_group("build-10k");
    g.sample_size(10);
    g.bench_function("load-config", |b| {
        b.iter(|| black_box(load(&text, "routes.toml", Format::Toml).is_ok()))
    });
    let spec = load(&text, "routes.toml", Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("index", |b| {
        b.iter_batched(
            || {
                spec.routes
                    .iter()
                    .map(|r| (r.matcher.clone(), ()))
                    .collect::<Vec<_>>()
            },
            |routes| black_box(RouteTable::new(routes).is_empty()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, matching, building);
criterion_main!(benches);
