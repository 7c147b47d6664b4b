//! Values as nginx writes them, as ringway reads them: `$variables` (most have the same name;
//! a few are renamed; the rest are reported), durations (`90`, `1h30m`, `500ms`) and sizes.

use crate::template::Template;

/// nginx variables that ringway has under another name.
const RENAMED: &[(&str, &str)] = &[
    ("binary_remote_addr", "remote_addr"),
    ("query_string", "args"),
    ("document_uri", "uri"),
    ("upstream_header_time", "upstream_first_byte_time"),
];

/// nginx variables ringway knows by the same name.
const SAME: &[&str] = &[
    "remote_addr",
    "remote_port",
    "time_local",
    "time_iso8601",
    "request",
    "request_method",
    "request_uri",
    "uri",
    "args",
    "host",
    "scheme",
    "status",
    "body_bytes_sent",
    "request_length",
    "request_time",
    "upstream_addr",
    "upstream_status",
    "upstream_connect_time",
    "upstream_response_time",
];

/// ringway's name for the nginx variable `name`, if it has one.
pub fn ringway_var(name: &str) -> Option<String> {
    if SAME.contains(&name) {
        return Some(name.to_string());
    }
    if let Some((_, to)) = RENAMED.iter().find(|(from, _)| *from == name) {
        return Some(to.to_string());
    }
    let prefixed = ["arg_", "http_", "cookie_"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    prefixed.then(|| name.to_string())
}

/// `text` with its nginx variables renamed for ringway. An unknown variable is replaced by
/// `unknown` (e.g. `-` in a log line) when given, and named in the error otherwise.
pub fn template(text: &str, unknown: Option<&str>) -> Result<(String, Vec<String>), String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (name, next) = if chars.get(i + 1) == Some(&'{') {
            let end = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .map(|p| p + i + 2);
            let Some(end) = end else {
                return Err(format!("unclosed ${{ in {text:?}"));
            };
            (chars[i + 2..end].iter().collect::<String>(), end + 1)
        } else {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            (chars[i + 1..i + 1 + len].iter().collect(), i + 1 + len)
        };
        if name.is_empty() {
            // A lone `$` is a literal in nginx; ringway writes it `$$`.
            out.push_str("$$");
            i += 1;
            continue;
        }
        match (ringway_var(&name), unknown) {
            (Some(var), _) => out.push_str(&format!("${{{var}}}")),
            (None, Some(stand_in)) => {
                missing.push(name);
                out.push_str(stand_in);
            }
            (None, None) => missing.push(name),
        }
        i = next;
    }
    if unknown.is_none() && !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("${m}")).collect();
        return Err(format!("ringway has no {}", list.join(", ")));
    }
    Template::parse(&out).map_err(|e| format!("{text:?}: {e}"))?;
    Ok((tidy(&out), missing))
}

/// `${name}` back to `$name` where the next character cannot continue the name.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}').map(|e| e + start) else {
            break;
        };
        let name = &rest[start + 2..end];
        let after = rest[end + 1..].chars().next();
        let joins = after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let escaped = out.ends_with('$') && !out.ends_with("$$");
        if joins || escaped || name.is_empty() {
            out.push_str(&rest[start..=end]);
        } else {
            out.push('$');
            out.push_str(name);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// An nginx time (`30`, `30s`, `1h30m`, `500ms`, `1w`) in milliseconds.
pub fn millis(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid time {text:?}");
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let per: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Milliseconds as a ringway duration, in the largest unit that keeps it exact.
pub fn duration(ms: u64) -> String {
    let units = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (per, unit) in units {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    if ms == 0 {
        "0s".into()
    } else {
        format!("{ms}ms")
    }
}

/// An nginx time as a ringway duration string.
pub fn nginx_duration(text: &str) -> Result<String, String> {
    millis(text).map(duration)
}

/// An nginx size (`48m`, `16k`, `1024`) as a ringway size string, checked.
pub fn size(text: &str) -> Result<String, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &text[digits..];
    let ok = digits > 0 && matches!(unit, "" | "k" | "K" | "m" | "M" | "g" | "G");
    if !ok {
        return Err(format!("invalid size {text:?}"));
    }
    crate::config::units::parse_size(text)?;
    Ok(text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_variables_keep_or_change_their_names() {
        let (t, missing) =
            template("$remote_addr - [$time_local] to: $upstream_addr", None).unwrap();
        assert_eq!(t, "$remote_addr - [$time_local] to: $upstream_addr");
        assert!(missing.is_empty());
        assert_eq!(
            template("$binary_remote_addr", None).unwrap().0,
            "$remote_addr"
        );
        assert_eq!(template("${http_x_a}x", None).unwrap().0, "${http_x_a}x");
        assert_eq!(
            template("$upstream_header_time", None).unwrap().0,
            "$upstream_first_byte_time"
        );
    }

    #[test]
    fn unknown_variables_are_named_or_stood_in_for() {
        let e = template("$remote_user $msec", None).unwrap_err();
        assert!(e.contains("$remote_user") && e.contains("$msec"), "{e}");
        let (t, missing) = template("$remote_addr $remote_user \"$request\"", Some("-")).unwrap();
        assert_eq!(t, "$remote_addr - \"$request\"");
        assert_eq!(missing, ["remote_user"]);
    }

    #[test]
    fn a_lone_dollar_stays_a_literal() {
        assert_eq!(
            template("cost: 5$ $status", None).unwrap().0,
            "cost: 5$$ $status"
        );
    }

    #[test]
    fn nginx_times_become_exact_ringway_durations() {
        assert_eq!(nginx_duration("900").unwrap(), "15m");
        assert_eq!(nginx_duration("75s").unwrap(), "75s");
        assert_eq!(nginx_duration("1h30m").unwrap(), "90m");
        assert_eq!(nginx_duration("500ms").unwrap(), "500ms");
        assert_eq!(nginx_duration("1500ms").unwrap(), "1500ms");
        assert_eq!(nginx_duration("0").unwrap(), "0s");
        assert_eq!(nginx_duration("1w").unwrap(), "7d");
        assert!(nginx_duration("10x").is_err());
        assert!(nginx_duration("s").is_err());
        assert!(nginx_duration("99999999999999999y").is_err());
    }

    #[test]
    fn sizes_pass_through_checked() {
        assert_eq!(size("48m").unwrap(), "48m");
        assert_eq!(size("16K").unwrap(), "16k");
        assert_eq!(size("1024").unwrap(), "1024");
        assert!(size("1t").is_err());
        assert!(size("").is_err());
    }
}
