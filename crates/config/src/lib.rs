//! Gatehouse configuration: turns config text into a validated [`Spec`].
//!
//! The pipeline is text -> [`raw`] structs (serde, unknown keys rejected) -> [`validate`]
//! -> [`spec`] types. Every error carries its key path and, when the file has one, its
//! line (see [`error`]). This crate does no I/O: the caller reads the file, and
//! certificate files named in the spec are read by the core when it compiles the spec.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
mod locate;
pub mod openapi;
pub mod raw;
pub mod spec;
pub mod units;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use spec::Spec;

/// The syntax a config file is written in, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, the default.
    Toml,
    /// YAML (`.yaml` / `.yml`), read through `serde_norway`.
    Yaml,
}

impl Format {
    /// Picks the format from a file name: `.yaml`/`.yml` is YAML, anything else TOML.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Toml
        }
    }
}

/// Parses and validates config text. `file` is only used to name the file in errors.
pub fn load(text: &str, file: &str, format: Format) -> Result<Spec, ConfigErrors> {
    let located = match format {
        Format::Toml => locate::parse_toml(text),
        Format::Yaml => locate::parse_yaml(text),
    };
    let (tree, locator) = located.map_err(|e| ConfigErrors::new(file, vec![e]))?;
    let mut errors = Vec::new();
    let raw = raw::from_tree(tree, &mut errors);
    let spec = validate::validate(&raw, &mut errors);
    if errors.is_empty() {
        Ok(spec)
    } else {
        for e in &mut errors {
            if e.line.is_none() {
                e.line = locator.line_of(&e.path);
            }
        }
        Err(ConfigErrors::new(file, errors))
    }
}
