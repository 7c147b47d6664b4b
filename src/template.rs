//! `$variable` templates (hash keys, header values, access log formats): parsed once at load
//! time into literal and variable parts, rendered per request without re-parsing.
//!
//! Also the two lookups the data path needs to render `$arg_NAME` and `$cookie_NAME`
//! ([`query_arg`], [`cookie`]), kept here so their matching rules live next to the syntax.

/// A template variable, as SPEC lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    TimeLocal,
    TimeIso8601,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    /// `$arg_NAME`: NAME as written.
    Arg(Box<str>),
    /// `$http_NAME`: the header name, lower-cased with `_` turned into `-`.
    Http(Box<str>),
    /// `$cookie_NAME`: NAME as written.
    Cookie(Box<str>),
    Host,
    Scheme,
    Status,
    BodyBytesSent,
    RequestLength,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamConnectTime,
    UpstreamResponseTime,
    /// Seconds from sending the request to the response head, per attempt.
    UpstreamFirstByteTime,
    /// Seconds from sending the request to the first byte of the response body, per attempt.
    UpstreamFirstTokenTime,
    Worker,
    /// The top-level `"model"` string of a JSON request body.
    RequestModel,
    /// nginx stream's: bytes sent to the client (an HTTP request: its body bytes).
    BytesSent,
    /// nginx stream's: bytes received from the client (an HTTP request: `$request_length`).
    BytesReceived,
    /// nginx stream's: seconds the connection lasted (an HTTP request: `$request_time`).
    SessionTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(Box<[u8]>),
    Var(Var),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// Supplies variable values while rendering; the data path implements it per request.
pub trait VarSource {
    /// Appends the value of `var` to `out` (nothing, or `-` where nginx prints `-`).
    fn write_var(&self, var: &Var, out: &mut Vec<u8>);
}

impl Template {
    /// Parses `$name` and `${name}` references; `$$` is a literal `$`. Unknown variables are
    /// errors naming the variable.
    ///
    /// A bare `$name` takes the longest run of `[A-Za-z0-9_]`, so `$host_x` is the (unknown)
    /// variable `host_x`; write `${host}_x` to follow a variable with name characters.
    pub fn parse(text: &str) -> Result<Template, String> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                lit.push(bytes[i]);
                i += 1;
                continue;
            }
            let (name, next) = match bytes.get(i + 1) {
                Some(b'$') => {
                    lit.push(b'$');
                    i += 2;
                    continue;
                }
                Some(b'{') => {
                    let start = i + 2;
                    let len = bytes[start..]
                        .iter()
                        .position(|&b| b == b'}')
                        .ok_or_else(|| format!("`${{` at byte {} is not closed with `}}`", i))?;
                    let name = &text[start..start + len];
                    if name.is_empty() || !name.bytes().all(is_name_byte) {
                        return Err(format!("invalid variable name `${{{name}}}`"));
                    }
                    (name, start + len + 1)
                }
                Some(&b) if is_name_byte(b) => {
                    let len = bytes[i + 1..]
                        .iter()
                        .take_while(|&&b| is_name_byte(b))
                        .count();
                    (&text[i + 1..i + 1 + len], i + 1 + len)
                }
                _ => {
                    return Err(format!(
                        "`$` at byte {i} is not followed by a variable name \
                         (write `$$` for a literal `$`)"
                    ));
                }
            };
            let var = var_by_name(name).ok_or_else(|| format!("unknown variable `${name}`"))?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit).into_boxed_slice()));
            }
            parts.push(Part::Var(var));
            i = next;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into_boxed_slice()));
        }
        Ok(Template { parts })
    }

    /// Appends the rendered template to `out`.
    pub fn render(&self, vars: &dyn VarSource, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Lit(bytes) => out.extend_from_slice(bytes),
                Part::Var(var) => vars.write_var(var, out),
            }
        }
    }

    /// Whether the template has no variables (renders the same for every request).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Whether any variable of the template satisfies `f` (e.g. "needs upstream data").
    pub fn uses(&self, f: impl Fn(&Var) -> bool) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(v) if f(v)))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn var_by_name(name: &str) -> Option<Var> {
    let var = match name {
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "time_local" => Var::TimeLocal,
        "time_iso8601" => Var::TimeIso8601,
        "request" => Var::Request,
        "request_method" => Var::RequestMethod,
        "request_uri" => Var::RequestUri,
        "uri" => Var::Uri,
        "args" => Var::Args,
        "host" => Var::Host,
        "scheme" => Var::Scheme,
        "status" => Var::Status,
        "body_bytes_sent" => Var::BodyBytesSent,
        "request_length" => Var::RequestLength,
        "request_time" => Var::RequestTime,
        "upstream_addr" => Var::UpstreamAddr,
        "upstream_status" => Var::UpstreamStatus,
        "upstream_connect_time" => Var::UpstreamConnectTime,
        "upstream_response_time" => Var::UpstreamResponseTime,
        "upstream_first_byte_time" => Var::UpstreamFirstByteTime,
        "upstream_first_token_time" => Var::UpstreamFirstTokenTime,
        "worker" => Var::Worker,
        "request_model" => Var::RequestModel,
        "bytes_sent" => Var::BytesSent,
        "bytes_received" => Var::BytesReceived,
        "session_time" => Var::SessionTime,
        _ => return prefixed_var(name),
    };
    Some(var)
}

