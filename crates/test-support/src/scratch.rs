//! Scratch folders for tests under the system temp dir, named after the test process
//! that made them (`gatehouse-test-<pid>-<what>-<n>`). A test binary cannot remove
//! its folders when it ends (Rust's harness has no hook for it, and a config or a
//! certificate in one may be read until the last test is done), so each binary
//! removes, the first time it asks for a folder, those of test processes that have
//! ended: their pid no longer in /proc. A run leaves its own folders, and the next run
//! takes them away.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

const PREFIX: &str = "gatehouse-test-";

/// A new, empty folder for `what` (a suite's or a fixture's name).
pub fn dir(what: &str) -> PathBuf {
    static SWEPT: Once = Once::new();
    static N: AtomicU64 = AtomicU64::new(0);
    SWEPT.call_once(|| sweep(&std::env::temp_dir()));
    let dir = std::env::temp_dir().join(format!(
        "{PREFIX}{}-{what}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the scratch folders under `temp` whose test process has ended. Without
/// /proc (not Linux) nothing is removed.
fn sweep(temp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid a scratch folder's name carries, if it is one.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_of_ended_test_processes_are_removed() {
        let temp = dir("sweep");
        // The pid of a process that has ended: a child started and waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = child.id();
        child.wait().unwrap();
        let own = std::process::id();
        let stale = temp.join(format!("{PREFIX}{ended}-certs-0"));
        let mine = temp.join(format!("{PREFIX}{own}-certs-0"));
        let other = temp.join(format!("gatehouse-upgrade-{ended}-1"));
        for d in [&stale, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        }
        sweep(&temp);
        assert!(!stale.exists(), "an ended test process's folder is removed");
        assert!(mine.exists(), "this process's folder is kept");
        assert!(
            other.exists(),
            "a folder that is not a test's is never touched"
        );
        assert_eq!(owner("gatehouse-test-12-e2e-ops-3"), Some(12));
        assert_eq!(owner("gatehouse-test-x-1"), None);
    }
}
