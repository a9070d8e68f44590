//! Resolves a [`SecretRef`] to its value at compile time. Errors name where the
//! secret was looked for, never what it holds.

use gatehouse_config::spec::SecretRef;

/// The secret's bytes; a file's one trailing newline is dropped (editors add it).
pub fn resolve(s: &SecretRef) -> Result<Vec<u8>, String> {
    match s {
        SecretRef::Inline(v) => Ok(v.as_bytes().to_vec()),
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(v.into_bytes()),
            Ok(_) => Err(format!("environment variable `{name}` is empty")),
            Err(_) => Err(format!("environment variable `{name}` is not set")),
        },
        SecretRef::File(p) => match std::fs::read(p) {
            Ok(mut v) => {
                if v.ends_with(b"\n") {
                    v.pop();
                    if v.ends_with(b"\r") {
                        v.pop();
                    }
                }
                if v.is_empty() {
                    Err(format!("`{}` is empty", p.display()))
                } else {
                    Ok(v)
                }
            }
            Err(e) => Err(format!("cannot read `{}`: {e}", p.display())),
        },
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares in time that does not depend on where the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// An argon2id PHC string for a Basic password (`gatehouse hash password`), with a
/// random 16-byte salt and the crate's recommended parameters.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no random bytes for a salt".to_string())?;
    argon2::Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// `sha256:HEX` of an API key (`gatehouse hash key`).
pub fn hash_key(key: &[u8]) -> String {
    let hex: String = sha256(key).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
