//! The raw request corpus: each case is the bytes a client writes, the status it must
//! get back, and what the origin behind Gatehouse may see. Shared by the refusal tests
//! (`requests`) and the differential run (`differential`); the fuzz target for the edge
//! rules is seeded from the same bytes.

use gatehouse_test_support::raw::SeenRequest;

/// What the origin may see of a case.
pub enum Origin {
    /// No complete request.
    Nothing,
    /// Exactly one request, which this check accepts.
    One(fn(&SeenRequest)),
}

pub struct Case {
    pub name: &'static str,
    pub raw: &'static [u8],
    /// The status of the response the client gets.
    pub status: u16,
    pub origin: Origin,
}

const fn refused(name: &'static str, raw: &'static [u8], status: u16) -> Case {
    Case {
        name,
        raw,
        status,
        origin: Origin::Nothing,
    }
}

const fn passed(name: &'static str, raw: &'static [u8], check: fn(&SeenRequest)) -> Case {
    Case {
        name,
        raw,
        status: 200,
        origin: Origin::One(check),
    }
}

/// Headers that never reach an origin: hop-by-hop (RFC 9110 7.6.1) and the h2c upgrade.
pub const NEVER_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "http2-settings",
    "trailer",
];

fn plain(r: &SeenRequest) {
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/");
}

pub const CASES: &[Case] = &[
    // Methods and request-target forms (RFC 9112 3.2, RFC 9110 9.3.6, 9.3.8).
    refused("connect", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405),
    refused("trace", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    refused("asterisk_with_get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    refused("authority_form_get", b"GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    refused("absolute_ftp", b"GET ftp://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    refused("absolute_userinfo", b"GET http://u:p@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    refused("absolute_without_host", b"GET http://a.example/x HTTP/1.1\r\n\r\n", 400),
    refused("options_star", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    refused("options_max_forwards_0", b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n", 200),
    refused("max_forwards_not_a_number", b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: x\r\n\r\n", 400),
    // Host (RFC 9112 3.2, RFC 9110 4.2.1, 7.2, RFC 3986 3.2.2).
    refused("no_host", b"GET / HTTP/1.1\r\n\r\n", 400),
    refused("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    refused("two_hosts_differ", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    refused("empty_host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    refused("host_with_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    refused("host_with_userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    refused("host_with_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    refused("host_unclosed_ipv6", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    refused("host_bad_ipv6", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    refused("host_port_letters", b"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", 400),
    refused("host_port_too_big", b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
    refused("host_two_ports", b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    // Transfer codings and framing (RFC 9112 6, 7).
    refused("chunked_twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    refused("chunked_twice_two_lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    refused("coding_after_chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    refused("unknown_coding_alone", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n", 400),
    refused("xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    refused("gzip_before_chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    refused("unknown_before_chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    refused("chunked_on_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    refused("bad_chunk_size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400),
    refused("chunk_size_overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n\r\n", 400),
    refused("chunk_lines_lf_only", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n", 400),
    refused("two_content_lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    refused("content_length_list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab", 400),
    refused("content_length_negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    refused("content_length_plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400),
    // Expectations (RFC 9110 10.1.1).
    refused("unknown_expectation", b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na", 417),
    // Field syntax (RFC 9112 5, RFC 9110 5.5).
    refused("obs_fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  2\r\n\r\n", 400),
    refused("space_before_colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", 400),
    refused("space_before_first_field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    refused("nul_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", 400),
    refused("cr_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400),
    refused("control_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x012\r\n\r\n", 400),
    refused("del_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x7f2\r\n\r\n", 400),
    refused("bad_field_name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400),
    refused("empty_field_name", b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400),
    // Request lines (RFC 9112 2.3, 3).
    refused("bad_method_token", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    refused("http09_request", b"GET /\r\n\r\n", 400),
    refused("http20_request_line", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    refused("http12_request_line", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    refused("lower_case_version", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    refused("space_in_target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    refused("bare_cr_line_end", b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    // Passed, and what the origin sees of them.
    passed("plain", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", plain),
    passed("lf_only_lines", b"GET / HTTP/1.1\nHost: a\n\n", plain),
    passed("http10_without_host", b"GET / HTTP/1.0\r\n\r\n", plain),
    passed(
        "h2c_upgrade",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        |r| {
            assert!(r.get("upgrade").is_none(), "{r:?}");
            assert!(r.get("http2-settings").is_none(), "{r:?}");
        },
    ),
    passed(
        "absolute_form",
        b"GET http://b.example/x?y=1 HTTP/1.1\r\nHost: c.example\r\n\r\n",
        |r| {
            assert_eq!(r.target, "/x?y=1");
            assert_eq!(r.get("x-forwarded-host").as_deref(), Some("b.example"));
        },
    ),
    passed(
        "te_and_content_length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        |r| {
            assert!(r.get("content-length").is_none(), "{r:?}");
            assert_eq!(r.body, b"abc");
        },
    ),
    passed(
        "chunk_extension",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=\"v\"\r\nx\r\n0\r\n\r\n",
        |r| assert_eq!(r.body, b"x"),
    ),
    passed(
        "connection_named_fields",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n",
        |r| assert!(r.get("x-secret").is_none(), "{r:?}"),
    ),
    passed(
        "connection_cannot_name_framing",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host\r\nContent-Length: 3\r\n\r\nabc",
        |r| {
            assert_eq!(r.body, b"abc");
            assert!(r.get("host").is_some());
        },
    ),
    passed(
        "te_trailers_kept_others_dropped",
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
        |r| assert_eq!(r.get("te").as_deref(), Some("trailers")),
    ),
    passed(
        "te_other_dropped",
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n",
        |r| assert!(r.get("te").is_none(), "{r:?}"),
    ),
    passed(
        "options_max_forwards_decremented",
        b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 3\r\n\r\n",
        |r| assert_eq!(r.get("max-forwards").as_deref(), Some("2")),
    ),
    passed(
        "expect_continue",
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        |r| assert_eq!(r.body, b"abc"),
    ),
    passed(
        "forwarded_for_from_untrusted",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n\r\n",
        |r| {
            assert_eq!(r.all("x-forwarded-for"), ["127.0.0.1"]);
            assert_eq!(r.get("x-forwarded-host").as_deref(), Some("a"));
        },
    ),
    passed(
        "proxy_authorization_dropped",
        b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
        |r| assert!(r.get("proxy-authorization").is_none()),
    ),
    passed(
        "upper_case_host",
        b"GET / HTTP/1.1\r\nHost: A.EXAMPLE\r\n\r\n",
        |r| assert_eq!(r.get("x-forwarded-host").as_deref(), Some("A.EXAMPLE")),
    ),
    passed(
        "ipv6_host",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        plain,
    ),
    passed(
        "extension_method",
        b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n",
        |r| assert_eq!(r.method, "PURGE"),
    ),
];
