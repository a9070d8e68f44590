//! A policy's key for one request: its parts' values joined by `|`, each value with `%`
//! and `|` escaped so that no two different lists of values make the same key. A part
//! the request lacks is a lone `%`, which no escaped value can be.

use crate::consumer::Caller;
use crate::filter::FilterCtx;
use gatehouse_config::spec::KeyPart;
use http::request::Parts;
use std::borrow::Cow;
use std::net::IpAddr;

/// Writes the key into `out`; false when a part is missing (`out` then holds the rest).
pub fn build(parts: &[KeyPart], head: &Parts, ctx: &FilterCtx<'_>, out: &mut String) -> bool {
    let caller = head.extensions.get::<Caller>();
    let mut whole = true;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        // An address needs no escaping: write it in place.
        if let KeyPart::Ip { v4, v6 } = p {
            write_masked(ctx.client_ip, *v4, *v6, out);
            continue;
        }
        match value(p, head, ctx, caller) {
            Some(v) => escape(&v, out),
            None => {
                out.push('%');
                whole = false;
            }
        }
    }
    whole
}

/// One part's value for this request, if it has one.
fn value<'a>(
    p: &'a KeyPart,
    head: &'a Parts,
    ctx: &FilterCtx<'a>,
    caller: Option<&'a Caller>,
) -> Option<Cow<'a, str>> {
    let identity = caller.map(|c| &*c.0);
    match p {
        KeyPart::Consumer => identity?.consumer_name().map(|n| Cow::Borrowed(&**n)),
        KeyPart::Credential => {
            let id = identity?;
            let cred = id.credential.as_deref()?;
            Some(Cow::Owned(format!("{}:{cred}", id.kind.word())))
        }
        KeyPart::Ip { .. } => None,
        KeyPart::Route => Some(Cow::Borrowed(ctx.route)),
        KeyPart::Header(name) => head
            .headers
            .get(name.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes())),
        KeyPart::Query(name) => head
            .uri
            .query()
            .and_then(|q| crate::http::query::values(q, name).next())
            .map(Cow::Borrowed),
        KeyPart::Claim(name) => match identity?.claims.as_ref()?.get(name.as_str())? {
            serde_json::Value::String(s) => Some(Cow::Owned(s.clone())),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
            serde_json::Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        },
    }
}

fn escape(v: &str, out: &mut String) {
    // Most values hold neither: copied whole.
    if !v.contains(['%', '|']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

fn write_masked(ip: IpAddr, v4: u8, v6: u8, out: &mut String) {
    match ip {
        IpAddr::V4(_) if v4 >= 32 => crate::http::headers::write_ip(ip, out),
        IpAddr::V6(a) if v6 >= 128 && a.to_ipv4_mapped().is_none() => {
            crate::http::headers::write_ip(ip, out)
        }
        _ => out.push_str(&masked(ip, v4, v6)),
    }
}

/// The network of `ip` at the part's prefix length (`10.1.2.0/24`), or the address.
fn masked(ip: IpAddr, v4: u8, v6: u8) -> String {
    match ip {
        IpAddr::V4(a) if v4 >= 32 => a.to_string(),
        IpAddr::V4(a) => {
            let bits = u32::from(a) & (u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0));
            format!("{}/{v4}", std::net::Ipv4Addr::from(bits))
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => masked(IpAddr::V4(m), v4, v6),
            None if v6 >= 128 => a.to_string(),
            None => {
                let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
                format!("{}/{v6}", std::net::Ipv6Addr::from(u128::from(a) & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grouped_by_their_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(masked(ip("10.1.2.3"), 24, 64), "10.1.2.0/24");
        assert_eq!(masked(ip("10.1.2.3"), 32, 128), "10.1.2.3");
        assert_eq!(masked(ip("10.1.2.3"), 0, 0), "0.0.0.0/0");
        assert_eq!(masked(ip("2001:db8:1:2:3::4"), 24, 64), "2001:db8:1:2::/64");
        assert_eq!(masked(ip("::ffff:10.1.2.3"), 16, 64), "10.1.0.0/16");
    }

    #[test]
    fn escaped_values_cannot_collide() {
        let mut a = String::new();
        escape("a|b", &mut a);
        a.push('|');
        escape("c", &mut a);
        let mut b = String::new();
        escape("a", &mut b);
        b.push('|');
        escape("b|c", &mut b);
        assert_ne!(a, b);
        let mut c = String::new();
        escape("%", &mut c);
        assert_eq!(c, "%25");
    }
}
