//! HAProxy's configuration read into sections of words (quotes, escapes, comments), each
//! proxy section preceded by the `defaults` in force; plus the parts of a frontend that need
//! more than one line: `bind` addresses, `acl` + `use_backend` as routes, header rules and
//! compression.

use std::rc::Rc;

use super::toml_out::{Entry, Table, Value};
use super::{ImportError, Notes, Origin};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    Other,
}

/// One keyword line.
#[derive(Clone, Debug)]
pub struct Line {
    pub words: Vec<String>,
    pub at: Origin,
}

impl Line {
    /// Word `i`, or `""`.
    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }
}

/// A section: for a proxy, the `defaults` lines first, then its own (so the last match of a
/// keyword is the one in force).
#[derive(Clone, Debug)]
pub struct Section {
    pub kind: SectionKind,
    pub name: String,
    pub at: Origin,
    pub lines: Vec<Line>,
}

/// Cuts `text` into sections.
pub fn sections(
    text: &str,
    file: &Rc<str>,
    notes: &mut Notes,
) -> Result<Vec<Section>, ImportError> {
    let mut out: Vec<Section> = Vec::new();
    let mut defaults: Vec<Line> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = Origin {
            file: file.clone(),
            line: n as u32 + 1,
        };
        let words = words(raw).map_err(|m| ImportError::at(&at, m))?;
        let Some(first) = words.first() else { continue };
        let kind = match first.as_str() {
            "global" => Some(SectionKind::Global),
            "defaults" => Some(SectionKind::Defaults),
            "frontend" => Some(SectionKind::Frontend),
            "backend" => Some(SectionKind::Backend),
            "listen" => Some(SectionKind::Listen),
            "resolvers" | "peers" | "userlist" | "cache" | "program" | "http-errors"
            | "mailers" | "ring" => {
                notes.warn(&at, format!("{first} section: no equivalent; dropped"));
                Some(SectionKind::Other)
            }
            _ => None,
        };
        let Some(kind) = kind else {
            match out.last_mut() {
                Some(section) => section.lines.push(Line { words, at }),
                None => return Err(ImportError::at(&at, format!("{first} outside any section"))),
            }
            continue;
        };
        if let Some(done) = out.last().filter(|s| s.kind == SectionKind::Defaults) {
            // A new defaults section replaces the previous one.
            defaults = done.lines.clone();
        }
        let mut lines = match kind {
            SectionKind::Frontend | SectionKind::Backend | SectionKind::Listen => defaults.clone(),
            _ => Vec::new(),
        };
        // Old syntax: `listen NAME ADDR:PORT` binds on the section line.
        if kind == SectionKind::Listen && words.len() > 2 {
            let mut bind = vec!["bind".to_string()];
            bind.extend(words[2..].iter().cloned());
            lines.push(Line {
                words: bind,
                at: at.clone(),
            });
        }
        out.push(Section {
            kind,
            name: words.get(1).cloned().unwrap_or_default(),
            at,
            lines,
        });
    }
    Ok(out)
}

