//! `$variable` templates (hash keys, header values, access log formats): parsed once at load
//! time into literal and variable parts, rendered per request without re-parsing.

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
    Worker,
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
    pub fn parse(_text: &str) -> Result<Template, String> {
        todo!()
    }

    /// Appends the rendered template to `out`.
    pub fn render(&self, _vars: &dyn VarSource, _out: &mut Vec<u8>) {
        todo!()
    }
}

/// The raw value of the first `name=` in a query string.
pub fn query_arg<'a>(_args: &'a [u8], _name: &[u8]) -> Option<&'a [u8]> {
    todo!()
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(_cookie_header: &'a [u8], _name: &[u8]) -> Option<&'a [u8]> {
    todo!()
}
