//! The consumers of one config generation and the lookups the auth filter needs: an
//! API key (a key given in plain by a keyed hash of it, one given as a hash by the
//! SHA-256 of what the client sent; either confirmed in constant time), a Basic username and
//! password (argon2, bcrypt or a secret), and a JWT subject.
//!
//! Hashed passwords cost tens of milliseconds to check, so a check runs on the
//! blocking pool and a success is remembered (by a digest of user and password, for
//! a bounded time and count) so a client sending the same credentials again pays once.

use super::secret::{resolve, same, sha256};
use crate::consumer::Consumer;
use foldhash::fast::RandomState;
use gatehouse_config::spec::{ApiKeySpec, CertMatch, ConsumerSpec, PasswordSpec};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a verified Basic credential is remembered.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// The most verified Basic credentials remembered.
const VERIFIED_MAX: usize = 4096;

enum Password {
    Argon2(String),
    Bcrypt(String),
    Digest([u8; 32]),
}

struct User {
    consumer: Arc<Consumer>,
    password: Password,
}

/// A key's owner and the key's non-secret id (`consumer#n`).
#[derive(Clone)]
pub struct KeyOwner {
    pub consumer: Arc<Consumer>,
    pub id: Arc<str>,
}

/// The keys (given in plain) that share one hash, with their owners.
type PlainKeys = Vec<(Box<[u8]>, KeyOwner)>;

