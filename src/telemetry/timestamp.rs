//! Log timestamps written without `fmt`, which measured a tenth of the access line's cost:
//! RFC 3339 in UTC with microseconds, as tracing-subscriber writes them.

use std::cell::Cell;
use std::time::SystemTime;

/// `now` in RFC 3339 with microseconds in UTC (`2025-11-26T12:00:00.123456Z`), as
/// tracing-subscriber's timestamps are. The part up to the seconds changes once a second, so
/// each thread keeps the last one it wrote.
pub fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static LAST_SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (last, mut prefix) = LAST_SECOND.get();
    if last != secs {
        prefix = date_time(secs);
        LAST_SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    out.push(b'.');
    write_padded(out, since_epoch.subsec_micros(), 6);
    out.push(b'Z');
}

/// `secs` after the epoch as `YYYY-MM-DDTHH:MM:SS`.
fn date_time(secs: u64) -> [u8; 19] {
    let (days, of_day) = (secs / 86_400, (secs % 86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    let mut out = Vec::with_capacity(19);
    write_padded(&mut out, year, 4);
    out.push(b'-');
    write_padded(&mut out, month, 2);
    out.push(b'-');
    write_padded(&mut out, day, 2);
    out.push(b'T');
    write_padded(&mut out, of_day / 3600, 2);
    out.push(b':');
    write_padded(&mut out, of_day / 60 % 60, 2);
    out.push(b':');
    write_padded(&mut out, of_day % 60, 2);
    out.try_into().expect("19 bytes")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    // Counted from 0000-03-01, so the leap day is the last day of its year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = (year_of_era + era * 400 + u64::from(month <= 2)) as u32;
    (year, month, day)
}

/// `n` in decimal, zero-padded to `width` digits (`n` has at most that many, `width` ≤ 10).
pub fn write_padded(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    for digit in digits[..width].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_humantime_across_leap_years_and_centuries() {
        // Every 7,777,777 s and 13 µs from 1970 to 2400: all months, leap days, 2000 and 2100.
        let mut at = SystemTime::UNIX_EPOCH;
        let step = std::time::Duration::new(7_777_777, 13_000);
        let end = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(13_569_465_600);
        let mut checked = 0;
        while at < end {
            // Twice in (mostly) the same second: the second one comes from the thread's cache.
            for at in [at, at + std::time::Duration::from_micros(1)] {
                let mut out = Vec::new();
                write_timestamp(&mut out, at);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    humantime::format_rfc3339_micros(at).to_string()
                );
            }
            at += step;
            checked += 1;
        }
        assert!(checked > 1700, "{checked}");
        for (secs, expected) in [
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
        ] {
            let mut out = Vec::new();
            write_timestamp(
                &mut out,
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
