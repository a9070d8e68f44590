//! Parses config text into a format-neutral tree (`serde_json::Value`) and records where
//! each key path sits in the file, so that errors found later can name their line.
//!
//! TOML positions come from `toml_edit`'s spans. YAML is read through `serde_norway`,
//! which gives no per-key positions once parsed: YAML errors carry the key path only,
//! except syntax errors, which carry the parser's line.

use crate::error::ConfigError;
use std::collections::HashMap;
use toml_edit::{Item, Table, Value};

/// Maps key paths (`routes[2].match.path`) to 1-based lines.
#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
}

impl Locator {
    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Parses TOML text; a syntax error is returned with its line.
pub fn parse_toml(text: &str) -> Result<(serde_json::Value, Locator), ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_at(text, s.start));
        ConfigError {
            path: String::new(),
            line,
            message: format!("TOML syntax: {}", e.message()),
        }
    })?;
    let mut walker = Walker {
        index: LineIndex::new(text),
        lines: HashMap::new(),
    };
    walker.table(doc.as_table(), "");
    let tree: serde_json::Value = toml::from_str(text).map_err(|e| ConfigError {
        path: String::new(),
        line: e.span().map(|s| line_at(text, s.start)),
        message: format!("TOML: {}", e.message()),
    })?;
    Ok((
        tree,
        Locator {
            lines: walker.lines,
        },
    ))
}

/// Parses YAML text; only syntax errors carry a line.
pub fn parse_yaml(text: &str) -> Result<(serde_json::Value, Locator), ConfigError> {
    let tree: serde_json::Value = serde_norway::from_str(text).map_err(|e| ConfigError {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: format!("YAML syntax: {e}"),
    })?;
    let tree = if tree.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        tree
    };
    Ok((tree, Locator::default()))
}

fn line_at(text: &str, offset: usize) -> usize {
    LineIndex::new(text).line_at(offset)
}

/// Where the file's lines start, so that the line of each of tens of thousands of keys
/// is a binary search, not a count of every newline before it (which made a 10,000-route
/// file take half a minute to load).
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect();
        LineIndex { newlines }
    }

    /// The 1-based line of a byte offset.
    fn line_at(&self, offset: usize) -> usize {
        self.newlines.partition_point(|n| *n < offset) + 1
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

struct Walker {
    index: LineIndex,
    lines: HashMap<String, usize>,
}

impl Walker {
    fn mark(&mut self, path: &str, span: Option<std::ops::Range<usize>>) {
        if let Some(s) = span {
            let line = self.index.line_at(s.start);
            self.lines.entry(path.to_string()).or_insert(line);
        }
    }

    fn table(&mut self, table: &Table, prefix: &str) {
        for (k, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(k) else {
                continue;
            };
            let path = join(prefix, k);
            self.mark(&path, key.span());
            self.item(item, &path);
        }
    }

    fn item(&mut self, item: &Item, path: &str) {
        match item {
            Item::Table(t) => {
                self.mark(path, t.span());
                self.table(t, path);
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.mark(&p, t.span());
                    self.table(t, &p);
                }
            }
            Item::Value(v) => self.value(v, path),
            Item::None => {}
        }
    }

    fn value(&mut self, value: &Value, path: &str) {
        self.mark(path, value.span());
        match value {
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.value(v, &format!("{path}[{i}]"));
                }
            }
            Value::InlineTable(t) => {
                for (k, _) in t.iter() {
                    let Some((key, item)) = t.get_key_value(k) else {
                        continue;
                    };
                    let p = join(path, k);
                    self.mark(&p, key.span());
                    self.item(item, &p);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_keys() {
        let text = "a = 1\n[[routes]]\nname = \"x\"\n[[routes]]\nname = \"y\"\n[routes.match]\npath = \"/p\"\n";
        let (_, loc) = parse_toml(text).unwrap();
        assert_eq!(loc.line_of("a"), Some(1));
        assert_eq!(loc.line_of("routes[1].name"), Some(5));
        assert_eq!(loc.line_of("routes[1].match.path"), Some(7));
        assert_eq!(loc.line_of("routes[1].match.missing"), Some(6));
    }

    #[test]
    fn line_index_counts_newlines_before_an_offset() {
        let text = "a\nbc\n\nd";
        let idx = LineIndex::new(text);
        for offset in 0..=text.len() {
            let want = text.as_bytes()[..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            assert_eq!(idx.line_at(offset), want, "offset {offset}");
        }
        assert_eq!(idx.line_at(1000), 4);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}
