//! Sticky sessions by cookie: the cookie names an endpoint by a stable id (a hash of
//! its address) and carries an HMAC-SHA256 tag over the group and that id, so a client
//! cannot steer itself to an endpoint of its choice. An endpoint that is gone, down or
//! draining is ignored and the balancer picks again (and a new cookie is set).

use super::lb::hash_bytes;
use super::Endpoint;
use aws_lc_rs::hmac;
use gatehouse_config::spec::StickySpec;
use http::{header, HeaderMap, HeaderValue};
use std::fmt::Write as _;
use std::sync::Arc;

/// Bytes of the tag kept in the cookie: 128 bits is beyond guessing.
const TAG_LEN: usize = 16;

pub struct Sticky {
    spec: StickySpec,
    key: hmac::Key,
    group: String,
    /// Each endpoint's id, by index.
    ids: Vec<u64>,
    /// `; Path=/; SameSite=Lax; ...`, built once.
    attributes: String,
}

impl Sticky {
    pub fn new(spec: &StickySpec, group: &str, endpoints: &[Arc<Endpoint>]) -> Self {
        let mut attributes = format!("; Path={}", spec.path);
        if let Some(ttl) = spec.ttl {
            let _ = write!(attributes, "; Max-Age={}", ttl.as_secs());
        }
        let _ = write!(attributes, "; SameSite={}", spec.same_site.as_str());
        if spec.secure {
            attributes.push_str("; Secure");
        }
        if spec.http_only {
            attributes.push_str("; HttpOnly");
        }
        Sticky {
            key: hmac::Key::new(hmac::HMAC_SHA256, spec.secret.as_bytes()),
            spec: spec.clone(),
            group: group.to_string(),
            ids: endpoints
                .iter()
                .map(|e| hash_bytes(e.spec.address.as_bytes()))
                .collect(),
            attributes,
        }
    }

    fn tag(&self, id: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(self.group.as_bytes());
        ctx.update(b"\0");
        ctx.update(&id.to_be_bytes());
        ctx.sign()
    }

    /// The endpoint index a valid cookie in `headers` names.
    pub fn endpoint(&self, headers: &HeaderMap) -> Option<usize> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.spec.cookie)?
            .1;
        let (id, tag) = value.split_once('.')?;
        let id = u64::from_str_radix(id, 16).ok()?;
        let tag = decode_hex(tag)?;
        let expected = self.tag(id);
        // Constant-time comparison of the truncated tag.
        if tag.len() != TAG_LEN
            || aws_lc_rs::constant_time::verify_slices_are_equal(
                &expected.as_ref()[..TAG_LEN],
                &tag,
            )
            .is_err()
        {
            return None;
        }
        self.ids.iter().position(|x| *x == id)
    }

    /// The `Set-Cookie` value naming endpoint `i`.
    pub fn set_cookie(&self, i: usize) -> Option<HeaderValue> {
        let id = *self.ids.get(i)?;
        let mut v = format!("{}={id:016x}.", self.spec.cookie);
        for b in &self.tag(id).as_ref()[..TAG_LEN] {
            let _ = write!(v, "{b:02x}");
        }
        v.push_str(&self.attributes);
        HeaderValue::from_str(&v).ok()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::lb::test_endpoints;
    use super::*;
    use gatehouse_config::spec::SameSite;
    use std::time::Duration;

    fn sticky() -> Sticky {
        let spec = StickySpec {
            cookie: "gh".into(),
            secret: "0123456789abcdef0123".into(),
            ttl: Some(Duration::from_secs(3600)),
            path: "/".into(),
            same_site: SameSite::Strict,
            secure: true,
            http_only: true,
        };
        Sticky::new(&spec, "api", &test_endpoints(&[1, 1, 1]))
    }

    fn cookie_headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn a_cookie_set_for_an_endpoint_leads_back_to_it() {
        let s = sticky();
        let set = s.set_cookie(2).unwrap();
        let set = set.to_str().unwrap();
        assert!(
            set.ends_with("; Path=/; Max-Age=3600; SameSite=Strict; Secure; HttpOnly"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap();
        assert_eq!(
            s.endpoint(&cookie_headers(&format!("a=b; {pair}; c=d"))),
            Some(2)
        );
    }

    #[test]
    fn forged_or_malformed_cookies_are_ignored() {
        let s = sticky();
        let set = s.set_cookie(1).unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let (name_id, tag) = pair.split_once('.').unwrap();
        // Another endpoint's id with this tag.
        let other = s.set_cookie(0).unwrap();
        let other_id = other
            .to_str()
            .unwrap()
            .split_once('.')
            .unwrap()
            .0
            .to_string();
        for bad in [
            format!("{other_id}.{tag}"),
            format!("{name_id}.{}", "0".repeat(32)),
            format!("{name_id}.zz"),
            name_id.to_string(),
            "gh=".to_string(),
            "gh=nothex.00".to_string(),
        ] {
            assert_eq!(s.endpoint(&cookie_headers(&bad)), None, "{bad}");
        }
        // A cookie signed with another secret.
        let spec = StickySpec {
            secret: "another-secret-of-length".into(),
            ..s.spec.clone()
        };
        let stranger = Sticky::new(&spec, "api", &test_endpoints(&[1, 1, 1]));
        let forged = stranger.set_cookie(1).unwrap();
        let forged = forged.to_str().unwrap().split(';').next().unwrap();
        assert_eq!(s.endpoint(&cookie_headers(forged)), None);
    }
}
