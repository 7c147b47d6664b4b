//! The nginx directive tree, with `include` followed as nginx does: a relative path is taken
//! from the configuration's directory, a glob includes its matches in name order (none is
//! fine), a plain path must exist. A configuration copied out of its machine (a Docker
//! image's `/etc/nginx/nginx.conf` with `include /etc/nginx/conf.d/*.conf;`) names absolute
//! paths that are not here: those are looked up beside the imported file, with a note.

use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::lexer::{self, Kind, Token};
use super::{ImportError, Notes, Origin};

/// One directive: `name args...;` or `name args... { block }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    pub at: Origin,
}

/// Deeper than this is a loop nginx would not survive either.
const MAX_DEPTH: usize = 32;

/// Reads `path` and everything it includes into one tree.
pub fn load(path: &Path, notes: &mut Notes) -> Result<Vec<Directive>, ImportError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut loader = Loader {
        base,
        stack: Vec::new(),
        notes,
    };
    loader.file(path, None)
}

struct Loader<'n> {
    /// The imported file's directory: nginx's conf dir, where relative includes start.
    base: PathBuf,
    /// The files being read, outermost first, to refuse an include loop.
    stack: Vec<PathBuf>,
    notes: &'n mut Notes,
}

impl Loader<'_> {
    fn file(&mut self, path: &Path, from: Option<&Origin>) -> Result<Vec<Directive>, ImportError> {
        let error = |message: String| match from {
            Some(at) => ImportError::at(at, message),
            None => ImportError { at: None, message },
        };
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canonical) || self.stack.len() >= MAX_DEPTH {
            return Err(error(format!(
                "include loop: {} includes itself",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        let file: Rc<str> = path.display().to_string().into();
        let tokens = lexer::tokens(&text).map_err(|e| {
            let at = Origin {
                file: file.clone(),
                line: e.line,
            };
            ImportError::at(&at, e.message)
        })?;
        self.stack.push(canonical);
        let mut parser = Parser {
            tokens: &tokens,
            i: 0,
            file,
        };
        let tree = parser.block(None, self);
        self.stack.pop();
        tree
    }

    /// The files an `include` names, in the order nginx reads them.
    fn resolve(&mut self, pattern: &str, at: &Origin) -> Result<Vec<PathBuf>, ImportError> {
        let is_glob = pattern.contains(['*', '?', '[']);
        let written = Path::new(pattern);
        if written.is_relative() {
            let mut matches = expand(&self.base.join(written));
            // A conf.d/ fragment imported alone: nginx's conf dir is one up.
            if let Some(up) = self
                .base
                .parent()
                .filter(|_| matches.is_empty() && !is_glob)
            {
                matches = expand(&up.join(written));
                if let Some(found) = matches.first() {
                    let message = format!("{pattern} read from {}", found.display());
                    self.notes.note(at, message);
                }
            }
            if matches.is_empty() && !is_glob {
                let message = format!(
                    "include {pattern}: no such file (looked in {})",
                    self.base.display()
                );
                return Err(ImportError::at(at, message));
            }
            return Ok(matches);
        }
        let here = expand(written);
        if !here.is_empty() {
            return Ok(here);
        }
        // Copied out of its machine: take the longest tail of the path found beside us.
        let parts: Vec<&std::ffi::OsStr> = written
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p),
                _ => None,
            })
            .collect();
        for skip in 0..parts.len() {
            let tail: PathBuf = parts[skip..].iter().collect();
            let mut beside = expand(&self.base.join(&tail));
            // `/etc/nginx/*.conf` must not find the imported nginx.conf itself.
            beside.retain(|p| {
                let p = p.canonicalize().unwrap_or_else(|_| p.clone());
                !self.stack.contains(&p)
            });
            if !beside.is_empty() {
                let message = format!(
                    "{pattern} is not on this machine; read {} instead",
                    self.base.join(&tail).display()
                );
                self.notes.warn(at, message);
                return Ok(beside);
            }
        }
        if is_glob {
            self.notes.warn(
                at,
                format!("include {pattern} matches no file here nor beside the imported file"),
            );
            return Ok(Vec::new());
        }
        let message = format!(
            "include {pattern}: no such file (nor beside the imported file in {})",
            self.base.display()
        );
        Err(ImportError::at(at, message))
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    i: usize,
    file: Rc<str>,
}

