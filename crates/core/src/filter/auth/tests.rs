//! The token catalogue: minted tokens and the verdict each must get, against one
//! provider with a key of every algorithm (from a JWKS document, and a PEM from
//! config), plus the Basic and API key parsers' edge cases.

use super::jwt::{Provider, Refused};
use super::keyset::KeySet;
use super::*;
use gatehouse_config::spec::{ClaimRule, JwtKeySpec, JwtProviderSpec, KeyMaterial, SecretRef};
use gatehouse_test_support::tokens::{hs256_with, jwks, now, raw, SigningKey};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use std::time::Duration;

const ISS: &str = "https://idp.test";

fn spec() -> JwtProviderSpec {
    JwtProviderSpec {
        name: "idp".into(),
        issuer: Some(ISS.into()),
        audiences: vec!["api".into()],
        algorithms: vec![],
        keys: vec![],
        jwks_file: None,
        remote: None,
        leeway: Duration::from_secs(30),
        require_exp: true,
        required_claims: vec![],
        typ: None,
        consumer_claim: "sub".into(),
        claims_to_headers: vec![],
        max_token_size: 8 * 1024,
    }
}

struct Keys {
    all: Vec<SigningKey>,
    /// An RSA key given to the provider as a PEM in config (kid `pem`).
    pem: SigningKey,
}

fn keys() -> Keys {
    let mut all = vec![
        SigningKey::hmac(
            "hs256",
            Algorithm::HS256,
            b"a-long-hmac-secret-of-32-bytes!!",
        ),
        SigningKey::hmac(
            "hs384",
            Algorithm::HS384,
            b"another-long-hmac-secret-48-bytes-long-enough!!!",
        ),
        SigningKey::hmac("hs512", Algorithm::HS512, &[7u8; 64]),
        SigningKey::ec("es256", Algorithm::ES256),
        SigningKey::ec("es384", Algorithm::ES384),
        SigningKey::ed("eddsa"),
    ];
    // One RSA key per algorithm: a JWK with `alg` is bound to that one algorithm.
    for (kid, alg) in [
        ("rs256", Algorithm::RS256),
        ("rs384", Algorithm::RS384),
        ("rs512", Algorithm::RS512),
        ("ps256", Algorithm::PS256),
        ("ps384", Algorithm::PS384),
        ("ps512", Algorithm::PS512),
    ] {
        all.push(SigningKey::rsa(kid, alg));
    }
    Keys {
        all,
        pem: SigningKey::rsa("pem", Algorithm::RS256),
    }
}

fn provider(k: &Keys, spec: JwtProviderSpec) -> Provider {
    let refs: Vec<&SigningKey> = k.all.iter().collect();
    let doc = jwks(&refs);
    let mut set = KeySet::from_jwks(doc.as_bytes(), &[]).unwrap();
    let pem = KeySet::from_specs(
        &[JwtKeySpec {
            kid: Some("pem".into()),
            alg: None,
            material: KeyMaterial::Pem(SecretRef::Inline(k.pem.public_pem.clone().unwrap())),
        }],
        &[],
    )
    .unwrap();
    set.keys.extend(pem.keys);
    Provider::new(spec, set, None)
}

