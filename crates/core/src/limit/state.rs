//! The state file of a local quota: its keys' windows and counts as JSON, written whole
//! to a temporary file and renamed over the old one, so a crash mid-write leaves the
//! previous state and never half of one.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct File {
    policy: String,
    /// `[key, window start (Unix seconds), count]`.
    entries: Vec<(String, i64, u64)>,
}

pub fn save(path: &Path, policy: &str, entries: Vec<(String, i64, u64)>) -> std::io::Result<()> {
    let f = File {
        policy: policy.to_string(),
        entries,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&f)?)?;
    std::fs::rename(&tmp, path)
}

/// The saved entries; none when the file does not exist yet.
pub fn load(path: &Path, policy: &str) -> Result<Vec<(String, i64, u64)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    let f: File = serde_json::from_slice(&bytes)
        .map_err(|e| format!("`{}` is not a quota state file: {e}", path.display()))?;
    if f.policy != policy {
        return Err(format!(
            "`{}` holds the counts of policy `{}`, not `{policy}`",
            path.display(),
            f.policy
        ));
    }
    Ok(f.entries)
}