#[derive(Default)]
pub struct Directory {
    /// Every key by its SHA-256 (what finds a key given as a hash, and what tells two
    /// consumers' keys apart).
    keys: HashMap<[u8; 32], KeyOwner>,
    /// Keys given in plain, by a hash of the key under this process's random seed: a
    /// request's key is found without computing a SHA-256 (most of a key check's cost),
    /// and the seed keeps a client from steering which stored key it is compared with.
    plain: HashMap<u64, PlainKeys, RandomState>,
    seed: RandomState,
    /// Whether any key was given as a hash (only then does an unknown key cost a SHA-256).
    hashed: bool,
    users: HashMap<String, Arc<User>>,
    subjects: HashMap<String, Arc<Consumer>>,
    names: HashMap<String, Arc<Consumer>>,
    certs: HashMap<CertMatch, Arc<Consumer>>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Directory {
    /// Builds the directory; errors are (key path, message).
    pub fn build(specs: &[ConsumerSpec], errors: &mut Vec<(String, String)>) -> Directory {
        let mut d = Directory::default();
        for (i, c) in specs.iter().enumerate() {
            let consumer = Arc::new(Consumer {
                name: Arc::from(c.name.as_str()),
                groups: c.groups.clone(),
                tags: c.tags.clone(),
                header: http::HeaderValue::from_str(&c.name).ok(),
            });
            for (j, k) in c.api_keys.iter().enumerate() {
                let (digest, plain) = match k {
                    ApiKeySpec::Sha256(digest) => {
                        d.hashed = true;
                        (*digest, None)
                    }
                    ApiKeySpec::Secret(s) => match resolve(s) {
                        Ok(v) => (sha256(&v), Some(v)),
                        Err(e) => {
                            errors.push((format!("consumers[{i}].api_keys[{j}]"), e));
                            continue;
                        }
                    },
                };
                let owner = KeyOwner {
                    consumer: consumer.clone(),
                    id: Arc::from(format!("{}#{j}", c.name)),
                };
                if let Some(v) = plain {
                    let h = d.seed.hash_one(&v[..]);
                    d.plain
                        .entry(h)
                        .or_default()
                        .push((v.into_boxed_slice(), owner.clone()));
                }
                if d.keys.insert(digest, owner).is_some() {
                    errors.push((
                        format!("consumers[{i}].api_keys[{j}]"),
                        "the same key is given to another consumer".into(),
                    ));
                }
            }
            if let Some(b) = &c.basic {
                let password = match &b.password {
                    PasswordSpec::Argon2(h) => {
                        match argon2::password_hash::phc::PasswordHash::new(h) {
                            Ok(_) => Password::Argon2(h.clone()),
                            Err(e) => {
                                errors.push((
                                    format!("consumers[{i}].basic.password"),
                                    format!("not an argon2 PHC string: {e}"),
                                ));
                                continue;
                            }
                        }
                    }
                    PasswordSpec::Bcrypt(h) => Password::Bcrypt(h.clone()),
                    PasswordSpec::Secret(s) => match resolve(s) {
                        Ok(v) => Password::Digest(sha256(&v)),
                        Err(e) => {
                            errors.push((format!("consumers[{i}].basic.password"), e));
                            continue;
                        }
                    },
                };
                d.users.insert(
                    b.username.clone(),
                    Arc::new(User {
                        consumer: consumer.clone(),
                        password,
                    }),
                );
            }
            for s in &c.jwt_subjects {
                d.subjects.insert(s.clone(), consumer.clone());
            }
            for (j, m) in c.certificates.iter().enumerate() {
                if d.certs.insert(m.clone(), consumer.clone()).is_some() {
                    errors.push((
                        format!("consumers[{i}].certificates[{j}]"),
                        "the same certificate match is given to another consumer".into(),
                    ));
                }
            }
            d.names.insert(c.name.clone(), consumer);
        }
        d
    }

    /// The owner of an API key.
    pub fn by_key(&self, key: &[u8]) -> Option<&KeyOwner> {
        if let Some(list) = self.plain.get(&self.seed.hash_one(key)) {
            if let Some((_, owner)) = list.iter().find(|(k, _)| same(k, key)) {
                return Some(owner);
            }
        }
        if !self.hashed {
            return None;
        }
        let digest = sha256(key);
        let (stored, owner) = self.keys.get_key_value(&digest)?;
        same(stored, &digest).then_some(owner)
    }

    /// The consumer a token's claim value names: a listed `jwt_subjects` entry first,
    /// then a consumer of that name.
    pub fn by_subject(&self, s: &str) -> Option<Arc<Consumer>> {
        self.subjects.get(s).or_else(|| self.names.get(s)).cloned()
    }

    /// The consumer a verified client certificate names, most specific first: by
    /// fingerprint, then by a subject alternative name, then by subject.
    pub fn by_cert(&self, c: &crate::tls::ClientCert) -> Option<Arc<Consumer>> {
        let by = |m: CertMatch| self.certs.get(&m).cloned();
        by(CertMatch::Fingerprint(c.fingerprint))
            .or_else(|| c.sans.iter().find_map(|s| by(CertMatch::San(s.clone()))))
            .or_else(|| by(CertMatch::Subject(c.subject.clone())).filter(|_| !c.subject.is_empty()))
    }

    /// The consumer whose Basic credentials these are.
    pub async fn check_basic(&self, user: &str, password: &[u8]) -> Option<Arc<Consumer>> {
        let u = self.users.get(user)?.clone();
        let memo = {
            let mut m = sha256(user.as_bytes()).to_vec();
            m.extend_from_slice(&sha256(password));
            sha256(&m)
        };
        if self.remembered(&memo) {
            return Some(u.consumer.clone());
        }
        let ok = match &u.password {
            Password::Digest(d) => same(d, &sha256(password)),
            Password::Argon2(_) | Password::Bcrypt(_) => {
                let pw = password.to_vec();
                let user = u.clone();
                tokio::task::spawn_blocking(move || slow_check(&user.password, &pw))
                    .await
                    .unwrap_or(false)
            }
        };
        if !ok {
            return None;
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= VERIFIED_MAX {
                v.clear();
            }
            v.insert(memo, Instant::now());
        }
        Some(u.consumer.clone())
    }

    fn remembered(&self, memo: &[u8; 32]) -> bool {
        let Ok(v) = self.verified.lock() else {
            return false;
        };
        v.get(memo).is_some_and(|t| t.elapsed() < VERIFIED_TTL)
    }
}

fn slow_check(p: &Password, password: &[u8]) -> bool {
    use argon2::password_hash::PasswordVerifier;
    match p {
        Password::Argon2(h) => argon2::password_hash::phc::PasswordHash::new(h)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            })
            .unwrap_or(false),
        Password::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        Password::Digest(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::spec::SecretRef;

    fn consumer(name: &str, keys: Vec<ApiKeySpec>) -> ConsumerSpec {
        ConsumerSpec {
            name: name.into(),
            groups: vec![],
            tags: vec![],
            api_keys: keys,
            basic: None,
            jwt_subjects: vec![],
            certificates: vec![],
        }
    }

    #[test]
    fn keys_in_plain_and_as_hashes_find_their_owners_and_nothing_else() {
        let plain = |k: &str| ApiKeySpec::Secret(SecretRef::Inline(k.into()));
        let specs = [
            consumer("a", vec![plain("key-a-0123"), plain("key-a-4567")]),
            consumer("b", vec![ApiKeySpec::Sha256(sha256(b"key-b-0123"))]),
        ];
        let mut errors = Vec::new();
        let d = Directory::build(&specs, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let owner = |k: &[u8]| d.by_key(k).map(|o| o.id.to_string());
        assert_eq!(owner(b"key-a-0123").as_deref(), Some("a#0"));
        assert_eq!(owner(b"key-a-4567").as_deref(), Some("a#1"));
        assert_eq!(owner(b"key-b-0123").as_deref(), Some("b#0"));
        for wrong in [
            &b"key-a-012"[..],
            b"key-a-01234",
            b"KEY-A-0123",
            b"",
            b"key-b-0124",
        ] {
            assert_eq!(owner(wrong), None, "{:?}", String::from_utf8_lossy(wrong));
        }
        // Only plain keys: an unknown key is refused without a digest.
        let d = Directory::build(&specs[..1], &mut errors);
        assert!(!d.hashed);
        assert_eq!(d.by_key(b"key-b-0123").map(|o| o.id.clone()), None);
        // The same key twice, one plain and one hashed, is still caught.
        let twice = [
            consumer("a", vec![plain("same-key")]),
            consumer("b", vec![ApiKeySpec::Sha256(sha256(b"same-key"))]),
        ];
        Directory::build(&twice, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
