//! Config errors: one [`ConfigError`] per problem (key path, line, message), gathered into
//! [`ConfigErrors`] so that a file's every problem is reported at once.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `routes[2].match.path`; empty for whole-file syntax errors.
    pub path: String,
    /// 1-based line of the key, when known.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` with no line yet; [`crate::load`] fills the line in.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file name the errors refer to.
    pub file: String,
    /// The problems, in file order where lines are known.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sorts errors by line (unknown lines last, then by path) so the report reads top-down.
    pub fn new(file: &str, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| {
            let la = a.line.unwrap_or(usize::MAX);
            let lb = b.line.unwrap_or(usize::MAX);
            la.cmp(&lb).then_with(|| a.path.cmp(&b.path))
        });
        ConfigErrors {
            file: file.to_string(),
            errors,
        }
    }

    /// The errors as plain lines, `file:line: path: message`.
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(|e| self.line_for(e)).collect()
    }

    fn line_for(&self, e: &ConfigError) -> String {
        let mut out = self.file.clone();
        if let Some(line) = e.line {
            out.push(':');
            out.push_str(&line.to_string());
        }
        out.push_str(": ");
        if !e.path.is_empty() {
            out.push_str(&e.path);
            out.push_str(": ");
        }
        out.push_str(&e.message);
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {} error{}",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for line in self.lines() {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}