/// `$arg_NAME`, `$http_NAME`, `$cookie_NAME`; an empty NAME is not a variable.
fn prefixed_var(name: &str) -> Option<Var> {
    if let Some(arg) = name.strip_prefix("arg_").filter(|n| !n.is_empty()) {
        return Some(Var::Arg(arg.into()));
    }
    if let Some(header) = name.strip_prefix("http_").filter(|n| !n.is_empty()) {
        let header: String = header
            .chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        return Some(Var::Http(header.into()));
    }
    if let Some(cookie) = name.strip_prefix("cookie_").filter(|n| !n.is_empty()) {
        return Some(Var::Cookie(cookie.into()));
    }
    None
}

/// The raw (still percent-encoded) value of the first `name=` pair in a query string such as
/// `a=1&b=2`. Names match ASCII case-insensitively, as nginx's `$arg_NAME` does; a pair
/// without `=` does not match.
pub fn query_arg<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    if name.is_empty() {
        return None;
    }
    args.split(|&b| b == b'&')
        .find_map(|pair| value_of(pair, name))
}

/// The value of cookie `name` in a `Cookie` header value such as `a=1; b=2`. Names match
/// ASCII case-insensitively, as nginx's `$cookie_NAME` does; spaces around pairs are ignored.
pub fn cookie<'a>(cookie_header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    if name.is_empty() {
        return None;
    }
    cookie_header
        .split(|&b| b == b';')
        .find_map(|pair| value_of(trim_ows(pair), name))
}

