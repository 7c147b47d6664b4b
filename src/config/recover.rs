//! TOML text to [`RawConfig`], reporting every syntax, unknown-key and type error, not only
//! the first.
//!
//! serde stops at the first error. So after each one we find the key it points at (by its
//! span, in the parsed document tree), remove that key from the tree and deserialize again.
//! The removed keys are remembered: validation errors about them (e.g. "missing") would only
//! repeat the problem already reported, and are dropped.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::RawConfig;
use super::source::{Report, index, join};

/// Gives up on a file with this many errors: nobody reads past them.
const MAX_ERRORS: usize = 100;

/// One step of a key path in the document tree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The outcome of reading the document: `raw` is `None` when the file cannot be read as a
/// whole (syntax errors), so there is nothing sensible to validate.
pub struct Recovered {
    pub raw: Option<RawConfig>,
    /// Key paths removed after a type error; validation errors under them are noise.
    pub removed: Vec<String>,
}

/// Parses and deserializes `report.src.text`, recording errors in `report`.
pub fn read(report: &mut Report<'_, '_>) -> Recovered {
    let (doc, syntax) = DeTable::parse_recoverable(report.src.text);
    let root_span = doc.span();
    let mut table = doc.into_inner();
    let mut removed = Vec::new();
    if !syntax.is_empty() {
        for err in syntax.iter().take(MAX_ERRORS) {
            let span = err.span().unwrap_or(0..0);
            let key = match locate(&table, span.start) {
                Some(steps) => render(&steps),
                None => syntax_key(report.src.text, &span),
            };
            report.at(&span, &key, err.message());
        }
        return Recovered { raw: None, removed };
    }
    for _ in 0..MAX_ERRORS {
        let value = Spanned::new(root_span.clone(), DeValue::Table(table.clone()));
        let err = match RawConfig::deserialize(ValueDeserializer::from(value)) {
            Ok(raw) => {
                return Recovered {
                    raw: Some(raw),
                    removed,
                };
            }
            Err(err) => err,
        };
        let span = err.span().unwrap_or(0..0);
        let Some(mut steps) = locate(&table, span.start) else {
            report.at(&span, "", err.message());
            return Recovered { raw: None, removed };
        };
        report.at(&span, &render(&steps), err.message());
        // A bad array element takes its whole array with it: removing only the element would
        // shift the indices of later elements, and their errors would name the wrong one.
        while matches!(steps.last(), Some(Step::Index(_))) {
            steps.pop();
        }
        if !remove(&mut table, &steps) {
            return Recovered { raw: None, removed };
        }
        removed.push(render(&steps));
    }
    Recovered { raw: None, removed }
}

/// A best guess at the key of a syntax error the recovered tree does not hold (such as the
/// second of two duplicate keys): the nearest `[table]` header above it plus the word at the
/// error, when that word is a bare key.
fn syntax_key(text: &str, span: &Range<usize>) -> String {
    let before = text.get(..span.start).unwrap_or("");
    let header = match before.lines().rev().find_map(header_of) {
        Some((false, name)) => name.to_string(),
        Some((true, name)) => {
            // The n-th `[[name]]` header opens element n-1 of the array.
            let count = before
                .lines()
                .filter_map(header_of)
                .filter(|h| *h == (true, name))
                .count();
            index(name, count.saturating_sub(1))
        }
        None => String::new(),
    };
    let word = text.get(span.clone()).unwrap_or("");
    let bare = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { join(&header, word) } else { header }
}

/// `(is_array, name)` of a `[name]` or `[[name]]` header line.
fn header_of(line: &str) -> Option<(bool, &str)> {
    let line = line.trim_start();
    let array = line.starts_with("[[");
    let name = line.strip_prefix('[')?.trim_start_matches('[');
    Some((array, name.split(']').next()?.trim()))
}

fn render(steps: &[Step]) -> String {
    steps.iter().fold(String::new(), |path, step| match step {
        Step::Key(key) => join(&path, key),
        Step::Index(i) => index(&path, *i),
    })
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// The path of the smallest key or value whose span holds `offset`. Every entry is visited:
/// a table's span covers only its `[header]`, not its keys, so spans cannot prune the walk.
fn locate(table: &DeTable<'_>, offset: usize) -> Option<Vec<Step>> {
    let mut best: Option<(usize, Vec<Step>)> = None;
    let mut path = Vec::new();
    walk_table(table, offset, &mut path, &mut best);
    best.map(|(_, steps)| steps)
}

type Best = Option<(usize, Vec<Step>)>;

fn consider(span: &Range<usize>, offset: usize, path: &[Step], best: &mut Best) {
    if contains(span, offset) && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.to_vec()));
    }
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Step>, best: &mut Best) {
    for (key, value) in table.iter() {
        path.push(Step::Key(key.get_ref().to_string()));
        consider(&key.span(), offset, path, best);
        walk_value(value, offset, path, best);
        path.pop();
    }
}

