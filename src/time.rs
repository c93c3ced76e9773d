//! Wall-clock time as Sluice stores it: Unix milliseconds, UTC days and months, RFC 3339.
//! Plain calendar arithmetic (Howard Hinnant's algorithms), no time-zone database needed.

pub const MS_PER_DAY: u64 = 86_400_000;

pub fn now_ms() -> u64 {
    ms_since_epoch(std::time::SystemTime::now())
}

/// Unix milliseconds of `t` (0 before 1970).
pub fn ms_since_epoch(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// (year, month, day) of a day number counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYYMM` of a timestamp: the `toYYYYMM(date)` partition it lands in.
pub fn month_of(ts_ms: u64) -> u32 {
    let (y, m, _) = civil_from_days((ts_ms / MS_PER_DAY) as i64);
    (y * 100 + i64::from(m)) as u32
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(day: u16) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn rfc3339_from_ms(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / MS_PER_DAY) as i64);
    let rem = ms % MS_PER_DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Day number of a civil date (inverse of `civil_from_days`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses ISO 8601 / RFC 3339 date-times such as `2026-11-22T10:00:00Z`,
/// `2026-11-22T10:00:00.123+02:00` or `2026-11-22 10:00:00Z` into Unix ms.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0, 4)?,
        num(5, 2)?,
        num(8, 2)?,
        num(11, 2)?,
        num(14, 2)?,
        num(17, 2)?,
    );
    if !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0u64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        ms = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    }
    // Bytes, not `str` slices: the zone may hold any character, and a `str` cut inside one
    // panics.
    let offset_min: i64 = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (i64::from(hours) * 60 + i64::from(minutes))
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    if civil_from_days(days) != (i64::from(y), mo, d) {
        return None; // e.g. February 30
    }
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset_min * 60;
    u64::try_from(secs).ok().map(|s| s * 1000 + ms)
}

/// Reported times before this are refused (2000-01-01): a wrong clock, not history.
const EARLIEST_MS: u64 = 946_684_800_000;
/// How far ahead of our clock a reported time may be (the sender's clock may be ahead).
const FUTURE_SLACK_MS: u64 = MS_PER_DAY;

/// `ts_ms` if a client's clock could have said it at `now_ms`: not before 2000, at most a
/// day ahead.
pub fn plausible(ts_ms: u64, now_ms: u64) -> Result<u64, &'static str> {
    if ts_ms < EARLIEST_MS {
        return Err("is before 2000-01-01");
    }
    if ts_ms > now_ms.saturating_add(FUTURE_SLACK_MS) {
        return Err("is more than a day in the future");
    }
    Ok(ts_ms)
}

pub fn now_rfc3339() -> String {
    rfc3339_from_ms(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_table() {
        // (ms, rfc3339, month)
        let cases = [
            (0u64, "1970-01-01T00:00:00.000Z", 197001u32),
            (951_782_400_000, "2000-02-29T00:00:00.000Z", 200002),
            (951_868_799_999, "2000-02-29T23:59:59.999Z", 200002),
            (951_868_800_000, "2000-03-01T00:00:00.000Z", 200003),
            (1_779_408_123_456, "2026-05-22T00:02:03.456Z", 202605),
            (1_798_761_599_000, "2026-12-31T23:59:59.000Z", 202612),
            (1_798_761_600_000, "2027-01-01T00:00:00.000Z", 202701),
        ];
        for (ms, text, month) in cases {
            assert_eq!(rfc3339_from_ms(ms), text);
            assert_eq!(month_of(ms), month, "{text}");
        }
        assert_eq!(date_string(0), "1970-01-01");
        for (ms, text, _) in cases {
            assert_eq!(parse_rfc3339(text), Some(ms), "{text}");
        }
        assert_eq!(date_string(20_595), "2026-05-22");
    }

    #[test]
    fn parse_table() {
        let cases = [
            ("2026-05-22T00:02:03Z", Some(1_779_408_123_000)),
            ("2026-05-22T02:02:03.456+02:00", Some(1_779_408_123_456)),
            ("2026-05-21T23:02:03.4-01:00", Some(1_779_408_123_400)),
            ("2026-05-22 00:02:03z", Some(1_779_408_123_000)),
            ("2026-02-30T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-05-22T24:00:00Z", None),
            ("2026-05-22T00:02:03", None),
            ("2026-05-22", None),
            ("not a date at all!!", None),
            ("2026-05-22T00:02:03.Z", None),
            ("1969-12-31T23:59:59Z", None),
            ("2026-05-22T00:02:03+24:00", None),
            ("2026-05-22T00:02:03+01:60", None),
            // Zones with characters of several bytes: a cut inside one used to panic.
            ("2026-01-01T00:00:00é:000", None),
            ("2026-01-01T00:00:00+€00", None),
            ("2026-01-01T00:00:00€", None),
            ("2026-01-01T00:00:00.1€:00", None),
            ("2026-01-01T00:00:00+0€:0", None),
            ("2026-01-01T00:00:00+00:€", None),
            ("2026\u{e9}01-01T00:00:00Z", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), want, "{text}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any text at all: an answer, never a panic.
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
        }

        /// A valid date-time with its zone or fraction replaced by arbitrary characters.
        #[test]
        fn parse_never_panics_near_valid(tail in "\\PC{0,8}", ms in 946_684_800_000u64..4_102_444_800_000) {
            let text = rfc3339_from_ms(ms);
            let _ = parse_rfc3339(&format!("{}{tail}", &text[..19]));
            let _ = parse_rfc3339(&format!("{}{tail}", &text[..23]));
            proptest::prop_assert_eq!(parse_rfc3339(&text), Some(ms));
        }
    }
}