/// The value of `pair` when it is `name=value`.
fn value_of<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let key = pair.get(..name.len())?;
    if pair.get(name.len()) == Some(&b'=') && key.eq_ignore_ascii_case(name) {
        Some(&pair[name.len() + 1..])
    } else {
        None
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders every variable as `<Debug>` so tests can see which one was asked for.
    struct Names;

    impl VarSource for Names {
        fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
            match var {
                Var::RemoteAddr => out.extend_from_slice(b"10.0.0.1"),
                Var::Http(h) => out.extend_from_slice(format!("<http:{h}>").as_bytes()),
                other => out.extend_from_slice(format!("<{other:?}>").as_bytes()),
            }
        }
    }

    fn render(t: &str) -> String {
        let mut out = Vec::new();
        Template::parse(t).unwrap().render(&Names, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn literal_text_is_one_part() {
        let t = Template::parse("plain text").unwrap();
        assert_eq!(t.parts, vec![Part::Lit(b"plain text".to_vec().into())]);
        assert!(t.is_literal());
        assert!(Template::parse("").unwrap().is_literal());
    }

    #[test]
    fn variables_and_literals_alternate() {
        let t = Template::parse("ip=$remote_addr:$remote_port!").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Lit(b"ip=".to_vec().into()),
                Part::Var(Var::RemoteAddr),
                Part::Lit(b":".to_vec().into()),
                Part::Var(Var::RemotePort),
                Part::Lit(b"!".to_vec().into()),
            ]
        );
        assert!(!t.is_literal());
    }

    #[test]
    fn every_spec_variable_parses() {
        let all = "$remote_addr $remote_port $time_local $time_iso8601 $request $request_method \
                   $request_uri $uri $args $arg_a $http_b $cookie_c $host $scheme $status \
                   $body_bytes_sent $request_length $request_time $upstream_addr $upstream_status \
                   $upstream_connect_time $upstream_response_time $worker $request_model \
                   $upstream_first_byte_time $upstream_first_token_time \
                   $bytes_sent $bytes_received $session_time";
        let t = Template::parse(all).unwrap();
        assert_eq!(
            t.parts.iter().filter(|p| matches!(p, Part::Var(_))).count(),
            29
        );
    }

    #[test]
    fn http_variable_names_the_lowercase_dashed_header() {
        let t = Template::parse("$http_X_Session_Id").unwrap();
        assert_eq!(t.parts, vec![Part::Var(Var::Http("x-session-id".into()))]);
    }

    #[test]
    fn arg_and_cookie_keep_the_name_as_written() {
        let t = Template::parse("$arg_Page_No${cookie_sid}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Var(Var::Arg("Page_No".into())),
                Part::Var(Var::Cookie("sid".into()))
            ]
        );
    }

    #[test]
    fn bare_name_is_the_longest_match() {
        let err = Template::parse("$host_x").unwrap_err();
        assert!(err.contains("`$host_x`"), "{err}");
        assert_eq!(render("${host}_x"), "<Host>_x");
        assert_eq!(render("$host-x"), "<Host>-x");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        let t = Template::parse("cost $$5").unwrap();
        assert_eq!(t.parts, vec![Part::Lit(b"cost $5".to_vec().into())]);
        assert_eq!(render("$$$remote_addr"), "$10.0.0.1");
    }

    #[test]
    fn unknown_variable_is_named_in_the_error() {
        let err = Template::parse("x $nope y").unwrap_err();
        assert!(err.contains("unknown variable `$nope`"), "{err}");
        assert!(
            Template::parse("${bogus}")
                .unwrap_err()
                .contains("`$bogus`")
        );
    }

    #[test]
    fn empty_prefixed_names_are_unknown() {
        for t in ["$arg_", "$http_", "$cookie_"] {
            assert!(
                Template::parse(t).unwrap_err().contains("unknown variable"),
                "{t}"
            );
        }
    }

    #[test]
    fn malformed_dollar_forms_are_errors() {
        assert!(
            Template::parse("$")
                .unwrap_err()
                .contains("not followed by a variable name")
        );
        assert!(Template::parse("a $ b").is_err());
        assert!(
            Template::parse("${host")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            Template::parse("${}")
                .unwrap_err()
                .contains("invalid variable name")
        );
        assert!(Template::parse("${ho st}").is_err());
        assert!(Template::parse("é$").is_err());
    }

    #[test]
    fn non_ascii_literals_survive() {
        assert_eq!(render("é→$remote_addr"), "é→10.0.0.1");
    }

    #[test]
    fn render_appends_to_existing_output() {
        let mut out = b"> ".to_vec();
        Template::parse("$http_user_agent")
            .unwrap()
            .render(&Names, &mut out);
        assert_eq!(out, b"> <http:user-agent>");
    }

    #[test]
    fn uses_sees_only_variables() {
        let t = Template::parse("$upstream_addr to").unwrap();
        assert!(t.uses(|v| *v == Var::UpstreamAddr));
        assert!(!t.uses(|v| *v == Var::RemoteAddr));
        assert!(!Template::parse("upstream_addr").unwrap().uses(|_| true));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet = b"${}_$ahtpr-x\xc3\xa9";
        let mut state: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..5000 {
            let mut text = Vec::new();
            for _ in 0..state % 12 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let text = String::from_utf8_lossy(&text);
            if let Ok(t) = Template::parse(&text) {
                let mut out = Vec::new();
                t.render(&Names, &mut out);
            }
            let _ = query_arg(text.as_bytes(), b"a");
            let _ = cookie(text.as_bytes(), b"a");
        }
    }

    #[test]
    fn query_arg_finds_first_exact_name() {
        let q = b"model=gpt&m=x&model=other&empty=&flag";
        assert_eq!(query_arg(q, b"model"), Some(&b"gpt"[..]));
        assert_eq!(query_arg(q, b"m"), Some(&b"x"[..]));
        assert_eq!(query_arg(q, b"empty"), Some(&b""[..]));
        assert_eq!(query_arg(q, b"flag"), None);
        assert_eq!(query_arg(q, b"mod"), None);
        assert_eq!(query_arg(q, b""), None);
        assert_eq!(query_arg(b"", b"a"), None);
    }

    #[test]
    fn query_arg_matches_names_case_insensitively_and_keeps_encoding() {
        assert_eq!(query_arg(b"Q=a%20b", b"q"), Some(&b"a%20b"[..]));
        assert_eq!(query_arg(b"a=1=2", b"a"), Some(&b"1=2"[..]));
    }

    #[test]
    fn cookie_finds_named_value_with_spaces_around_pairs() {
        let h = b"sid=abc; theme=dark ;  lang=en;x=";
        assert_eq!(cookie(h, b"sid"), Some(&b"abc"[..]));
        assert_eq!(cookie(h, b"theme"), Some(&b"dark"[..]));
        assert_eq!(cookie(h, b"lang"), Some(&b"en"[..]));
        assert_eq!(cookie(h, b"x"), Some(&b""[..]));
        assert_eq!(cookie(h, b"SID"), Some(&b"abc"[..]));
        assert_eq!(cookie(h, b"si"), None);
        assert_eq!(cookie(h, b"missing"), None);
        assert_eq!(cookie(b"", b"a"), None);
        assert_eq!(cookie(b";;", b""), None);
    }
}