impl Parser<'_> {
    fn origin(&self, line: u32) -> Origin {
        Origin {
            file: self.file.clone(),
            line,
        }
    }

    /// Directives up to the `}` closing `open` (or the end of the file at the top).
    fn block(
        &mut self,
        open: Option<u32>,
        loader: &mut Loader<'_>,
    ) -> Result<Vec<Directive>, ImportError> {
        let mut out = Vec::new();
        let mut words: Vec<(String, u32)> = Vec::new();
        while let Some(token) = self.tokens.get(self.i) {
            self.i += 1;
            match &token.kind {
                Kind::Word(w) => words.push((w.clone(), token.line)),
                Kind::Semi => {
                    let directive = self.directive(&mut words, token.line, None, ";")?;
                    if directive.name == "include" {
                        out.extend(self.include(&directive, loader)?);
                    } else {
                        out.push(directive);
                    }
                }
                Kind::Open => {
                    let inner = self.block(Some(token.line), loader)?;
                    out.push(self.directive(&mut words, token.line, Some(inner), "{")?);
                }
                Kind::Close => {
                    if !words.is_empty() {
                        let at = self.origin(words[0].1);
                        return Err(ImportError::at(
                            &at,
                            format!("missing ; after {:?}", words[0].0),
                        ));
                    }
                    return match open {
                        Some(_) => Ok(out),
                        None => Err(ImportError::at(&self.origin(token.line), "unexpected }")),
                    };
                }
            }
        }
        if let Some((word, line)) = words.first() {
            let at = self.origin(*line);
            return Err(ImportError::at(&at, format!("missing ; after {word:?}")));
        }
        match open {
            Some(line) => Err(ImportError::at(
                &self.origin(line),
                "this { is never closed (unexpected end of file)",
            )),
            None => Ok(out),
        }
    }

    fn directive(
        &self,
        words: &mut Vec<(String, u32)>,
        line: u32,
        block: Option<Vec<Directive>>,
        what: &str,
    ) -> Result<Directive, ImportError> {
        let mut taken = std::mem::take(words).into_iter();
        let Some((name, first)) = taken.next() else {
            return Err(ImportError::at(
                &self.origin(line),
                format!("unexpected {what}"),
            ));
        };
        Ok(Directive {
            name,
            args: taken.map(|(w, _)| w).collect(),
            block,
            at: self.origin(first),
        })
    }

    fn include(
        &self,
        directive: &Directive,
        loader: &mut Loader<'_>,
    ) -> Result<Vec<Directive>, ImportError> {
        let [pattern] = directive.args.as_slice() else {
            return Err(ImportError::at(&directive.at, "include takes one path"));
        };
        let mut out = Vec::new();
        for path in loader.resolve(pattern, &directive.at)? {
            out.extend(loader.file(&path, Some(&directive.at))?);
        }
        Ok(out)
    }
}