fn good() -> Value {
    json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": now() + 600, "iat": now()})
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[derive(Debug)]
enum Want {
    Ok,
    Malformed,
    Invalid(&'static str),
}

fn check(p: &Provider, name: &str, token: &str, want: Want, results: &mut Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(p.verify(token));
    let ok = match (&got, &want) {
        (Ok(_), Want::Ok) => true,
        (Err(Refused::Malformed(_)), Want::Malformed) => true,
        (Err(Refused::Invalid(m)), Want::Invalid(part)) => m.contains(part),
        _ => false,
    };
    if !ok {
        let got = got.map(|v| v.claims.len());
        results.push(format!("{name}: want {want:?}, got {got:?}"));
    }
}

#[test]
fn token_catalogue() {
    let k = keys();
    let p = provider(&k, spec());
    let mut bad = Vec::new();
    let mut n = 0;
    let mut case = |name: &str, token: &str, want: Want| {
        n += 1;
        check(&p, name, token, want, &mut bad);
    };
    let by = |kid: &str| k.all.iter().find(|s| s.kid == kid).unwrap();

    // Every algorithm, valid.
    for s in &k.all {
        case(&format!("valid {:?}", s.alg), &s.sign(&good()), Want::Ok);
    }
    case("valid RS256 from a PEM key", &k.pem.sign(&good()), Want::Ok);
    let mut h = Header::new(Algorithm::ES256);
    h.kid = None;
    case(
        "no kid: every key of the algorithm is tried",
        &by("es256").sign_with(h, &good()),
        Want::Ok,
    );

    // Time claims.
    let rs = by("rs256");
    case(
        "expired",
        &rs.sign(&with(good(), "exp", json!(now() - 3600))),
        Want::Invalid("expired"),
    );
    case(
        "expired within leeway",
        &rs.sign(&with(good(), "exp", json!(now() - 10))),
        Want::Ok,
    );
    case(
        "nbf in the future",
        &rs.sign(&with(good(), "nbf", json!(now() + 3600))),
        Want::Invalid("nbf"),
    );
    case(
        "nbf within leeway",
        &rs.sign(&with(good(), "nbf", json!(now() + 10))),
        Want::Ok,
    );
    case(
        "no exp",
        &rs.sign(&without(good(), "exp")),
        Want::Invalid("exp"),
    );
    case(
        "exp as a string",
        &rs.sign(&with(good(), "exp", json!("9999999999"))),
        Want::Invalid("exp"),
    );
    case(
        "nbf as a string",
        &rs.sign(&with(good(), "nbf", json!("0"))),
        Want::Invalid("nbf"),
    );
    case(
        "exp as an RFC 3339 date",
        &rs.sign(&with(good(), "exp", json!("2099-01-01T00:00:00Z"))),
        Want::Invalid("exp"),
    );

    // Issuer and audience.
    case(
        "wrong iss",
        &rs.sign(&with(good(), "iss", json!("https://evil.test"))),
        Want::Invalid("issuer"),
    );
    case(
        "no iss",
        &rs.sign(&without(good(), "iss")),
        Want::Invalid("iss"),
    );
    case(
        "wrong aud",
        &rs.sign(&with(good(), "aud", json!("other"))),
        Want::Invalid("audience"),
    );
    case(
        "aud array with ours",
        &rs.sign(&with(good(), "aud", json!(["other", "api"]))),
        Want::Ok,
    );
    case(
        "aud array without ours",
        &rs.sign(&with(good(), "aud", json!(["a", "b"]))),
        Want::Invalid("audience"),
    );
    case(
        "no aud",
        &rs.sign(&without(good(), "aud")),
        Want::Invalid("aud"),
    );

    // Tampering.
    let t = rs.sign(&good());
    let parts: Vec<&str> = t.split('.').collect();
    let evil = gatehouse_test_support::tokens::b64(
        with(good(), "sub", json!("admin")).to_string().as_bytes(),
    );
    case(
        "tampered payload",
        &format!("{}.{evil}.{}", parts[0], parts[2]),
        Want::Invalid("signature"),
    );
    let mut sig = parts[2].to_string();
    sig.replace_range(0..2, if sig.starts_with("AA") { "BB" } else { "AA" });
    case(
        "tampered signature",
        &format!("{}.{}.{sig}", parts[0], parts[1]),
        Want::Invalid("signature"),
    );
    case(
        "signature stripped",
        &format!("{}.{}.", parts[0], parts[1]),
        Want::Invalid("signature"),
    );

    // alg none and its case variants: not an algorithm at all.
    let claims = good().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"rs256"}}"#);
        case(
            &format!("alg {alg}"),
            &raw(&header, &claims, b""),
            Want::Malformed,
        );
    }

    // Algorithm confusion: HS256 keyed with the RSA public key's PEM bytes.
    let pem = k.pem.public_pem.clone().unwrap();
    let confused = hs256_with(
        pem.as_bytes(),
        r#"{"alg":"HS256","typ":"JWT","kid":"pem"}"#,
        &claims,
    );
    case(
        "HS256 keyed with the RSA public key (kid of the RSA key)",
        &confused,
        Want::Invalid("no key"),
    );
    let confused = hs256_with(pem.as_bytes(), r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
    case(
        "HS256 keyed with the RSA public key (no kid)",
        &confused,
        Want::Invalid("signature"),
    );

    // A key used with an algorithm it is not bound to.
    let mut h = Header::new(Algorithm::RS384);
    h.kid = Some("rs256".into());
    case(
        "RS256 key, token says RS384",
        &rs.sign_with(h, &good()),
        Want::Invalid("no key"),
    );
    let mut h = Header::new(Algorithm::PS256);
    h.kid = Some("rs256".into());
    case(
        "RS256 key, token says PS256",
        &rs.sign_with(h, &good()),
        Want::Invalid("no key"),
    );
    let es = by("es256");
    let mut h = Header::new(Algorithm::ES384);
    h.kid = Some("es256".into());
    case(
        "ES256 key, token says ES384",
        &by("es384").sign_with(h, &good()),
        Want::Invalid("no key"),
    );
    let _ = es;

    // Key ids.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("unknown".into());
    case(
        "unknown kid",
        &rs.sign_with(h, &good()),
        Want::Invalid("no key"),
    );
    let stranger = SigningKey::rsa("rs256", Algorithm::RS256);
    case(
        "right kid, a stranger's key",
        &stranger.sign(&good()),
        Want::Invalid("signature"),
    );

    // Headers that point at other keys are never followed.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("attacker".into());
    h.jku = Some("https://evil.test/jwks.json".into());
    case(
        "jku to the attacker's set",
        &stranger.sign_with(h, &good()),
        Want::Invalid("no key"),
    );
    let mut h = Header::new(Algorithm::RS256);
    h.x5u = Some("https://evil.test/cert.pem".into());
    case(
        "x5u to the attacker's cert",
        &stranger.sign_with(h, &good()),
        Want::Invalid("signature"),
    );
    let mut h = Header::new(Algorithm::RS256);
    h.jwk = Some(serde_json::from_value(stranger.jwk.clone()).unwrap());
    case(
        "embedded jwk of the attacker",
        &stranger.sign_with(h, &good()),
        Want::Invalid("signature"),
    );

    // crit: nothing is understood, so any is refused.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs256".into());
    h.crit = Some(vec!["exp".into()]);
    case(
        "crit header",
        &rs.sign_with(h, &good()),
        Want::Invalid("crit"),
    );

    // Malformed.
    case("empty", "", Want::Malformed);
    case(
        "two segments",
        &format!("{}.{}", parts[0], parts[1]),
        Want::Malformed,
    );
    case("four segments", &format!("{t}.extra"), Want::Malformed);
    case(
        "header not base64",
        &format!("%%%.{}.{}", parts[1], parts[2]),
        Want::Malformed,
    );
    case(
        "header not JSON",
        &raw("not json", &claims, b"sig"),
        Want::Malformed,
    );
    let hs = by("hs256");
    let garbage = hs256_with(
        hs.secret.as_deref().unwrap(),
        r#"{"alg":"HS256","kid":"hs256"}"#,
        "not json",
    );
    case("claims not JSON (signed)", &garbage, Want::Malformed);
    let big = with(good(), "pad", json!("x".repeat(9000)));
    case("oversized token", &rs.sign(&big), Want::Invalid("over"));

    assert!(n >= 40, "the catalogue has {n} tokens");
    assert!(
        bad.is_empty(),
        "{} of {n} verdicts wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn typ_and_required_claims() {
    let k = keys();
    let mut s = spec();
    s.typ = Some("at+jwt".into());
    s.required_claims = vec![
        (
            "role".into(),
            ClaimRule::OneOf(vec![json!("admin"), json!("ops")]),
        ),
        ("tenant".into(), ClaimRule::Present),
    ];
    let p = provider(&k, s);
    let rs = k.all.iter().find(|s| s.kid == "rs256").unwrap();
    let claims = with(with(good(), "role", json!("ops")), "tenant", json!(7));
    let mut bad = Vec::new();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs256".into());
    h.typ = Some("at+jwt".into());
    check(
        &p,
        "typ matches",
        &rs.sign_with(h.clone(), &claims),
        Want::Ok,
        &mut bad,
    );
    h.typ = Some("application/at+JWT".into());
    check(
        &p,
        "typ with media prefix",
        &rs.sign_with(h.clone(), &claims),
        Want::Ok,
        &mut bad,
    );
    check(
        &p,
        "typ JWT",
        &rs.sign(&claims),
        Want::Invalid("typ"),
        &mut bad,
    );
    h.typ = Some("at+jwt".into());
    let role_list = with(claims.clone(), "role", json!(["user", "admin"]));
    check(
        &p,
        "role list holding one",
        &rs.sign_with(h.clone(), &role_list),
        Want::Ok,
        &mut bad,
    );
    let wrong = with(claims.clone(), "role", json!("user"));
    check(
        &p,
        "wrong role",
        &rs.sign_with(h.clone(), &wrong),
        Want::Invalid("role"),
        &mut bad,
    );
    check(
        &p,
        "no tenant",
        &rs.sign_with(h, &without(claims, "tenant")),
        Want::Invalid("tenant"),
        &mut bad,
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn provider_algorithm_list_narrows_keys() {
    let k = keys();
    let mut s = spec();
    s.algorithms = vec!["ES256".into()];
    let refs: Vec<&SigningKey> = k.all.iter().collect();
    let set = KeySet::from_jwks(jwks(&refs).as_bytes(), &jwt::algorithms(&s)).unwrap();
    assert_eq!(set.keys.len(), 1, "only the ES256 key is kept");
    let p = Provider::new(s, set, None);
    let mut bad = Vec::new();
    let es = k.all.iter().find(|s| s.kid == "es256").unwrap();
    let hs = k.all.iter().find(|s| s.kid == "hs256").unwrap();
    check(&p, "ES256 allowed", &es.sign(&good()), Want::Ok, &mut bad);
    check(
        &p,
        "HS256 refused",
        &hs.sign(&good()),
        Want::Invalid("not accepted"),
        &mut bad,
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn hmac_secret_cannot_be_bound_to_rsa() {
    let r = KeySet::from_specs(
        &[JwtKeySpec {
            kid: None,
            alg: Some("RS256".into()),
            material: KeyMaterial::Hmac(SecretRef::Inline("s".into())),
        }],
        &[],
    );
    assert!(r.is_err());
    let r = KeySet::from_specs(
        &[JwtKeySpec {
            kid: None,
            alg: None,
            material: KeyMaterial::Pem(SecretRef::Inline("not a pem".into())),
        }],
        &[],
    );
    assert!(r.err().unwrap().1.contains("PEM"));
}

#[test]
fn jwks_skips_keys_it_cannot_use() {
    let doc = json!({"keys": [
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
        {"kty": "OKP", "crv": "X25519", "x": "AAAA", "kid": "x"},
        {"kty": "weird", "kid": "w"},
        SigningKey::ed("ok").jwk,
    ]});
    let set = KeySet::from_jwks(doc.to_string().as_bytes(), &[]).unwrap();
    let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["ok"]);
    assert!(KeySet::from_jwks(b"[]", &[]).is_err());
    assert!(KeySet::from_jwks(b"nope", &[]).is_err());
}

#[test]
fn basic_and_authorization_parsing() {
    use base64::Engine as _;
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        challenge::basic_pair(&enc("u:p:q")),
        Some(("u".into(), "p:q".into()))
    );
    assert_eq!(challenge::basic_pair(&enc("nocolon")), None);
    assert_eq!(challenge::basic_pair("%%%"), None);
    let head = |values: &[&str]| {
        let mut b = http::Request::builder();
        for v in values {
            b = b.header("authorization", *v);
        }
        b.body(()).unwrap().into_parts().0
    };
    assert!(
        matches!(challenge::authorization(&head(&["bearer abc"]), "bearer"), Found::Present(t) if t == "abc")
    );
    assert!(
        matches!(challenge::authorization(&head(&["BEARER  abc "]), "bearer"), Found::Present(t) if t == "abc")
    );
    assert!(matches!(
        challenge::authorization(&head(&["Basic abc"]), "bearer"),
        Found::Absent
    ));
    assert!(matches!(
        challenge::authorization(&head(&["Bearer a", "Bearer b"]), "bearer"),
        Found::Duplicate
    ));
    assert!(matches!(
        challenge::authorization(&head(&[]), "bearer"),
        Found::Absent
    ));
}

proptest::proptest! {
    /// Any text as a token, a Basic credential or a query: a verdict, never a panic.
    #[test]
    fn parsers_never_panic(s in ".{0,300}", dots in 0usize..5) {
        let token = (0..dots).fold(s.clone(), |t, _| format!("{t}.{s}"));
        let p = Provider::new(spec(), KeySet::default(), None);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _ = rt.block_on(p.verify(&token));
        let _ = challenge::basic_pair(&s);
        let _ = crate::http::query::without(&s, "apikey");
        let _ = crate::http::query::values(&s, "apikey").count();
    }
}
