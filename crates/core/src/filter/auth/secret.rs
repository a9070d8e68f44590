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
