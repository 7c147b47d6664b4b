//! Small value checks shared by all sections: defaults and ranges for numbers, sizes and
//! durations, required keys, names, HTTP tokens, and socket addresses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::source::{Report, join};
use super::units::{Dur, Size};

/// Whether a zero duration is meaningful for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    Allowed,
    Rejected,
}

impl Report<'_, '_> {
    /// The value of an optional URL path key (`/` first, no spaces or controls).
    pub fn url_path(&mut self, value: &Option<Spanned<String>>, key: &str) -> Option<String> {
        let p = value.as_ref()?;
        let ok = p.get_ref().starts_with('/') && p.get_ref().bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            self.at(&p.span(), key, "must start with `/` and contain no spaces");
        }
        ok.then(|| p.get_ref().clone())
    }

    /// The value of an integer key, or `default`; out of `range` is an error.
    pub fn int(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        let Some(v) = value else { return default };
        if range.contains(v.get_ref()) {
            return *v.get_ref();
        }
        let message = if *range.end() == i64::MAX {
            format!("must be at least {}, found {}", range.start(), v.get_ref())
        } else {
            format!(
                "must be between {} and {}, found {}",
                range.start(),
                range.end(),
                v.get_ref()
            )
        };
        self.at(&v.span(), key, message);
        default
    }

    /// The value of a size key in bytes, or `default`; out of `range` is an error.
    pub fn size(
        &mut self,
        value: &Option<Spanned<Size>>,
        key: &str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let Some(v) = value else { return default };
        let Size(bytes) = *v.get_ref();
        if range.contains(&bytes) {
            return bytes;
        }
        let message = format!(
            "must be between {} and {} bytes, found {bytes}",
            range.start(),
            range.end()
        );
        self.at(&v.span(), key, message);
        default
    }

    /// The value of a duration key, or `default`; zero is an error unless `zero` allows it.
    pub fn dur(
        &mut self,
        value: &Option<Spanned<Dur>>,
        key: &str,
        default: Duration,
        zero: Zero,
    ) -> Duration {
        let Some(v) = value else { return default };
        let Dur(d) = *v.get_ref();
        if d.is_zero() && zero == Zero::Rejected {
            self.at(&v.span(), key, "must be greater than 0");
            return default;
        }
        d
    }

    /// `value`, or an error at the start of its table when the key is missing.
    pub fn required<'v, T>(
        &mut self,
        value: &'v Option<Spanned<T>>,
        table: &Range<usize>,
        base: &str,
        name: &str,
    ) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            self.at(table, &join(base, name), format!("missing key `{name}`"));
        }
        value.as_ref()
    }

    /// Checks a listener or group name (it appears in metrics labels and log lines).
    pub fn name(&mut self, name: &str, span: &Range<usize>, key: &str) {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !ok {
            self.at(
                span,
                key,
                format!("invalid name {name:?}: use letters, digits, `_`, `-`, `.` and `:`"),
            );
        }
    }
}

/// Whether `s` is an HTTP token (RFC 9110 `tchar`s), as header names must be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses `host:port`. A host name is resolved here, on the control path, so the data path
/// never waits for DNS; an IPv4 result is preferred because backends on a name like
/// `localhost` usually listen on IPv4.
pub fn resolve(text: &str, port_zero: Zero) -> Result<SocketAddr, String> {
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => resolve_name(text)?,
    };
    if addr.port() == 0 && port_zero == Zero::Rejected {
        return Err(format!("{text:?} has port 0"));
    }
    Ok(addr)
}

thread_local! {
    /// Set by tests and fuzz targets ([`crate::fuzzing`]) that feed arbitrary input, so a
    /// mutated address never reaches DNS.
    pub static NO_LOOKUPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn resolve_name(text: &str) -> Result<SocketAddr, String> {
    if NO_LOOKUPS.with(|n| n.get()) {
        return Err(format!("{text:?}: name lookups are off in this test"));
    }
    let not_an_address =
        || format!("{text:?} is not an address: expected host:port, e.g. \"127.0.0.1:8080\"");
    let (host, port) = text.rsplit_once(':').ok_or_else(not_an_address)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(not_an_address());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{text:?} has an invalid port {port:?}"))?;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_parse_without_resolving() {
        assert_eq!(
            resolve("127.0.0.1:1701", Zero::Rejected).unwrap(),
            "127.0.0.1:1701".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:80", Zero::Rejected).unwrap(),
            "[::1]:80".parse().unwrap()
        );
    }

    #[test]
    fn localhost_resolves_to_ipv4_first() {
        let addr = resolve("localhost:1701", Zero::Rejected).unwrap();
        assert_eq!(addr, "127.0.0.1:1701".parse().unwrap());
    }

    #[test]
    fn malformed_addresses_are_rejected_without_lookup() {
        assert!(
            resolve("127.0.0.1", Zero::Rejected)
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            resolve(":80", Zero::Rejected)
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            resolve("a b:80", Zero::Rejected)
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            resolve("host:99999", Zero::Rejected)
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(resolve("::1:80", Zero::Rejected).is_err());
    }

    #[test]
    fn port_zero_only_where_allowed() {
        assert!(
            resolve("127.0.0.1:0", Zero::Rejected)
                .unwrap_err()
                .contains("port 0")
        );
        assert!(resolve("127.0.0.1:0", Zero::Allowed).is_ok());
    }

    #[test]
    fn tokens_exclude_separators() {
        assert!(is_token("X-Real-IP"));
        assert!(is_token("x_y.z~"));
        assert!(!is_token(""));
        assert!(!is_token("X Real"));
        assert!(!is_token("X:Y"));
        assert!(!is_token("é"));
    }
}