/// The words of one line: `#` starts a comment, quotes group, `\` escapes.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q}quoted{q} string"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// The listen addresses of a `bind` line (`:80`, `*:80`, `:::80`, `ipv4@1.2.3.4:80`, a
/// comma list), or none (with a warning) for what ringway cannot serve.
pub fn binds(line: &Line, notes: &mut Notes) -> Vec<(String, Origin)> {
    let params = &line.words[2.min(line.words.len())..];
    for p in params {
        match p.as_str() {
            "ssl" | "accept-proxy" | "quic" => {
                notes.warn(
                    &line.at,
                    format!("bind ... {p}: not supported; this address is dropped"),
                );
                return Vec::new();
            }
            "crt" | "alpn" | "v4v6" | "v6only" | "transparent" | "defer-accept" | "tfo"
            | "process" | "thread" => {}
            _ => {}
        }
    }
    if !params.is_empty() {
        notes.note(
            &line.at,
            format!("bind parameters {}: ignored", params.join(" ")),
        );
    }
    let mut out = Vec::new();
    for addr in line.word(1).split(',') {
        let addr = addr
            .strip_prefix("ipv4@")
            .or_else(|| addr.strip_prefix("ipv6@"))
            .unwrap_or(addr);
        let Some((host, port)) = addr.rsplit_once(':') else {
            notes.warn(
                &line.at,
                format!("bind {addr}: not an address:port; dropped"),
            );
            continue;
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty() {
            notes.warn(
                &line.at,
                format!("bind {addr}: port ranges are not supported; dropped"),
            );
            continue;
        }
        let host = match host {
            "" | "*" => "0.0.0.0".to_string(),
            "::" | ":" => "[::]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        out.push((format!("{host}:{port}"), line.at.clone()));
    }
    out
}

/// What one ACL tests.
#[derive(Clone, Debug)]
enum Test {
    Path(Vec<String>),
    Host(Vec<String>),
}

fn acl_test(words: &[String]) -> Option<Test> {
    let (fetch, values) = words.split_first()?;
    let values: Vec<String> = values
        .iter()
        .filter(|v| !v.starts_with('-'))
        .cloned()
        .collect();
    match fetch.as_str() {
        "path_beg" => Some(Test::Path(values)),
        "hdr(host)" | "req.hdr(host)" | "hdr_dom(host)" => Some(Test::Host(values)),
        _ => None,
    }
}

/// `use_backend NAME if ACL...` lines as routes, in order. Conditions other than an AND of
/// `path_beg` and `hdr(host)` tests are reported.
pub fn routes(section: &Section, notes: &mut Notes) -> Vec<Table> {
    let mut out = Vec::new();
    for line in section.lines.iter().filter(|l| l.word(0) == "use_backend") {
        match route_tests(section, line) {
            Ok((paths, hosts)) => {
                let paths = if paths.is_empty() {
                    vec![None]
                } else {
                    paths.into_iter().map(Some).collect()
                };
                let hosts = if hosts.is_empty() {
                    vec![None]
                } else {
                    hosts.into_iter().map(Some).collect()
                };
                for host in &hosts {
                    for path in &paths {
                        let mut t = Table::default();
                        if let Some(p) = path {
                            t.set("path_prefix", Value::Str(p.clone()), &line.at);
                        }
                        if let Some(h) = host {
                            t.set("host", Value::Str(h.clone()), &line.at);
                        }
                        t.set("upstream", Value::Str(line.word(1).into()), &line.at);
                        out.push(t);
                    }
                }
            }
            Err(why) => notes.warn(
                &line.at,
                format!("use_backend {}: {why}; dropped", line.word(1)),
            ),
        }
    }
    out
}

/// The path prefixes and hosts a `use_backend` condition requires.
fn route_tests(section: &Section, line: &Line) -> Result<(Vec<String>, Vec<String>), String> {
    if line.word(2) != "if" {
        return Err("only `if` conditions become routes".into());
    }
    let mut tests = Vec::new();
    let mut rest = &line.words[3..];
    while let Some((term, tail)) = rest.split_first() {
        if term == "{" {
            let end = tail.iter().position(|w| w == "}").ok_or("unclosed {")?;
            tests.push(
                acl_test(&tail[..end]).ok_or("only path_beg and hdr(host) tests become routes")?,
            );
            rest = &tail[end + 1..];
            continue;
        }
        if term.starts_with('!') || matches!(term.as_str(), "or" | "||" | "unless") {
            return Err("negations and `or` do not become routes".into());
        }
        let lines: Vec<&Line> = section
            .lines
            .iter()
            .filter(|l| l.word(0) == "acl" && l.word(1) == term)
            .collect();
        if lines.is_empty() {
            return Err(format!("no acl {term}"));
        }
        for l in lines {
            tests.push(
                acl_test(&l.words[2..]).ok_or("only path_beg and hdr(host) tests become routes")?,
            );
        }
        rest = tail;
    }
    let (mut paths, mut hosts) = (Vec::new(), Vec::new());
    for test in tests {
        match test {
            Test::Path(v) if paths.is_empty() => paths = v,
            Test::Host(v) if hosts.is_empty() => hosts = v,
            _ => return Err("two tests of the same kind in one condition".into()),
        }
    }
    Ok((paths, hosts))
}

/// `http-request set-header`, `http-response set-header|del-header` and `compression`.
pub fn headers(section: &Section, t: &mut Table, notes: &mut Notes) {
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut hidden = Vec::new();
    let mut gzip_types: Option<(Vec<String>, Origin)> = None;
    let mut gzip_on = None;
    for line in &section.lines {
        let entry = |line: &Line| Entry {
            key: line.word(2).to_string(),
            value: Value::Str(line.word(3).replace('$', "$$")),
            at: line.at.clone(),
            note: None,
        };
        let literal = !line.word(3).contains("%[") && line.words.len() == 4;
        match (line.word(0), line.word(1)) {
            ("http-request", "set-header") if literal => request.push(entry(line)),
            ("http-response", "set-header") if literal => response.push(entry(line)),
            ("http-response", "del-header") => hidden.push((line.word(2).to_string(), line.at.clone())),
            ("http-request" | "http-response", action) => {
                notes.warn(&line.at, format!("{} {action}: only literal set-header (and response del-header) carry over; dropped", line.word(0)))
            }
            ("compression", "algo") => {
                if line.words[2..].iter().any(|a| a == "gzip") {
                    gzip_on = Some(line.at.clone());
                } else {
                    notes.warn(&line.at, "compression algo: ringway compresses with gzip only; dropped");
                }
            }
            ("compression", "type") => gzip_types = Some((line.words[2..].to_vec(), line.at.clone())),
            ("compression", other) => notes.warn(&line.at, format!("compression {other}: no equivalent; dropped")),
            _ => {}
        }
    }
    if let Some(at) = gzip_on {
        let mut g = Table::default();
        if let Some((types, at)) = gzip_types {
            g.set("types", Value::Strs(types), &at);
        }
        t.set("gzip", Value::Table(g.0), &at);
    }
    for (key, list) in [("request_headers", request), ("response_headers", response)] {
        if let Some(first) = list.first() {
            let at = first.at.clone();
            t.set(key, Value::Table(list), &at);
        }
    }
    if let Some((_, at)) = hidden.first() {
        let at = at.clone();
        t.set(
            "hide_response_headers",
            Value::Strs(hidden.into_iter().map(|h| h.0).collect()),
            &at,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Section>, Notes) {
        let mut notes = Notes::default();
        let s = sections(text, &Rc::from("h.cfg"), &mut notes).unwrap();
        (s, notes)
    }

    #[test]
    fn words_handle_quotes_escapes_and_comments() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\ g # h"#).unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert!(words("a \"b").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn proxy_sections_start_with_the_defaults_in_force() {
        let (s, _) = parse(
            "defaults\n  timeout connect 5s\nbackend a\n  timeout connect 1s\ndefaults\n  retries 2\nbackend b\n",
        );
        let a: Vec<&str> = s[1].lines.iter().map(|l| l.word(0)).collect();
        assert_eq!(a, ["timeout", "timeout"]);
        assert_eq!(s[1].lines[1].at.line, 4);
        let b: Vec<&str> = s[3].lines.iter().map(|l| l.word(0)).collect();
        assert_eq!(b, ["retries"]);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_with_its_line() {
        let e = sections(
            "global\n  log \"x\n",
            &Rc::from("h.cfg"),
            &mut Notes::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "h.cfg:2: unterminated \"quoted\" string");
    }

    #[test]
    fn bind_forms() {
        let line = |w: &[&str]| Line {
            words: w.iter().map(|s| s.to_string()).collect(),
            at: Origin {
                file: "h".into(),
                line: 1,
            },
        };
        let mut notes = Notes::default();
        let addrs = |w: &[&str], n: &mut Notes| {
            binds(&line(w), n)
                .into_iter()
                .map(|b| b.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(addrs(&["bind", ":80"], &mut notes), ["0.0.0.0:80"]);
        assert_eq!(
            addrs(&["bind", "*:80,127.0.0.1:81"], &mut notes),
            ["0.0.0.0:80", "127.0.0.1:81"]
        );
        assert_eq!(addrs(&["bind", ":::80"], &mut notes), ["[::]:80"]);
        assert_eq!(addrs(&["bind", "ipv6@::1:80"], &mut notes), ["[::1]:80"]);
        assert!(addrs(&["bind", ":443", "ssl", "crt", "x.pem"], &mut notes).is_empty());
        assert!(addrs(&["bind", ":80-81"], &mut notes).is_empty());
    }

    #[test]
    fn path_and_host_acls_become_routes_and_others_warn() {
        let (s, _) = parse(
            "frontend f\n  acl api path_beg /v1 /v2\n  acl h hdr(host) -i api.example.com\n  \
             acl ua hdr(user-agent) bot\n  use_backend a if api h\n  use_backend b if { path_beg /emb }\n  \
             use_backend c if ua\n  use_backend d if !api\n",
        );
        let mut notes = Notes::default();
        let r = routes(&s[0], &mut notes);
        let show: Vec<String> = r
            .iter()
            .map(|t| {
                t.0.iter()
                    .map(|e| format!("{}={:?}", e.key, e.value))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(show.len(), 3, "{show:?}");
        assert!(
            show[0].contains("/v1") && show[0].contains("api.example.com"),
            "{show:?}"
        );
        assert!(show[1].contains("/v2"));
        assert!(show[2].contains("/emb") && show[2].contains("\"b\""));
        assert_eq!(notes.warnings().count(), 2);
    }
}
