//! OAuth 2.0 token introspection (RFC 7662): a bearer token is POSTed, with the
//! gateway's client credentials, to the endpoint through its upstream; `active`, `exp`
//! and the scopes and client of the answer are honoured. Answers are cached by the
//! token's SHA-256: active ones until `exp` (at most `cache_max`), inactive ones for
//! `inactive_cache`, at most `max_cached` entries. The cache survives a reload while
//! the endpoint's spec is unchanged.

use super::secret::sha256;
use super::side::{Ask, Call};
use base64::Engine as _;
use gatehouse_config::spec::IntrospectionSpec;
use http::{header, HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the endpoint said of a token.
pub enum Outcome {
    Active(Arc<Map<String, Value>>),
    Inactive(String),
    /// No usable answer (down, timeout, not 200, not JSON).
    Down(String),
}

#[derive(Clone)]
enum Cached {
    Active(Arc<Map<String, Value>>),
    Inactive,
}

/// Introspection answers by token digest, with their expiry.
#[derive(Default)]
pub struct TokenCache(Mutex<HashMap<[u8; 32], (Cached, Instant)>>);

impl TokenCache {
    fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        let m = self.0.lock().ok()?;
        m.get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, key: [u8; 32], c: Cached, ttl: Duration, max: usize) {
        let Ok(mut m) = self.0.lock() else { return };
        if m.len() >= max {
            let now = Instant::now();
            m.retain(|_, (_, until)| now < *until);
            if m.len() >= max {
                m.clear();
            }
        }
        m.insert(key, (c, Instant::now() + ttl));
    }
}

pub struct Introspector {
    pub spec: IntrospectionSpec,
    authorization: HeaderValue,
    call: Call,
    pub cache: Arc<TokenCache>,
}

impl Introspector {
    pub fn new(
        spec: IntrospectionSpec,
        secret: &[u8],
        call: Call,
        cache: Arc<TokenCache>,
    ) -> Introspector {
        let mut pair = format!("{}:", spec.client_id).into_bytes();
        pair.extend_from_slice(secret);
        let text = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        let mut authorization =
            HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
        authorization.set_sensitive(true);
        Introspector {
            spec,
            authorization,
            call,
            cache,
        }
    }

    pub async fn check(&self, token: &str) -> Outcome {
        let key = sha256(token.as_bytes());
        match self.cache.get(&key) {
            Some(Cached::Active(m)) => return Outcome::Active(m),
            Some(Cached::Inactive) => return Outcome::Inactive("token is not active".into()),
            None => {}
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, self.authorization.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let ask = Ask {
            method: Method::POST,
            path: self.spec.path.clone(),
            headers,
            body: Some(body.into()),
        };
        let answer = match tokio::time::timeout(self.spec.timeout, (self.call)(ask)).await {
            Err(_) => return Outcome::Down(format!("no answer within {:?}", self.spec.timeout)),
            Ok(Err(e)) => return Outcome::Down(e),
            Ok(Ok(a)) => a,
        };
        if answer.status != 200 {
            return Outcome::Down(format!("introspection answered {}", answer.status));
        }
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&answer.body) else {
            return Outcome::Down("introspection answer is not a JSON object".into());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = map.get("exp").and_then(Value::as_u64);
        let active = map.get("active") == Some(&Value::Bool(true));
        if !active || exp.is_some_and(|e| e <= now) {
            self.cache.put(
                key,
                Cached::Inactive,
                self.spec.inactive_cache,
                self.spec.max_cached,
            );
            return Outcome::Inactive(
                if active {
                    "token has expired"
                } else {
                    "token is not active"
                }
                .into(),
            );
        }
        let ttl = exp.map_or(self.spec.cache_max, |e| {
            Duration::from_secs(e - now).min(self.spec.cache_max)
        });
        let map = Arc::new(map);
        self.cache
            .put(key, Cached::Active(map.clone()), ttl, self.spec.max_cached);
        Outcome::Active(map)
    }
}
