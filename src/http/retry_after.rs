//! `Retry-After` (RFC 9110 10.2.3): reading a server's, so that a 429 or 503 marks it busy
//! for that long, and the bounds ringway keeps to, for a server's value and for its own.
//!
//! The value is either delta-seconds or an HTTP-date; RFC 9110 5.6.7 has recipients accept
//! all three date formats (IMF-fixdate, the obsolete RFC 850 and asctime forms). Parsing is
//! pure: the current time is passed in.

/// Shortest busy mark and shortest `Retry-After` ringway sends: a server that says "now" (0,
/// or a date already past) still gets a breath, and a client is never told 0.
pub const MIN_SECS: u64 = 1;
/// Longest busy mark and longest `Retry-After` ringway sends: a server asking for an hour
/// (or a clock far off) must not take itself out of the fleet for that long.
pub const MAX_SECS: u64 = 300;

/// Seconds from `now_unix` (seconds since 1970) until the moment `value` names; `None` when
/// it is neither delta-seconds nor an HTTP-date. A date in the past gives 0.
pub fn parse(value: &[u8], now_unix: u64) -> Option<u64> {
    let value = value.trim_ascii();
    if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
        // Absurdly long digit strings saturate: they mean "a long time" either way.
        return Some(value.iter().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        }));
    }
    let at = http_date(value, now_unix)?;
    Some(at.saturating_sub(now_unix))
}

/// `secs` within [`MIN_SECS`]..=[`MAX_SECS`].
pub fn clamp(secs: u64) -> u64 {
    secs.clamp(MIN_SECS, MAX_SECS)
}

/// Seconds since 1970 of an HTTP-date in any of its three formats (GMT only); `now_unix`
/// places an RFC 850 two-digit year.
fn http_date(text: &[u8], now_unix: u64) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (day, month, year, time) = match words.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') && y.len() == 4 => {
            (d.parse().ok()?, *m, y.parse().ok()?, *t)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut parts = dmy.split('-');
            let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
            (d.parse().ok()?, m, full_year(y.parse().ok()?, now_unix), *t)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_, m, d, t, y] if y.len() == 4 => (d.parse().ok()?, *m, y.parse().ok()?, *t),
        _ => return None,
    };
    let month = month_number(month)?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + s).ok()
}

/// A two-digit year the RFC 9110 5.6.7 way: a year more than 50 years ahead of now is the
/// most recent past year with those digits.
fn full_year(two_digits: i64, now_unix: u64) -> i64 {
    if two_digits >= 100 {
        return two_digits;
    }
    let (this_year, _, _) = crate::clock::civil_from_days((now_unix / 86_400) as i64);
    let mut year = this_year - this_year.rem_euclid(100) + two_digits;
    if year > this_year + 50 {
        year -= 100;
    }
    year
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

/// (year, month, day) → days since 1970-01-01, the inverse of
/// [`crate::clock::civil_from_days`] (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, RFC 9110's example date.
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn delta_seconds_are_read_as_they_are() {
        assert_eq!(parse(b"120", 0), Some(120));
        assert_eq!(parse(b" 0 ", 5), Some(0));
        assert_eq!(parse(b"99999999999999999999999", 0), Some(u64::MAX));
    }

    #[test]
    fn the_three_date_formats_name_the_same_moment() {
        for date in [
            &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
        ] {
            let text = String::from_utf8_lossy(date);
            assert_eq!(parse(date, EXAMPLE - 30), Some(30), "{text}");
            assert_eq!(parse(date, EXAMPLE + 30), Some(0), "{text} is past");
        }
    }

    #[test]
    fn dates_agree_with_the_log_clock() {
        // 2026-12-01 20:00:00 UTC, computed the other way round.
        let days = days_from_civil(2026, 12, 1);
        assert_eq!(crate::clock::civil_from_days(days), (2026, 12, 1));
        let at = parse(
            b"Tue, 01 Dec 2026 20:00:10 GMT",
            days as u64 * 86_400 + 72_000,
        );
        assert_eq!(at, Some(10));
    }

    #[test]
    fn garbage_is_not_a_retry_after() {
        for bad in [
            &b""[..],
            b"soon",
            b"-5",
            b"1.5",
            b"12s",
            b"Sun, 06 Nov 1994 08:49:37 PST",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 06 Nov 1994 08:49:37:01 GMT",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse(bad, EXAMPLE),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn marks_and_answers_stay_within_bounds() {
        assert_eq!(clamp(0), MIN_SECS);
        assert_eq!(clamp(30), 30);
        assert_eq!(clamp(u64::MAX), MAX_SECS);
    }
}