fn walk_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Step>, best: &mut Best) {
    consider(&value.span(), offset, path, best);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, offset, path, best),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                path.push(Step::Index(i));
                walk_value(element, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Removes the entry at `steps` (which ends with a key); false when there is no such entry.
fn remove(table: &mut DeTable<'_>, steps: &[Step]) -> bool {
    let [Step::Key(key), rest @ ..] = steps else {
        return false;
    };
    if rest.is_empty() {
        return table.remove(key.as_str()).is_some();
    }
    let Some(value) = table.get_mut(key.as_str()) else {
        return false;
    };
    match (value.get_mut(), rest) {
        (DeValue::Table(inner), _) => remove(inner, rest),
        (DeValue::Array(array), [Step::Index(i), rest @ ..]) => {
            match array.get_mut(*i).map(|v| v.get_mut()) {
                Some(DeValue::Table(inner)) => remove(inner, rest),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::Source;
    use super::*;

    fn run(text: &str) -> (Recovered, Vec<String>) {
        let src = Source::new("t.toml".into(), text);
        let mut report = Report::new(&src);
        let recovered = read(&mut report);
        let errors = report.errors.iter().map(|e| e.to_string()).collect();
        (recovered, errors)
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_position() {
        let (rec, mut errors) =
            run("[runtime]\nbogus = 1\nworkers = 2\nnope = 3\n\n[log]\nlevle = \"x\"\n");
        errors.sort();
        assert!(rec.raw.is_some());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("t.toml:2:1: runtime.bogus: unknown field `bogus`"),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("t.toml:4:1: runtime.nope: unknown field `nope`"));
        assert!(errors[2].starts_with("t.toml:7:1: log.levle: unknown field `levle`"));
        assert_eq!(rec.removed, ["log.levle", "runtime.bogus", "runtime.nope"]);
    }

    #[test]
    fn type_errors_inside_arrays_of_tables_name_the_element() {
        let text = "[upstreams.llm]\nservers = [\n  { addr = \"a:1\" },\n  { addr = \"b:1\", weight = \"x\" },\n]\n";
        let (rec, errors) = run(text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("t.toml:4:28: upstreams.llm.servers[1].weight: invalid type"),
            "{errors:?}"
        );
        assert_eq!(rec.removed, ["upstreams.llm.servers[1].weight"]);
        let raw = rec.raw.unwrap();
        let group = &raw.upstreams.unwrap()["llm"];
        assert_eq!(group.get_ref().servers.as_ref().unwrap().get_ref().len(), 2);
    }

    #[test]
    fn a_bad_array_element_removes_its_array() {
        let (rec, errors) = run("[upstreams.llm]\nservers = [{ addr = \"a:1\" }, 5]\n");
        assert!(
            errors[0].contains("upstreams.llm.servers[1]: invalid type"),
            "{errors:?}"
        );
        assert_eq!(rec.removed, ["upstreams.llm.servers"]);
        assert!(
            rec.raw.unwrap().upstreams.unwrap()["llm"]
                .get_ref()
                .servers
                .is_none()
        );
    }

    #[test]
    fn unit_errors_point_at_the_value() {
        let (_, errors) = run("[[listener]]\nclient_body_timeout = \"10x\"\n");
        assert!(
            errors[0].starts_with("t.toml:2:23: listener[0].client_body_timeout: duration"),
            "{errors:?}"
        );
    }

    #[test]
    fn all_syntax_errors_are_reported_and_nothing_is_validated() {
        let (rec, errors) = run("a = \nb = \"x\nc = 1\n");
        assert!(rec.raw.is_none());
        assert!(errors.len() >= 2, "{errors:?}");
        assert!(errors[0].starts_with("t.toml:1:5"), "{errors:?}");
        assert!(errors[1].starts_with("t.toml:2:"), "{errors:?}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_at_the_second_key() {
        let (_, errors) = run("[runtime]\nworkers = 1\nworkers = 2\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("t.toml:3:1: runtime.workers: duplicate key"),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_keys_in_array_tables_name_the_element() {
        let text = "[[listener]]\n[[listener]]\nbind = \"a\"\n[[listener.route]]\n[[listener]]\n\
                    bind = \"b\"\nbind = \"c\"\n";
        let (_, errors) = run(text);
        assert!(
            errors[0].starts_with("t.toml:7:1: listener[2].bind: duplicate key"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_type_for_a_whole_section_removes_the_section() {
        let (rec, errors) = run("runtime = 5\n");
        assert!(
            errors[0].starts_with("t.toml:1:11: runtime: invalid type"),
            "{errors:?}"
        );
        assert_eq!(rec.removed, ["runtime"]);
    }
}
