use super::*;
use gatehouse_config::{load, Format};

/// Builds a table from `[[routes]]` TOML; each route's payload is its name.
fn table(routes: &str) -> RouteTable<String> {
    let text = format!("[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n{routes}");
    let spec = load(&text, "t.toml", Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    RouteTable::new(
        spec.routes
            .into_iter()
            .map(|r| (r.matcher, r.name))
            .collect(),
    )
}

fn find<'a>(
    t: &'a RouteTable<String>,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<&'a str> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let host = normalize_host(host);
    t.find(&head(&method, &host, path, query, &map))
        .map(|s| s.as_str())
}

fn r(name: &str, m: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nrespond = {{ status = 200 }}\n[routes.match]\n{m}\n")
}

#[test]
fn exact_host_beats_wildcard_beats_any() {
    let t = table(
        &[
            r("any", ""),
            r("wild", "host = \"*.example.com\""),
            r("exact", "host = \"api.example.com\""),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "api.example.com", "/", &[]), Some("exact"));
    assert_eq!(
        find(&t, "GET", "API.Example.com:8443", "/", &[]),
        Some("exact")
    );
    assert_eq!(find(&t, "GET", "www.example.com", "/", &[]), Some("wild"));
    assert_eq!(find(&t, "GET", "example.com", "/", &[]), Some("any"));
    assert_eq!(find(&t, "GET", "other.org", "/", &[]), Some("any"));
}

#[test]
fn longer_wildcard_wins() {
    let t = table(
        &[
            r("short", "host = \"*.example.com\""),
            r("long", "host = \"*.eu.example.com\""),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "a.eu.example.com", "/", &[]), Some("long"));
    assert_eq!(find(&t, "GET", "a.us.example.com", "/", &[]), Some("short"));
}

#[test]
fn path_precedence_exact_template_prefix_regex() {
    let t = table(
        &[
            r("regex", "regex = \"/users/[0-9]+\""),
            r("prefix", "prefix = \"/users\""),
            r("longprefix", "prefix = \"/users/admin\""),
            r("template", "path = \"/users/{id}\""),
            r("exact", "path = \"/users/me\""),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "h", "/users/me", &[]), Some("exact"));
    assert_eq!(find(&t, "GET", "h", "/users/42", &[]), Some("template"));
    assert_eq!(
        find(&t, "GET", "h", "/users/admin/x", &[]),
        Some("longprefix")
    );
    assert_eq!(find(&t, "GET", "h", "/users/1/files", &[]), Some("prefix"));
    assert_eq!(find(&t, "GET", "h", "/users", &[]), Some("prefix"));
    assert_eq!(find(&t, "GET", "h", "/usersx", &[]), None);
}

#[test]
fn regex_is_anchored() {
    let t = table(&r("re", "regex = \"/v[0-9]+/items\""));
    assert_eq!(find(&t, "GET", "h", "/v2/items", &[]), Some("re"));
    assert_eq!(find(&t, "GET", "h", "/x/v2/items", &[]), None);
    assert_eq!(find(&t, "GET", "h", "/v2/items/1", &[]), None);
}

#[test]
fn template_rest_and_empty_segments() {
    let t = table(
        &[
            r("files", "path = \"/files/{path*}\""),
            r("one", "path = \"/u/{id}/x\""),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "h", "/files/a/b/c", &[]), Some("files"));
    assert_eq!(find(&t, "GET", "h", "/u/7/x", &[]), Some("one"));
    assert_eq!(find(&t, "GET", "h", "/u//x", &[]), None);
    assert_eq!(find(&t, "GET", "h", "/u/7/x/y", &[]), None);
}

#[test]
fn method_header_query_conditions() {
    let t = table(
        &[
            r("plain", "prefix = \"/\""),
            r("post", "prefix = \"/\"\nmethod = [\"POST\", \"put\"]"),
            r(
                "canary",
                "prefix = \"/\"\nheaders = [{ name = \"X-Canary\", value = \"1\" }]",
            ),
            r(
                "beta",
                "prefix = \"/\"\nquery = [{ name = \"beta\", present = true }]",
            ),
            r(
                "ua",
                "prefix = \"/\"\nheaders = [{ name = \"user-agent\", regex = \"curl/.*\" }]",
            ),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "h", "/", &[]), Some("plain"));
    assert_eq!(find(&t, "PUT", "h", "/", &[]), Some("post"));
    assert_eq!(
        find(&t, "GET", "h", "/", &[("x-canary", "1")]),
        Some("canary")
    );
    assert_eq!(
        find(&t, "GET", "h", "/", &[("x-canary", "2")]),
        Some("plain")
    );
    assert_eq!(find(&t, "GET", "h", "/?a=1&beta", &[]), Some("beta"));
    assert_eq!(
        find(&t, "GET", "h", "/", &[("user-agent", "curl/8.0")]),
        Some("ua")
    );
}

#[test]
fn more_conditions_win_then_config_order() {
    let t = table(
        &[
            r("first", "prefix = \"/a\""),
            r("second", "prefix = \"/a\""),
            r("with_method", "prefix = \"/a\"\nmethod = \"GET\""),
        ]
        .concat(),
    );
    assert_eq!(find(&t, "GET", "h", "/a", &[]), Some("with_method"));
    assert_eq!(find(&t, "POST", "h", "/a", &[]), Some("first"));
}

