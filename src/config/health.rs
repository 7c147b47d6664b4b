//! `health_check` of an upstream group: what a probe sends (`path`, `method`, `body`,
//! `headers`; no `path` = a TCP connect check), how often (`interval`, `timeout`) and how
//! its results count (`rise`, `fall`, `expect`).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::check::{Zero, is_token};
use super::listener::FRAMING_HEADERS;
use super::raw::RawHealthCheck;
use super::source::{Report, join};
use crate::snapshot::HealthCheck;

/// Largest probe body: a probe is a small request (a 1-token generation), not an upload.
const MAX_BODY: usize = 64 * 1024;

pub fn health_check(
    r: &mut Report<'_, '_>,
    table: &Spanned<RawHealthCheck>,
    base: &str,
) -> HealthCheck {
    let raw = table.get_ref();
    let key = |k: &str| join(base, k);
    let path = r.url_path(&raw.path, &key("path"));
    if raw.path.is_none() {
        // Without a path there is no HTTP request to shape: say so rather than ignore it.
        let http_only = [
            ("method", raw.method.as_ref().map(Spanned::span)),
            ("body", raw.body.as_ref().map(Spanned::span)),
            ("headers", raw.headers.as_ref().map(Spanned::span)),
        ];
        for (name, span) in http_only {
            if let Some(span) = span {
                let message = "needs `path`: without one the check is a TCP connect";
                r.at(&span, &key(name), message);
            }
        }
    }
    let expect = match &raw.expect {
        None => (200, 399),
        Some(e) => parse_expect(e.get_ref()).unwrap_or_else(|message| {
            r.at(&e.span(), &key("expect"), message);
            (200, 399)
        }),
    };
    let secs = Duration::from_secs;
    HealthCheck {
        path,
        method: method(r, raw, &key("method")),
        body: body(r, raw, &key("body")),
        headers: headers(r, raw.headers.as_ref(), &key("headers")),
        interval: r.dur(&raw.interval, &key("interval"), secs(5), Zero::Rejected),
        timeout: r.dur(&raw.timeout, &key("timeout"), secs(1), Zero::Rejected),
        rise: r.int(&raw.rise, &key("rise"), 2, 1..=1000) as u32,
        fall: r.int(&raw.fall, &key("fall"), 3, 1..=1000) as u32,
        expect,
    }
}

/// An HTTP token in upper case: methods are case-sensitive, and a server answers "post"
/// with 400 or 405, which would read as a failed server rather than a typo.
fn method(r: &mut Report<'_, '_>, raw: &RawHealthCheck, key: &str) -> String {
    let Some(m) = &raw.method else {
        return "GET".to_string();
    };
    let text = m.get_ref();
    if !is_token(text) || text.bytes().any(|b| b.is_ascii_lowercase()) {
        let message = format!("invalid method {text:?}: expected e.g. \"GET\" or \"POST\"");
        r.at(&m.span(), key, message);
        return "GET".to_string();
    }
    text.clone()
}

/// A body goes with an explicit method: a GET with a body is legal HTTP but most likely
/// a forgotten `method = "POST"`, which would take every server down.
fn body(r: &mut Report<'_, '_>, raw: &RawHealthCheck, key: &str) -> Option<String> {
    let b = raw.body.as_ref()?;
    // Without a path, `health_check` already says the body needs one.
    if raw.method.is_none() && raw.path.is_some() {
        r.at(&b.span(), key, "needs `method`, e.g. \"POST\"");
    }
    if b.get_ref().len() > MAX_BODY {
        let message = format!("at most {MAX_BODY} bytes, found {}", b.get_ref().len());
        r.at(&b.span(), key, message);
        return None;
    }
    Some(b.get_ref().clone())
}

type RawHeaders = Spanned<BTreeMap<Spanned<String>, Spanned<String>>>;

/// Literal headers (no `$variables`: a probe belongs to no client request). The framing
/// headers are the prober's: it sends `Content-Length` for the body and closes after.
fn headers(r: &mut Report<'_, '_>, raw: Option<&RawHeaders>, base: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in raw.iter().flat_map(|m| m.get_ref().iter()) {
        let key = join(base, name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        let problem = if !is_token(name.get_ref()) {
            Some((
                name.span(),
                format!("invalid header name {:?}", name.get_ref()),
            ))
        } else if FRAMING_HEADERS.contains(&lower.as_str()) {
            let message = "is managed by the prober and cannot be set";
            Some((name.span(), message.to_string()))
        } else if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&lower)) {
            let message = "is set twice (header names are case-insensitive)";
            Some((name.span(), message.to_string()))
        } else if value
            .get_ref()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            let message = "header value must not contain control characters";
            Some((value.span(), message.to_string()))
        } else {
            None
        };
        match problem {
            Some((span, message)) => r.at(&span, &key, message),
            None => out.push((name.get_ref().clone(), value.get_ref().clone())),
        }
    }
    out
}

/// `"200"` or `"200-399"` (inclusive), statuses within 100..=599.
fn parse_expect(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid status range {text:?}: expected e.g. \"200\" or \"200-399\"");
    let status = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|code| (100..=599).contains(code) && s.len() == 3)
            .ok_or_else(bad)
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (status(lo)?, status(hi)?),
        None => (status(text)?, status(text)?),
    };
    if lo > hi {
        return Err(format!("invalid status range {text:?}: {lo} is above {hi}"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_takes_one_status_or_an_inclusive_range() {
        assert_eq!(parse_expect("200"), Ok((200, 200)));
        assert_eq!(parse_expect("200-399"), Ok((200, 399)));
        assert_eq!(parse_expect("100-599"), Ok((100, 599)));
        assert!(parse_expect("399-200").unwrap_err().contains("above"));
        assert!(parse_expect("99").is_err());
        assert!(parse_expect("600").is_err());
        assert!(parse_expect("0200").is_err());
        assert!(parse_expect("200-").is_err());
        assert!(parse_expect("2xx").is_err());
        assert!(parse_expect("").is_err());
    }
}
