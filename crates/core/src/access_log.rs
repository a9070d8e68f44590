//! The access log: one line per request, JSON or Common Log Format, written when the
//! response body ends (so bytes out and duration are final), to stdout, stderr or a file.
//! [`Completion`] is what the response body carries to do that and to record metrics.
//! Layer-4 connections and UDP flows write one [`L4Record`] line each when they end.

use crate::metrics::RouteMetrics;
use crate::upstream::endpoint::InFlight;
use gatehouse_config::spec::{AccessLogSpec, LogFormat, LogTarget};
use http::{HeaderValue, Method, Version};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::time::Instant;

/// Where and how access lines are written.
pub struct AccessLog {
    pub spec: AccessLogSpec,
    sink: Sink,
}

enum Sink {
    Stdout,
    Stderr,
    File(Mutex<File>),
}

/// Request bytes: known from Content-Length, or counted while streaming.
pub enum BytesIn {
    Known(u64),
    Counted(Arc<AtomicU64>),
}

/// Everything an access line says about one request.
pub struct LogRecord {
    pub log: Arc<AccessLog>,
    pub time: SystemTime,
    pub client: SocketAddr,
    pub method: Method,
    pub version: Version,
    pub host: String,
    pub target: String,
    pub bytes_in: BytesIn,
    pub route: Option<Arc<str>>,
    /// The consumer the auth stage found, when there is one.
    pub consumer: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub endpoint: Option<Arc<str>>,
    pub request_id: HeaderValue,
    pub user_agent: Option<HeaderValue>,
    pub status: u16,
}

/// Finishes a request when its response body ends: metrics, in-flight count, log line.
pub struct Completion {
    pub start: Instant,
    pub status: u16,
    pub metrics: Arc<RouteMetrics>,
    pub in_flight: Option<InFlight>,
    pub log: Option<Box<LogRecord>>,
    /// What the filters carried to the response (a concurrency place), dropped at the
    /// end of the body.
    pub held: Option<crate::filter::Held>,
}

/// Everything an access line says about one layer-4 connection or UDP flow.
#[derive(Serialize)]
pub struct L4Record<'a> {
    #[serde(skip)]
    pub time: SystemTime,
    #[serde(serialize_with = "ip_only")]
    pub client: SocketAddr,
    /// `tcp`, `tls_passthrough` or `udp`.
    pub protocol: &'static str,
    pub listener: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(serialize_with = "millis")]
    pub duration_ms: f64,
    /// Why the connection ended early (`no_endpoint`, `idle_timeout`, ...), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

fn ip_only<S: serde::Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&a.ip())
}

fn millis<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((ms * 1000.0).round() / 1000.0)
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    client: String,
    method: &'a str,
    protocol: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<&'a str>,
    upstream: Option<&'a str>,
    endpoint: Option<&'a str>,
    request_id: &'a str,
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    aborted: bool,
}

// === impl AccessLog ===

impl AccessLog {
    /// Opens the target (a file is appended to and created if missing).
    pub fn open(spec: &AccessLogSpec) -> std::io::Result<Self> {
        let sink = match &spec.target {
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(p) => Sink::File(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        };
        Ok(AccessLog {
            spec: spec.clone(),
            sink,
        })
    }

    /// Writes the line of a layer-4 connection: JSON with its own fields (a `time` first,
    /// like request lines), or CLF with `"PROTOCOL listener endpoint"` as the request and
    /// `-` as the status.
    pub fn write_l4(&self, r: &L4Record<'_>) {
        let mut line = match self.spec.format {
            LogFormat::Json => {
                #[derive(Serialize)]
                struct Line<'a> {
                    time: &'a str,
                    #[serde(flatten)]
                    rec: &'a L4Record<'a>,
                }
                let time = rfc3339(r.time);
                serde_json::to_vec(&Line {
                    time: &time,
                    rec: r,
                })
                .unwrap_or_default()
            }
            LogFormat::Clf => format!(
                "{} - - [{}] \"{} {} {}\" - {}",
                r.client.ip(),
                clf_time(r.time),
                r.protocol.to_ascii_uppercase(),
                r.listener,
                r.endpoint.unwrap_or("-"),
                r.bytes_out
            )
            .into_bytes(),
        };
        line.push(b'\n');
        self.write_line(&line);
    }

    fn write_line(&self, line: &[u8]) {
        // One write per line so concurrent writers never interleave within a line.
        let r = match &self.sink {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::Stderr => std::io::stderr().lock().write_all(line),
            Sink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(line),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "access log write failed");
        }
    }
}

// === impl Completion ===

impl Completion {
    pub fn finish(self, bytes_out: u64, ok: bool) {
        let elapsed = self.start.elapsed();
        self.metrics.record(self.status, elapsed.as_secs_f64());
        if let Some(rec) = self.log {
            rec.write(bytes_out, elapsed.as_secs_f64() * 1000.0, !ok);
        }
        drop(self.in_flight);
        drop(self.held);
    }
}

// === impl LogRecord ===

impl LogRecord {
    fn write(&self, bytes_out: u64, duration_ms: f64, aborted: bool) {
        let bytes_in = match &self.bytes_in {
            BytesIn::Known(n) => *n,
            BytesIn::Counted(c) => c.load(Ordering::Relaxed),
        };
        let mut line = match self.log.spec.format {
            LogFormat::Json => {
                let time = rfc3339(self.time);
                let j = JsonLine {
                    time: &time,
                    client: self.client.ip().to_string(),
                    method: self.method.as_str(),
                    protocol: version_str(self.version),
                    host: &self.host,
                    path: &self.target,
                    status: self.status,
                    bytes_in,
                    bytes_out,
                    duration_ms: (duration_ms * 1000.0).round() / 1000.0,
                    route: self.route.as_deref(),
                    consumer: self.consumer.as_deref(),
                    upstream: self.upstream.as_deref(),
                    endpoint: self.endpoint.as_deref(),
                    request_id: self.request_id.to_str().unwrap_or("-"),
                    user_agent: self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
                    aborted,
                };
                serde_json::to_vec(&j).unwrap_or_default()
            }
            LogFormat::Clf => format!(
                "{} - - [{}] \"{} {} {}\" {} {}",
                self.client.ip(),
                clf_time(self.time),
                self.method,
                self.target,
                version_str(self.version),
                self.status,
                bytes_out
            )
            .into_bytes(),
        };
        line.push(b'\n');
        self.log.write_line(&line);
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/0.9",
    }
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        d.subsec_millis(),
    )
}

fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_formats() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(971_211_336_123);
        assert_eq!(rfc3339(t), "2000-10-10T20:55:36.123Z");
        assert_eq!(clf_time(t), "10/Oct/2000:20:55:36 +0000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(rfc3339(leap), "2024-02-29T00:00:00.000Z");
    }
}
