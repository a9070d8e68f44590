//! Validated config ([`Spec`]): defaults applied, names checked, units and regexes parsed.
//! The core compiles a `Spec` into its runtime snapshot; nothing here does I/O.

use regex::Regex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod auth;
mod limits;
mod mediation;
mod resilience;
pub use auth::*;
pub use limits::*;
pub use mediation::*;
pub use resilience::*;

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Spec {
    pub global: GlobalSpec,
    pub admin: Option<AdminSpec>,
    pub access_log: AccessLogSpec,
    pub listeners: Vec<ListenerSpec>,
    pub routes: Vec<RouteSpec>,
    pub upstreams: Vec<UpstreamSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub jwt_providers: Vec<JwtProviderSpec>,
    pub introspection: Vec<IntrospectionSpec>,
    pub rate_limits: Vec<RateLimitSpec>,
    pub redis: Option<RedisSpec>,
    /// What `check` should point out although it is valid (a stream that is buffered).
    pub warnings: Vec<String>,
}

impl Spec {
    /// The OpenAPI documents routes name, with the index of the route naming each.
    pub fn documents(&self) -> impl Iterator<Item = (usize, &PathBuf)> {
        self.routes.iter().enumerate().flat_map(|(i, r)| {
            r.filters.iter().filter_map(move |f| match f {
                FilterSpec::OpenApi(file) => Some((i, file)),
                _ => None,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalSpec {
    /// Worker threads; 1 runs everything on one thread.
    pub workers: usize,
    /// How long in-flight requests may run after SIGTERM.
    pub drain_timeout: Duration,
    /// Peers whose X-Forwarded-* / Forwarded headers are kept and appended to.
    pub trusted_proxies: Vec<IpNet>,
    /// The name put in `Via` and in local replies.
    pub server_name: String,
    /// Add a `Via` entry to forwarded requests.
    pub via: bool,
    /// Generate an X-Request-Id when a request has none, forward it and echo it on the
    /// response. Off, an incoming X-Request-Id passes as an ordinary header.
    pub request_id: bool,
}

/// An IP network (`10.0.0.0/8`, `::1/128`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSpec {
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not a loopback address.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSpec {
    pub enabled: bool,
    pub target: LogTarget,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    /// NCSA Common Log Format.
    Clf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    /// Accept HTTP/2 (ALPN `h2` on TLS, prior knowledge on plain).
    pub http2: bool,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub limits: LimitsSpec,
    /// Read a PROXY protocol header from peers in `global.trusted_proxies` (required
    /// from them, refused from anyone else).
    pub proxy_protocol: bool,
    /// The kernel hands a connection over only once its first bytes came
    /// (`TCP_DEFER_ACCEPT`): HTTP listeners, unless turned off; never layer-4 ones.
    pub defer_accept: bool,
    /// Checked on every request, on the client address after trusted forwarding.
    pub ip_rules: IpRulesSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    Http,
    Https(TlsSpec),
    /// Answers every request with a redirect to `https://host[:port]/path`.
    Redirect {
        https_port: u16,
    },
    /// Raw TCP connections balanced over `upstream`.
    Tcp {
        upstream: String,
    },
    /// UDP datagrams balanced per client flow (the client's address) over `upstream`.
    Udp {
        upstream: String,
        /// A flow with no datagram either way for this long ends.
        flow_idle_timeout: Duration,
    },
    /// TLS left unterminated: the upstream is chosen by the ClientHello's server name.
    TlsPassthrough(PassthroughSpec),
}

impl ListenerKind {
    /// Whether this listener speaks HTTP (and so has routes).
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            ListenerKind::Http | ListenerKind::Https(_) | ListenerKind::Redirect { .. }
        )
    }

    /// Whether the listener binds a UDP socket rather than a TCP one.
    pub fn is_udp(&self) -> bool {
        matches!(self, ListenerKind::Udp { .. })
    }

    /// The config word for this kind, for messages.
    pub fn word(&self) -> &'static str {
        match self {
            ListenerKind::Http => "http",
            ListenerKind::Https(_) => "https",
            ListenerKind::Redirect { .. } => "redirect",
            ListenerKind::Tcp { .. } => "tcp",
            ListenerKind::Udp { .. } => "udp",
            ListenerKind::TlsPassthrough(_) => "tls_passthrough",
        }
    }
}

/// Where a `tls_passthrough` listener sends each server name.
#[derive(Debug, Clone, PartialEq)]
pub struct PassthroughSpec {
    /// Lower-case names (`example.com` or `*.example.com`) and their upstreams.
    pub names: Vec<(String, String)>,
    /// The upstream for any other name (or none); `None` closes such connections.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSpec {
    pub certificates: Vec<CertSpec>,
    pub min_version: TlsVersion,
    pub client_auth: Option<ClientAuthSpec>,
    pub session_tickets: bool,
    /// Entries of the server-side session cache (0: none).
    pub session_cache: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names from config; empty means "take them from the certificate".
    pub names: Vec<String>,
    pub default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientAuthSpec {
    pub ca: PathBuf,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsSpec {
    pub max_header_size: usize,
    pub max_headers: usize,
    /// Request body limit in bytes; `None` is unlimited.
    pub max_body_size: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    /// Listener names this route serves; empty means every HTTP listener.
    pub listeners: Vec<String>,
    pub matcher: MatchSpec,
    pub action: ActionSpec,
    pub max_body_size: Option<u64>,
    /// Whole-request deadline (headers to end of response body); `None` is none.
    pub request_timeout: Option<Duration>,
    /// Filters in config order; the core runs them in stage order.
    pub filters: Vec<FilterSpec>,
    /// The most of a body read whole for a filter that needs it.
    pub body_buffer_limit: u64,
}

/// A filter on a route. Adding a filter means a variant here, a module under the core's
/// `filter/`, an arm in its `build` match, and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterSpec {
    /// Edits the request sent upstream (after the forwarding headers).
    RequestHeaders(HeaderRulesSpec),
    /// Edits the response sent to the client.
    ResponseHeaders(HeaderRulesSpec),
    /// Client networks let in and kept out (403).
    IpRules(IpRulesSpec),
    /// Credentials and access rules (401, 403).
    Auth(AuthSpec),
    /// An auth service's verdict on each request.
    ExternalAuth(ExternalAuthSpec),
    /// Names of the rate-limit policies checked (429).
    RateLimit(Vec<String>),
    /// Cross-origin rules; preflights answered here.
    Cors(CorsSpec),
    /// JSON Schema checks of the request (400).
    Validate(ValidateSpec),
    /// Requests checked against the operations of an OpenAPI document (400, 404, 405).
    OpenApi(PathBuf),
    /// JSON body edits.
    JsonTransform(BodySide, Vec<JsonStep>),
    /// Text replaced in a body as it streams.
    Replace(BodySide, ReplaceSpec),
    /// XML to JSON or JSON to XML, with the root element name for JSON to XML.
    XmlConvert(BodySide, XmlDirection, String),
    /// Upstream status mapping and error pages.
    Status(StatusSpec),
    /// Injected aborts and delays.
    Fault(FaultSpec),
    /// Upstream path from a template, query edits.
    Rewrite(RewriteSpec),
}

/// Header edits, names lower-case: set (replace), add (append), remove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderRulesSpec {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// Where the route's path parameters come from (request rules only), and their
    /// names, which values may use (`{id}`); read only when a value names one.
    pub captures: CaptureSource,
    pub capture_names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct MatchSpec {
    pub hosts: Vec<HostMatch>,
    pub path: PathMatch,
    pub methods: Vec<http::Method>,
    pub headers: Vec<FieldMatch>,
    pub query: Vec<FieldMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case name, no port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any name ending in it.
    Suffix(String),
}

#[derive(Debug, Clone, Default)]
pub enum PathMatch {
    #[default]
    Any,
    Exact(String),
    Prefix(String),
    Template(Vec<Segment>),
    Regex(Regex),
}

/// One segment of a `/users/{id}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
    /// `{name*}` as the last segment: the rest of the path.
    Rest(String),
}

#[derive(Debug, Clone)]
pub struct FieldMatch {
    /// Header names are lower-case; query names as written.
    pub name: String,
    pub kind: FieldKind,
}

#[derive(Debug, Clone)]
pub enum FieldKind {
    Exact(String),
    Regex(Regex),
    Present,
    Absent,
}

#[derive(Debug, Clone)]
pub enum ActionSpec {
    Proxy(ProxySpec),
    Respond(RespondSpec),
    Redirect(RedirectSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub upstream: String,
    pub strip_prefix: Option<String>,
    pub replace_prefix: Option<String>,
    pub host_rewrite: Option<String>,
    pub preserve_host: bool,
    /// Also send RFC 7239 `Forwarded`.
    pub forwarded: bool,
    /// Deadline for the upstream's response headers.
    pub upstream_response_timeout: Duration,
    /// Versions, splits (canaries) and mirroring; boxed, as most routes have none.
    pub traffic: Box<TrafficSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RespondSpec {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedirectSpec {
    /// Target; `{path}` and `{query}` are replaced by the request's.
    pub to: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    pub name: String,
    pub endpoints: Vec<EndpointSpec>,
    pub protocol: UpstreamProtocol,
    pub balancer: BalancerKind,
    /// What a hashing balancer hashes; `None` for the others.
    pub hash_on: Option<HashOn>,
    pub tls: Option<UpstreamTlsSpec>,
    pub pool: PoolSpec,
    pub connect_timeout: Duration,
    pub resilience: ResilienceSpec,
    /// PROXY protocol header sent first on each layer-4 connection.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
}

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocolVersion {
    /// The text form: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary form.
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    /// `host:port` as written.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalancerKind {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest requests in flight relative to weight.
    LeastConn,
    /// Weighted random.
    Random,
    /// Power of two choices: two weighted random picks, the one with fewer in flight.
    PowerOfTwo,
    /// A ring of virtual nodes (weight-proportional) over a request key.
    ConsistentHash,
}

/// The request key a hashing balancer uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashOn {
    ClientIp,
    /// Lower-case header name.
    Header(String),
    Cookie(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTlsSpec {
    pub ca: Option<PathBuf>,
    /// Server name sent and verified; defaults to the endpoint's host.
    pub sni: Option<String>,
    pub verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    pub max_idle_per_endpoint: usize,
    /// 0 is unlimited.
    pub max_connections_per_endpoint: usize,
    pub idle_timeout: Duration,
}

// === impl IpNet ===

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map(V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (V4(n), V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (V6(n), V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    (a[full] & mask) == (b[full] & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_contains() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = IpNet::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("banana").is_none());
    }
}
