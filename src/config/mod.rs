//! The TOML configuration: parsed with serde (unknown keys rejected), validated, and turned
//! into an immutable [`Snapshot`]. Every error names the file, line, column and key path.
//!
//! Stages, each reporting all of its errors before giving up:
//! 1. [`recover`]: TOML syntax, then serde into the [`raw`] structs; after a type or
//!    unknown-key error the bad key is dropped and deserialization runs again.
//! 2. [`validate`] (with [`listener`], [`upstream`] and [`health`]): defaults, ranges, references between
//!    sections, addresses (host names are resolved here, on the control path).
//!
//! Values with units are parsed in [`units`]; positions and key paths live in [`source`].

mod check;
mod feedback;
mod health;
mod listener;
mod raw;
mod recover;
mod source;
pub mod units;
mod upstream;

#[doc(hidden)]
pub use check::NO_LOOKUPS;
pub use upstream::is_next_upstream_condition;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_listener;
#[cfg(test)]
mod tests_upstream;

use std::fmt;
use std::path::Path;

use crate::snapshot::Snapshot;
use source::{Report, Source, is_under};

pub use validate::{COMBINED_FORMAT, TCP_FORMAT, UPSTREAM_FORMAT};

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `upstreams.llm.servers[1].weight`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `file:line:col: key: message`; the position is left out when unknown (line 0) and the
    /// key when the error is about the file as a whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads and validates `path`; `generation` is stored in the snapshot.
pub fn load(path: &Path, generation: u64) -> Result<Snapshot, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path, generation),
        Err(e) => Err(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the configuration: {e}"),
        }]),
    }
}

/// Validates `text` as if read from `path`.
pub fn load_str(text: &str, path: &Path, generation: u64) -> Result<Snapshot, Vec<ConfigError>> {
    let src = Source::new(path.display().to_string(), text);
    let mut report = Report::new(&src);
    let recovered = recover::read(&mut report);
    let structural = report.errors.len();
    let snapshot = recovered
        .raw
        .map(|raw| validate::build(&raw, &mut report, path, generation));
    // A key dropped for a type error would now be reported again as missing or defaulted.
    let mut errors = report.errors;
    let validation = errors.split_off(structural);
    errors.extend(
        validation
            .into_iter()
            .filter(|e| !recovered.removed.iter().any(|r| is_under(&e.key, r))),
    );
    match snapshot {
        Some(snapshot) if errors.is_empty() => Ok(snapshot),
        _ => {
            if errors.is_empty() {
                let message = "the file could not be read as a whole";
                errors.push(ConfigError {
                    file: src.file.clone(),
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: message.to_string(),
                });
            }
            errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
            Err(errors)
        }
    }
}
