//! The ringway configuration being built ([`Doc`]) and its TOML text: every key is preceded
//! by a comment naming the input file and line it came from (and why, when the value is not
//! the one written there).

use std::fmt::Write;

use super::Origin;

/// A TOML value as the importer writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
    /// A sub-table (`gzip`, `request_headers`, `health_check`), each key with its origin.
    Table(Vec<Entry>),
}

/// One `key = value` with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub at: Origin,
    /// Why the value differs from what was written, when it does.
    pub note: Option<String>,
}

/// Keys of one table, in the order they were set; setting a key again replaces it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table(pub Vec<Entry>);

impl Table {
    pub fn set(&mut self, key: &str, value: Value, at: &Origin) {
        self.set_noted(key, value, at, None);
    }

    pub fn set_noted(&mut self, key: &str, value: Value, at: &Origin, note: Option<String>) {
        let entry = Entry {
            key: key.to_string(),
            value,
            at: at.clone(),
            note,
        };
        match self.0.iter_mut().find(|e| e.key == key) {
            Some(old) => *old = entry,
            None => self.0.push(entry),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.0.iter().find(|e| e.key == key)
    }
}

/// One `[[listener]]` and its routes.
#[derive(Clone, Debug, Default)]
pub struct Listener {
    pub keys: Table,
    pub routes: Vec<Table>,
}

/// One server of an upstream: its keys and the line it was written on.
#[derive(Clone, Debug)]
pub struct Server {
    pub at: Origin,
    pub keys: Vec<(String, Value)>,
}

/// One `[upstreams.NAME]`.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub at: Origin,
    pub keys: Table,
    pub servers: Vec<Server>,
}

/// A whole ringway configuration.
#[derive(Clone, Debug, Default)]
pub struct Doc {
    pub runtime: Table,
    pub log: Table,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Upstream>,
}

impl Doc {
    pub fn upstream(&mut self, name: &str) -> Option<&mut Upstream> {
        self.upstreams.iter_mut().find(|u| u.name == name)
    }
}

/// The TOML text of `doc`, opened by a comment naming the input.
pub fn write(doc: &Doc, source: &str) -> String {
    let mut out = format!(
        "# Written by `ringway import` from the {source}.\n\
         # Each key's comment names the line it came from. Check with: ringway -t -c FILE\n"
    );
    for (name, table) in [("runtime", &doc.runtime), ("log", &doc.log)] {
        if !table.0.is_empty() {
            let _ = writeln!(out, "\n[{name}]");
            entries(&mut out, name, &table.0);
        }
    }
    for listener in &doc.listeners {
        out.push_str("\n[[listener]]\n");
        entries(&mut out, "listener", &listener.keys.0);
        for route in &listener.routes {
            out.push_str("\n[[listener.route]]\n");
            entries(&mut out, "listener.route", &route.0);
        }
    }
    for upstream in &doc.upstreams {
        let path = format!("upstreams.{}", key(&upstream.name));
        let _ = writeln!(out, "\n# {}\n[{path}]", upstream.at);
        plain(&mut out, &upstream.keys.0);
        if !upstream.servers.is_empty() {
            out.push_str("servers = [\n");
            for server in &upstream.servers {
                let _ = writeln!(out, "  # {}", server.at);
                let fields: Vec<String> = server
                    .keys
                    .iter()
                    .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                    .collect();
                let _ = writeln!(out, "  {{ {} }},", fields.join(", "));
            }
            out.push_str("]\n");
        }
        tables(&mut out, &path, &upstream.keys.0);
    }
    out
}

/// Plain keys first, then sub-tables: TOML puts every key of a table before its sub-tables.
fn entries(out: &mut String, path: &str, list: &[Entry]) {
    plain(out, list);
    tables(out, path, list);
}

fn plain(out: &mut String, list: &[Entry]) {
    for e in list.iter().filter(|e| !matches!(e.value, Value::Table(_))) {
        comment(out, e);
        let _ = writeln!(out, "{} = {}", key(&e.key), inline(&e.value));
    }
}

fn tables(out: &mut String, path: &str, list: &[Entry]) {
    for e in list {
        let Value::Table(inner) = &e.value else {
            continue;
        };
        comment(out, e);
        let sub = format!("{path}.{}", key(&e.key));
        let _ = writeln!(out, "[{sub}]");
        entries(out, &sub, inner);
    }
}

fn comment(out: &mut String, e: &Entry) {
    match &e.note {
        Some(note) => {
            let _ = writeln!(out, "# {} ({note})", e.at);
        }
        None => {
            let _ = writeln!(out, "# {}", e.at);
        }
    }
}

/// A key, quoted when it is not a bare TOML key.
pub fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { k.to_string() } else { string(k) }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Str(s) => string(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Strs(list) => {
            let items: Vec<String> = list.iter().map(|s| string(s)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Table(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| format!("{} = {}", key(&e.key), inline(&e.value)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> Origin {
        Origin {
            file: "n.conf".into(),
            line,
        }
    }

    #[test]
    fn every_key_has_its_origin_and_sub_tables_follow_plain_keys() {
        let mut doc = Doc::default();
        let mut l = Listener::default();
        let headers = Table(vec![Entry {
            key: "X-A".into(),
            value: Value::Str("$remote_addr".into()),
            at: at(7),
            note: None,
        }]);
        l.keys
            .set("request_headers", Value::Table(headers.0), &at(7));
        l.keys.set("bind", Value::Str("0.0.0.0:80".into()), &at(3));
        l.keys.set_noted(
            "max_header_size",
            Value::Str("32k".into()),
            &at(4),
            Some("4 x 8k".into()),
        );
        doc.listeners.push(l);
        let text = write(&doc, "test");
        let body = text.split_once("[[listener]]\n").unwrap().1;
        assert_eq!(
            body,
            "# n.conf:3\nbind = \"0.0.0.0:80\"\n# n.conf:4 (4 x 8k)\nmax_header_size = \"32k\"\n\
             # n.conf:7\n[listener.request_headers]\n# n.conf:7\nX-A = \"$remote_addr\"\n"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(parsed["listener"][0]["request_headers"]["X-A"].is_str());
    }

    #[test]
    fn strings_and_keys_are_escaped() {
        assert_eq!(string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(key("llm"), "llm");
        assert_eq!(key("10.0.0.1:80"), "\"10.0.0.1:80\"");
    }

    #[test]
    fn servers_are_one_inline_table_per_line_with_origins() {
        let mut doc = Doc::default();
        let mut keys = Table::default();
        let check = vec![Entry {
            key: "path".into(),
            value: Value::Str("/health".into()),
            at: at(3),
            note: None,
        }];
        keys.set("health_check", Value::Table(check), &at(3));
        keys.set("balance", Value::Str("hash".into()), &at(4));
        doc.upstreams.push(Upstream {
            name: "a.b".into(),
            at: at(1),
            keys,
            servers: vec![Server {
                at: at(2),
                keys: vec![
                    ("addr".into(), Value::Str("127.0.0.1:1".into())),
                    ("backup".into(), Value::Bool(true)),
                ],
            }],
        });
        let text = write(&doc, "test");
        assert!(
            text.contains("balance = \"hash\"\nservers = [\n  # n.conf:2\n  { addr = \"127.0.0.1:1\", backup = true },\n]\n"),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(
            parsed["upstreams"]["a.b"]["servers"][0]["backup"]
                .as_bool()
                .unwrap()
        );
        assert!(parsed["upstreams"]["a.b"]["health_check"]["path"].is_str());
    }
}