#[test]
fn normalize_host_forms() {
    assert_eq!(normalize_host("Example.COM:8080"), "example.com");
    assert_eq!(normalize_host("example.com."), "example.com");
    assert_eq!(normalize_host("[::1]:80"), "[::1]");
    assert_eq!(normalize_host("::1"), "::1");
}

/// Found by the `route` fuzz target: normalising must give the same host the second
/// time, for every host the edge lets through.
#[test]
fn host_normalising_is_idempotent_on_valid_hosts() {
    for raw in [
        "A.EXAMPLE.COM.",
        "a..",
        "a.:80",
        "[::1]:8080",
        "x:",
        "EXAMPLE.com.:443",
    ] {
        assert!(crate::http::edge::valid_host(raw.as_bytes()), "{raw}");
        let once = normalize_host(raw);
        assert_eq!(normalize_host(&once), once, "{raw}");
    }
    assert_eq!(normalize_host("a.."), "a");
}

/// The index gives the answer of a scan of every route against the precedence rules,
/// for random route sets and requests over a small vocabulary (so that they collide).
mod index_against_scan {
    use super::*;
    use gatehouse_config::spec::{FieldKind, FieldMatch};
    use proptest::prelude::*;

    const SEGS: &[&str] = &["a", "b", "api", "v1", ""];
    const HOSTS: &[&str] = &["x.com", "a.x.com", "b.a.x.com", "other.org"];
    const REGEXES: &[&str] = &["/a/[a-z]+", ".*b", "/(api|v1)/.*", "(?i)/API/v1", "/a?", ""];

    fn path_of(segs: &[usize], slash: bool) -> String {
        let mut p: String = segs.iter().map(|s| format!("/{}", SEGS[*s])).collect();
        if slash || p.is_empty() {
            p.push('/');
        }
        p
    }

    fn segment(i: usize) -> Segment {
        match i {
            0 => Segment::Param("p".into()),
            i => Segment::Literal(SEGS[i - 1].into()),
        }
    }

    prop_compose! {
        fn route()(
            hosts in proptest::collection::vec((0..6usize, 0..HOSTS.len()), 0..3),
            kind in 0..6usize,
            segs in proptest::collection::vec(0..SEGS.len(), 0..4),
            tsegs in proptest::collection::vec(0..=SEGS.len(), 0..4),
            rest in any::<bool>(),
            slash in any::<bool>(),
            re in 0..REGEXES.len(),
            method in 0..3usize,
            header in 0..4usize,
            query in any::<bool>(),
        ) -> MatchSpec {
            let hosts = hosts.into_iter().filter_map(|(k, h)| match k {
                0 | 1 => Some(HostMatch::Exact(HOSTS[h].into())),
                2 => Some(HostMatch::Suffix(".x.com".into())),
                3 => Some(HostMatch::Suffix(".a.x.com".into())),
                _ => None,
            }).collect();
            let path = match kind {
                0 => PathMatch::Exact(path_of(&segs, slash)),
                1 => PathMatch::Prefix(path_of(&segs, slash)),
                2 => {
                    let mut t: Vec<Segment> = tsegs.into_iter().map(segment).collect();
                    if rest {
                        t.push(Segment::Rest("r".into()));
                    }
                    PathMatch::Template(t)
                }
                3 => PathMatch::Regex(regex::Regex::new(&format!("^(?:{})$", REGEXES[re])).unwrap()),
                _ => PathMatch::Any,
            };
            let methods = match method {
                0 => vec![],
                1 => vec![Method::GET],
                _ => vec![Method::POST, Method::PUT],
            };
            let headers = match header {
                0 => vec![],
                1 => vec![FieldMatch { name: "x-a".into(), kind: FieldKind::Present }],
                2 => vec![FieldMatch { name: "x-a".into(), kind: FieldKind::Absent }],
                _ => vec![FieldMatch { name: "x-a".into(), kind: FieldKind::Exact("1".into()) }],
            };
            let query = if query {
                vec![FieldMatch { name: "q".into(), kind: FieldKind::Present }]
            } else {
                vec![]
            };
            MatchSpec { hosts, path, methods, headers, query }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn same_route_as_a_scan(
            routes in proptest::collection::vec(route(), 0..24),
            requests in proptest::collection::vec(
                (0..HOSTS.len(), proptest::collection::vec(0..SEGS.len(), 0..5),
                 any::<bool>(), any::<bool>(), 0..3usize, any::<bool>()),
                1..16,
            ),
        ) {
            let t = RouteTable::new(routes.into_iter().enumerate().map(|(i, m)| (m, i)).collect());
            for (h, segs, slash, post, header, query) in requests {
                let method = if post { Method::POST } else { Method::GET };
                let path = path_of(&segs, slash);
                let mut map = HeaderMap::new();
                if header > 0 {
                    map.insert("x-a", if header == 1 { "1" } else { "2" }.parse().unwrap());
                }
                let q = query.then_some("q=1");
                let head = head(&method, HOSTS[h], &path, q, &map);
                prop_assert_eq!(t.find(&head), t.find_by_scan(&head), "{} {}{}", method, HOSTS[h], path);
            }
        }
    }
}
