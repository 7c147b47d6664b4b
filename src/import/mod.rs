//! `ringway import-nginx` and `ringway import-haproxy`: read an existing nginx or HAProxy
//! load-balancing configuration and write the ringway TOML that does the same.
//!
//! The pipeline: [`lexer`] cuts nginx text into tokens with their lines, [`include`] builds
//! the directive tree and follows `include` (globs, a Docker layout copied out of its image),
//! [`nginx`] walks the contexts as nginx inherits them and fills a [`toml_out::Doc`]
//! ([`nginx_keys`] turns inherited settings into ringway keys, [`nginx_drop`] says why a
//! directive is not carried over, [`nginx_listen`] makes `server` blocks listeners and
//! routes, [`nginx_upstream`] does `upstream` blocks, [`vars`] maps `$variables`, durations
//! and sizes); [`haproxy`] (with [`haproxy_parse`]) does the same for HAProxy's sections. [`toml_out`] writes the document with a comment above each
//! key naming the file and line it came from.
//!
//! Nothing is dropped silently: every directive that is not carried over leaves a
//! [`Notes`] entry (a warning when behaviour changes, a note when ringway already does it).

mod haproxy;
mod haproxy_parse;
mod include;
mod lexer;
mod nginx;
mod nginx_drop;
mod nginx_keys;
mod nginx_listen;
mod nginx_upstream;
mod toml_out;
mod vars;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

/// Where a directive was written: the file as the user can open it, and its line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Rc<str>,
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// An input the importer cannot read: a syntax error, a missing include. Exit 1.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportError {
    pub at: Option<Origin>,
    pub message: String,
}

impl ImportError {
    pub fn at(at: &Origin, message: impl Into<String>) -> ImportError {
        ImportError {
            at: Some(at.clone()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// How much a dropped directive matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// ringway behaves differently from the input here: read it.
    Warning,
    /// Not written because ringway already does it (or it does not apply).
    Note,
}

/// One thing the reader of the conversion should know, in input order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notice {
    pub level: Level,
    pub at: Origin,
    pub message: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(f, "{}: {level}: {}", self.at, self.message)
    }
}

/// The notices of one conversion. The same directive is often read once per server that
/// inherits it: each notice is kept once.
#[derive(Default)]
pub struct Notes {
    pub list: Vec<Notice>,
    seen: HashSet<Notice>,
}

impl Notes {
    pub fn warn(&mut self, at: &Origin, message: impl Into<String>) {
        self.push(Level::Warning, at, message.into());
    }

    pub fn note(&mut self, at: &Origin, message: impl Into<String>) {
        self.push(Level::Note, at, message.into());
    }

    fn push(&mut self, level: Level, at: &Origin, message: String) {
        let notice = Notice {
            level,
            at: at.clone(),
            message,
        };
        if self.seen.insert(notice.clone()) {
            self.list.push(notice);
        }
    }

    /// Puts the notices in reading order: by file (in the order files were first
    /// mentioned), then by line. The walk meets directives out of order (a level's settings
    /// are read before its blocks).
    fn sort(&mut self) {
        let mut files: Vec<std::rc::Rc<str>> = Vec::new();
        for n in &self.list {
            if !files.contains(&n.at.file) {
                files.push(n.at.file.clone());
            }
        }
        let rank = |n: &Notice| files.iter().position(|f| *f == n.at.file);
        self.list.sort_by_key(|n| (rank(n), n.at.line));
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Notice> {
        self.list.iter().filter(|n| n.level == Level::Warning)
    }
}

/// A finished conversion: the TOML text and what the reader should know about it.
pub struct Import {
    pub toml: String,
    pub notes: Notes,
}

/// Converts the nginx configuration at `path` (a whole `nginx.conf` or a `conf.d/`
/// fragment), following its includes.
pub fn nginx(path: &Path) -> Result<Import, ImportError> {
    let mut notes = Notes::default();
    let tree = include::load(path, &mut notes)?;
    let doc = nginx::convert(&tree, &mut notes)?;
    notes.sort();
    let header = format!("nginx configuration {}", path.display());
    Ok(Import {
        toml: toml_out::write(&doc, &header),
        notes,
    })
}

/// Converts the HAProxy configuration at `path`.
pub fn haproxy(path: &Path) -> Result<Import, ImportError> {
    let mut notes = Notes::default();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError {
        at: None,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let file: Rc<str> = path.display().to_string().into();
    let doc = haproxy::convert(&text, &file, &mut notes)?;
    notes.sort();
    let header = format!("HAProxy configuration {}", path.display());
    Ok(Import {
        toml: toml_out::write(&doc, &header),
        notes,
    })
}
