//! Value types with units: durations (`"500ms"`, `"10s"`), sizes (`1024`, `"48m"`), the
//! two keys that take either a word or a number/bool (`workers`, `proxy_protocol`), and
//! `next_upstream`, a word or a list of words.
//!
//! Each parses inside serde, so a bad value is reported by the deserializer with the span of
//! the value and then located like any other type error.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Longest duration accepted anywhere: far beyond any sane timeout, and small enough that
/// `Instant + d` can never overflow on the data path.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration written as a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// A size in bytes, written as an integer or a string with a `k`/`m`/`g` suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

/// `next_upstream` as written: one condition (`"off"`, as nginx users write it) or a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawNextUpstream {
    One(String),
    Many(Vec<toml::Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawNextUpstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNextUpstream;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a condition such as \"error\", a list of them, or \"off\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawNextUpstream::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Read from the real sequence (not a buffered copy) so each element keeps
                // its span.
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawNextUpstream::Many(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `runtime.workers`: `"auto"` or a count (range-checked during validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(i64),
}

/// `listener.proxy_protocol` as written: `false`, `true` (= v1), `"v1"` or `"v2"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawProxyProtocol {
    Off,
    V1,
    V2,
}

/// Parses `"<digits><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!("duration {text:?} must not be negative"));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected a number and a unit, e.g. \"10s\""
        ));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 24 * 3600 * 1000,
        "" => return Err(format!("duration {text:?} has no unit (ms, s, m, h or d)")),
        _ => {
            return Err(format!(
                "duration {text:?} has an unknown unit {unit:?} (ms, s, m, h or d)"
            ));
        }
    };
    let too_long = || format!("duration {text:?} is too long (at most 365d)");
    let count: u64 = number.parse().map_err(|_| too_long())?;
    let millis = count.checked_mul(millis_per_unit).ok_or_else(too_long)?;
    let duration = Duration::from_millis(millis);
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// Parses `"<digits>"` or `"<digits>k|m|g"` (case-insensitive, binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err(format!("size {text:?} must not be negative"));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected bytes or a number with k, m or g, e.g. \"16k\""
        ));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => {
            return Err(format!(
                "size {text:?} has an unknown unit {unit:?} (k, m or g)"
            ));
        }
    };
    let too_big = || format!("size {text:?} is too large");
    let count: u64 = number.parse().map_err(|_| too_big())?;
    count.checked_mul(1 << shift).ok_or_else(too_big)
}

struct DurVisitor;

impl Visitor<'_> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string with a unit, e.g. \"10s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        Err(E::custom(format!(
            "duration {v} has no unit: write it as a string, e.g. \"{v}s\" (units ms, s, m, h, d)"
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        Err(E::custom(format!(
            "duration {v} has no unit: write it as a string, e.g. \"{v}s\" (units ms, s, m, h, d)"
        )))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: bytes, or a string with k, m or g, e.g. \"16k\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
        parse_size(v).map(Size).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
        u64::try_from(v)
            .map(Size)
            .map_err(|_| E::custom(format!("size {v} must not be negative")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
        Ok(Size(v))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct WorkersVisitor;

impl Visitor<'_> for WorkersVisitor {
    type Value = Workers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\" or a number of workers")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Workers, E> {
        if v == "auto" {
            Ok(Workers::Auto)
        } else {
            Err(E::custom(format!(
                "expected \"auto\" or a number of workers, found {v:?}"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Workers, E> {
        Ok(Workers::Count(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Workers, E> {
        Ok(Workers::Count(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WorkersVisitor)
    }
}

struct ProxyProtocolVisitor;

impl Visitor<'_> for ProxyProtocolVisitor {
    type Value = RawProxyProtocol;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("false, true, \"v1\" or \"v2\"")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawProxyProtocol, E> {
        // `true` means the version every PROXY-aware server accepts.
        Ok(if v {
            RawProxyProtocol::V1
        } else {
            RawProxyProtocol::Off
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawProxyProtocol, E> {
        match v {
            "v1" => Ok(RawProxyProtocol::V1),
            "v2" => Ok(RawProxyProtocol::V2),
            _ => Err(E::custom(format!(
                "expected false, \"v1\" or \"v2\", found {v:?}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for RawProxyProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ProxyProtocolVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_take_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("15m"), Ok(ms(15 * 60_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(2 * 3_600_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("0s"), Ok(ms(0)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn durations_without_unit_are_rejected() {
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(
            parse_duration("s")
                .unwrap_err()
                .contains("expected a number")
        );
    }

    #[test]
    fn durations_reject_negative_fraction_unknown_unit_and_overflow() {
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("1.5s").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("10 s").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("10S").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("366d").unwrap_err().contains("too long"));
        assert!(
            parse_duration("99999999999999999999ms")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration("18446744073709551615d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn sizes_use_binary_multiples_in_any_case() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("16K"), Ok(16 * 1024));
        assert_eq!(parse_size("48m"), Ok(48 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
    }

    #[test]
    fn sizes_reject_negative_unknown_unit_and_overflow() {
        assert!(parse_size("-1k").unwrap_err().contains("negative"));
        assert!(parse_size("1kb").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1t").unwrap_err().contains("unknown unit"));
        assert!(parse_size("").unwrap_err().contains("invalid size"));
        assert!(parse_size("k").unwrap_err().contains("invalid size"));
        assert!(
            parse_size("17179869184g")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[derive(Debug, Deserialize)]
    struct Doc {
        d: Option<Dur>,
        s: Option<Size>,
        w: Option<Workers>,
        p: Option<RawProxyProtocol>,
    }

    fn doc(text: &str) -> Result<Doc, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn integers_are_bytes_but_not_durations() {
        assert_eq!(doc("s = 4096").unwrap().s, Some(Size(4096)));
        assert!(doc("s = -1").unwrap_err().contains("negative"));
        let err = doc("d = 10").unwrap_err();
        assert!(err.contains("no unit") && err.contains("\"10s\""), "{err}");
        assert_eq!(doc("d = \"1m\"").unwrap().d, Some(Dur(ms(60_000))));
        assert!(doc("d = true").is_err());
    }

    #[test]
    fn workers_is_auto_or_a_number() {
        assert_eq!(doc("w = \"auto\"").unwrap().w, Some(Workers::Auto));
        assert_eq!(doc("w = 4").unwrap().w, Some(Workers::Count(4)));
        assert!(doc("w = \"four\"").unwrap_err().contains("\"auto\""));
    }

    #[test]
    fn proxy_protocol_true_means_v1() {
        assert_eq!(doc("p = true").unwrap().p, Some(RawProxyProtocol::V1));
        assert_eq!(doc("p = false").unwrap().p, Some(RawProxyProtocol::Off));
        assert_eq!(doc("p = \"v2\"").unwrap().p, Some(RawProxyProtocol::V2));
        assert!(doc("p = \"v3\"").unwrap_err().contains("\"v3\""));
        assert!(doc("p = 1").is_err());
    }
}
