//! nginx's configuration syntax cut into tokens: words (bare or quoted, with nginx's
//! escapes), `{`, `}` and `;`, each with its line. Comments run from a `#` that starts a
//! token to the end of the line.

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bare or quoted word, escapes resolved.
    Word(String),
    Open,
    Close,
    Semi,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub line: u32,
}

/// A syntax error: its line and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct LexError {
    pub line: u32,
    pub message: String,
}

/// Cuts `text` into tokens. Fails only on an unterminated quote.
pub fn tokens(text: &str) -> Result<Vec<Token>, LexError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '}' | ';' => {
                let kind = match c {
                    '{' => Kind::Open,
                    '}' => Kind::Close,
                    _ => Kind::Semi,
                };
                out.push(Token { kind, line });
                i += 1;
            }
            '"' | '\'' => {
                let start = line;
                let (word, next, lines) = quoted(&chars, i + 1, c).ok_or_else(|| LexError {
                    line: start,
                    message: format!("unterminated {c}quoted{c} string"),
                })?;
                out.push(Token {
                    kind: Kind::Word(word),
                    line: start,
                });
                line += lines;
                i = next;
            }
            _ => {
                let (word, next) = bare(&chars, i);
                out.push(Token {
                    kind: Kind::Word(word),
                    line,
                });
                i = next;
            }
        }
    }
    Ok(out)
}

/// A quoted word from `i` (just past the opening quote): the word, the index past the
/// closing quote and the newlines inside. `None` when the quote never closes.
fn quoted(chars: &[char], mut i: usize, quote: char) -> Option<(String, usize, u32)> {
    let mut word = String::new();
    let mut lines = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Some((word, i + 1, lines));
        }
        if c == '\n' {
            lines += 1;
        }
        if c == '\\' && i + 1 < chars.len() {
            // nginx resolves these four and keeps any other backslash as written.
            match chars[i + 1] {
                '"' | '\'' | '\\' => word.push(chars[i + 1]),
                't' => word.push('\t'),
                'r' => word.push('\r'),
                'n' => word.push('\n'),
                other => {
                    word.push('\\');
                    word.push(other);
                }
            }
            if chars[i + 1] == '\n' {
                lines += 1;
            }
            i += 2;
            continue;
        }
        word.push(c);
        i += 1;
    }
    None
}

/// A bare word from `i`: up to whitespace, `;`, `{` or `}`, except that `${name}` stays
/// one word (nginx's variable braces).
fn bare(chars: &[char], mut i: usize) -> (String, usize) {
    let mut word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == ';' || c == '}' {
            break;
        }
        if c == '{' {
            if !word.ends_with('$') {
                break;
            }
            while i < chars.len() && !chars[i].is_whitespace() {
                word.push(chars[i]);
                i += 1;
                if word.ends_with('}') {
                    break;
                }
            }
            continue;
        }
        if c == '\\' && i + 1 < chars.len() && !chars[i + 1].is_whitespace() {
            // The same escapes as in quotes: a regex's `\.` keeps its backslash.
            match chars[i + 1] {
                '"' | '\'' | '\\' | ';' | '{' | '}' => word.push(chars[i + 1]),
                other => {
                    word.push('\\');
                    word.push(other);
                }
            }
            i += 2;
            continue;
        }
        word.push(c);
        i += 1;
    }
    (word, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokens(text)
            .unwrap()
            .into_iter()
            .map(|t| match t.kind {
                Kind::Word(w) => w,
                Kind::Open => "{".into(),
                Kind::Close => "}".into(),
                Kind::Semi => ";".into(),
            })
            .collect()
    }

    #[test]
    fn splits_words_blocks_and_semicolons() {
        assert_eq!(
            words("upstream llm {server a:1 weight=2;}"),
            [
                "upstream", "llm", "{", "server", "a:1", "weight=2", ";", "}"
            ]
        );
    }

    #[test]
    fn comments_run_to_the_end_of_the_line_only_at_a_token_start() {
        assert_eq!(words("a b#c; # d;\ne;"), ["a", "b#c", ";", "e", ";"]);
    }

    #[test]
    fn quotes_keep_spaces_and_resolve_escapes() {
        assert_eq!(
            words(r#"log_format x '$a "q" \'s\'' "t\"u\\v\n";"#),
            ["log_format", "x", "$a \"q\" 's'", "t\"u\\v\n", ";"]
        );
        assert_eq!(words(r#"a "" ;"#), ["a", "", ";"]);
    }

    #[test]
    fn a_bare_backslash_keeps_regex_escapes() {
        assert_eq!(
            words(r"location ~ \.php$ {"),
            ["location", "~", r"\.php$", "{"]
        );
    }

    #[test]
    fn variable_braces_do_not_open_a_block() {
        assert_eq!(words("set $x ${host}_a;"), ["set", "$x", "${host}_a", ";"]);
        assert_eq!(words("location /a{"), ["location", "/a", "{"]);
    }

    #[test]
    fn every_token_has_its_line_even_after_a_multiline_quote() {
        let lines: Vec<u32> = tokens("a\n'b\nc'\nd;")
            .unwrap()
            .iter()
            .map(|t| t.line)
            .collect();
        assert_eq!(lines, [1, 2, 4, 4]);
    }

    #[test]
    fn an_unterminated_quote_names_the_line_it_opened_on() {
        let e = tokens("a;\nlog_format x 'abc;\n}\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"), "{}", e.message);
    }

    #[test]
    fn never_panics_on_any_byte_soup() {
        // A seeded walk over the characters that matter to the lexer.
        let alphabet: Vec<char> = "ab ;{}#'\"\\$\n\t".chars().collect();
        let mut seed = 0x2545_f491_u64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = tokens(&text);
        }
    }
}
