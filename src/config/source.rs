//! Where things are in the file: byte offsets to 1-based line/column, dotted key paths, and
//! the [`Report`] that collects every [`ConfigError`] of one load.

use std::ops::Range;

use super::ConfigError;

/// The text being loaded, with the offsets of its line starts.
pub struct Source<'t> {
    pub file: String,
    pub text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub fn new(file: String, text: &'t str) -> Source<'t> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of byte `offset`; past the end is clamped.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = match self.text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset - start,
        };
        (line, column + 1)
    }
}

/// Collects errors; validation keeps going after each one so a single run reports them all.
pub struct Report<'s, 't> {
    pub src: &'s Source<'t>,
    pub errors: Vec<ConfigError>,
}

impl<'s, 't> Report<'s, 't> {
    pub fn new(src: &'s Source<'t>) -> Report<'s, 't> {
        Report {
            src,
            errors: Vec::new(),
        }
    }

    /// Records `message` about `key`, located at the start of `span`.
    pub fn at(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = self.src.position(span.start);
        self.errors.push(ConfigError {
            file: self.src.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Records an error that has no place in the file (e.g. a missing section).
    pub fn nowhere(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.src.file.clone(),
            line: 0,
            column: 0,
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// `base.key`, quoting `key` the way TOML would when it is not a bare key.
pub fn join(base: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub fn index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// Whether `path` is `prefix` or lies inside it (`a.b` is inside `a`, `a[0]` too, `ab` not).
pub fn is_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let src = Source::new("f".into(), "ab\ncé d\n\nx");
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(1), (1, 2));
        assert_eq!(src.position(3), (2, 1));
        // "cé " is 4 bytes but 3 characters.
        assert_eq!(src.position(7), (2, 4));
        assert_eq!(src.position(9), (3, 1));
        assert_eq!(src.position(10), (4, 1));
        assert_eq!(src.position(999), (4, 2));
    }

    #[test]
    fn positions_in_empty_text_are_line_one() {
        assert_eq!(Source::new("f".into(), "").position(0), (1, 1));
    }

    #[test]
    fn key_paths_quote_keys_that_are_not_bare() {
        assert_eq!(join("", "runtime"), "runtime");
        assert_eq!(join("upstreams", "llm-2"), "upstreams.llm-2");
        assert_eq!(join("upstreams", "a.b"), "upstreams.\"a.b\"");
        assert_eq!(
            index(&join("upstreams.llm", "servers"), 1),
            "upstreams.llm.servers[1]"
        );
    }

    #[test]
    fn is_under_respects_segment_boundaries() {
        assert!(is_under("a.b", "a"));
        assert!(is_under("a[0].c", "a"));
        assert!(is_under("a", "a"));
        assert!(!is_under("ab", "a"));
        assert!(!is_under("b.a", "a"));
    }
}
