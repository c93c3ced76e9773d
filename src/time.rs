//! Wall-clock time as Sluice stores it: Unix milliseconds, UTC days and months, RFC 3339.
//! Plain calendar arithmetic (Howard Hinnant's algorithms), no time-zone database needed.

pub const MS_PER_DAY: u64 = 86_400_000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        assert_eq!(date_string(20_595), "2026-05-22");
    }
}