/// The existing files `pattern` names, sorted as glob(3) sorts them; wildcards (`*`, `?`,
/// `[...]`) may stand in any component.
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        let text = component.as_os_str().to_string_lossy();
        let wild = matches!(component, Component::Normal(_)) && text.contains(['*', '?', '[']);
        if !wild {
            found.iter_mut().for_each(|p| p.push(component));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let listing = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            });
            let Ok(entries) = listing else { continue };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && matches(text.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

/// fnmatch(3) without flags: `*`, `?` and `[a-z]` / `[!a]` classes.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|skip| matches(&pattern[1..], &name[skip..])),
        Some(b'?') => !name.is_empty() && matches(&pattern[1..], &name[1..]),
        Some(b'[') => {
            let Some(end) = pattern
                .iter()
                .skip(2)
                .position(|&b| b == b']')
                .map(|p| p + 2)
            else {
                return name.first() == Some(&b'[') && matches(&pattern[1..], &name[1..]);
            };
            let Some(&c) = name.first() else { return false };
            let class = &pattern[1..end];
            let (negate, class) = match class.first() {
                Some(b'!') | Some(b'^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if k + 2 < class.len() && class[k + 1] == b'-' {
                    hit |= (class[k]..=class[k + 2]).contains(&c);
                    k += 3;
                } else {
                    hit |= class[k] == c;
                    k += 1;
                }
            }
            hit != negate && matches(&pattern[end + 1..], &name[1..])
        }
        Some(&b) => name.first() == Some(&b) && matches(&pattern[1..], &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("ringway-import-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(tree: &[Directive]) -> Vec<String> {
        tree.iter()
            .map(|d| format!("{}@{}", d.name, d.at))
            .collect()
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(matches(b"*.conf", b"a.conf"));
        assert!(!matches(b"*.conf", b"a.conf.bak"));
        assert!(matches(b"site-?.conf", b"site-1.conf"));
        assert!(matches(b"[a-c]x", b"bx"));
        assert!(!matches(b"[!a-c]x", b"bx"));
        assert!(matches(b"*", b""));
    }

    #[test]
    fn includes_splice_files_in_name_order_with_their_own_lines() {
        let d = Dir::new("order");
        let top = d.write(
            "nginx.conf",
            "http {\n  include conf.d/*.conf;\n  x 1;\n}\n",
        );
        d.write("conf.d/b.conf", "\n\nb;\n");
        d.write("conf.d/a.conf", "a;\n");
        d.write("conf.d/c.txt", "c;\n");
        let tree = load(&top, &mut Notes::default()).unwrap();
        let http = tree[0].block.as_ref().unwrap();
        let base = d.0.display();
        assert_eq!(
            names(http),
            [
                format!("a@{base}/conf.d/a.conf:1"),
                format!("b@{base}/conf.d/b.conf:3"),
                format!("x@{base}/nginx.conf:3")
            ]
        );
    }

    #[test]
    fn a_missing_plain_include_is_an_error_at_its_line_but_an_empty_glob_is_not() {
        let d = Dir::new("missing");
        let top = d.write(
            "nginx.conf",
            "a;\ninclude none/*.conf;\ninclude proxy.conf;\n",
        );
        let e = load(&top, &mut Notes::default()).unwrap_err();
        assert_eq!(e.at.unwrap().line, 3);
        assert!(e.message.contains("proxy.conf"), "{}", e.message);
    }

    #[test]
    fn an_absolute_include_not_here_is_read_beside_the_file_with_a_warning() {
        let d = Dir::new("docker");
        let top = d.write(
            "nginx.conf",
            "include /etc/ringway-not-here/conf.d/*.conf;\ninclude /nowhere/proxy.conf;\n",
        );
        d.write("conf.d/llm.conf", "upstream;\n");
        d.write("proxy.conf", "proxy;\n");
        let mut notes = Notes::default();
        let tree = load(&top, &mut notes).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "upstream");
        assert_eq!(tree[1].name, "proxy");
        let warned: Vec<u32> = notes.warnings().map(|n| n.at.line).collect();
        assert_eq!(warned, [1, 2]);
    }

    #[test]
    fn an_include_loop_is_an_error_not_a_hang() {
        let d = Dir::new("loop");
        let top = d.write("nginx.conf", "include self.conf;\n");
        d.write("self.conf", "include self.conf;\n");
        let e = load(&top, &mut Notes::default()).unwrap_err();
        assert!(e.message.contains("loop"), "{}", e.message);
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let d = Dir::new("braces");
        let open = d.write("open.conf", "http {\n  server {\n  }\n");
        let e = load(&open, &mut Notes::default()).unwrap_err();
        assert_eq!(
            (e.at.unwrap().line, e.message.contains("never closed")),
            (1, true)
        );
        let close = d.write("close.conf", "a;\n}\n");
        let e = load(&close, &mut Notes::default()).unwrap_err();
        assert_eq!(e.at.unwrap().line, 2);
        let semi = d.write("semi.conf", "http {\n  listen 80\n}\n");
        let e = load(&semi, &mut Notes::default()).unwrap_err();
        assert_eq!(e.at.unwrap().line, 2, "{}", e.message);
    }
}
