//! Seconds since 1970 ↔ calendar date and time (proleptic Gregorian, no
//! leap seconds), as an RTC needs them; and the host's time as bhyve
//! hands it to the RTC (local wall time by default, UTC with `-u`).

use std::time::{SystemTime, UNIX_EPOCH};

pub const SECS_PER_DAY: i64 = 86_400;

/// A broken-down time. `wday` is 0 for Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub wday: u32,
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    pub fn from_secs(secs: i64) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let s = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: s / 3600,
            min: s / 60 % 60,
            sec: s % 60,
            // 1970-01-01 was a Thursday.
            wday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// Seconds since 1970, or None for an impossible date or time
    /// (`wday` is ignored, as bhyve ignores the guest's day of week).
    pub fn to_secs(&self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.min < 60
            && self.sec < 60;
        valid.then(|| {
            days_from_civil(self.year, self.month, self.day) * SECS_PER_DAY
                + i64::from(self.hour * 3600 + self.min * 60 + self.sec)
        })
    }
}

/// The host's offset from UTC at `unix` seconds, in seconds east (the
/// C library's idea of the local zone: `TZ`, `/etc/localtime`).
pub fn local_offset(unix: i64) -> i64 {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we pass; a zeroed tm is a
    // valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

/// A time as the RTC counts it: seconds since 1970 in the RTC's zone
/// (UTC, or local wall time read as if it were UTC), and nanoseconds
/// into that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    pub secs: i64,
    pub nanos: u32,
}

impl RtcTime {
    /// `unix` (UTC) as the RTC shows it: as is, or shifted to local time.
    pub fn from_unix(unix: i64, nanos: u32, localtime: bool) -> Self {
        let secs = if localtime {
            unix + local_offset(unix)
        } else {
            unix
        };
        RtcTime { secs, nanos }
    }

    /// The host's time now; `localtime` is bhyve's `rtc.use_localtime`.
    pub fn host(localtime: bool) -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_nanos(),
            localtime,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let dt = DateTime::from_secs(0);
        assert_eq!((dt.year, dt.month, dt.day, dt.wday), (1970, 1, 1, 4));
        // 2000-02-29 12:34:56 UTC, a Tuesday.
        let dt = DateTime::from_secs(951_827_696);
        assert_eq!(
            dt,
            DateTime {
                year: 2000,
                month: 2,
                day: 29,
                hour: 12,
                min: 34,
                sec: 56,
                wday: 2
            }
        );
        assert_eq!(dt.to_secs(), Some(951_827_696));
        // 2038-01-19 03:14:08, past 32-bit time_t.
        assert_eq!(DateTime::from_secs(1 << 31).year, 2038);
    }

    #[test]
    fn round_trip_and_validation() {
        let mut s = 0;
        while s < 400 * 366 * SECS_PER_DAY {
            assert_eq!(DateTime::from_secs(s).to_secs(), Some(s));
            s += 7 * SECS_PER_DAY + 3_601;
        }
        let ok = DateTime::from_secs(0);
        let bad = |f: fn(&mut DateTime)| {
            let mut d = ok;
            f(&mut d);
            d.to_secs()
        };
        assert_eq!(bad(|d| d.month = 13), None);
        assert_eq!(bad(|d| d.month = 0), None);
        assert_eq!(bad(|d| d.day = 0), None);
        assert_eq!(bad(|d| d.hour = 24), None);
        assert_eq!(bad(|d| d.min = 60), None);
        assert_eq!(bad(|d| d.sec = 60), None);
        assert_eq!(
            bad(|d| {
                d.month = 2;
                d.day = 29
            }),
            None,
            "1970 is not a leap year"
        );
        assert!(is_leap(2000) && !is_leap(1900) && is_leap(2024));
    }

    /// Whatever the host's zone, local time is UTC shifted by the C
    /// library's offset, and our calendar agrees with localtime_r's.
    #[test]
    fn local_time_matches_the_c_library() {
        let unix = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(
            RtcTime::from_unix(unix, 5, false),
            RtcTime {
                secs: unix,
                nanos: 5
            }
        );
        let local = RtcTime::from_unix(unix, 0, true).secs;
        let t = unix as libc::time_t;
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        assert!(!unsafe { libc::localtime_r(&t, &mut tm) }.is_null());
        let dt = DateTime::from_secs(local);
        assert_eq!(dt.year, i64::from(tm.tm_year) + 1900);
        assert_eq!(dt.month, tm.tm_mon as u32 + 1);
        assert_eq!(dt.day, tm.tm_mday as u32);
        assert_eq!(dt.hour, tm.tm_hour as u32);
        assert_eq!(dt.min, tm.tm_min as u32);
        assert_eq!(dt.sec, tm.tm_sec as u32);
        assert_eq!(dt.wday, tm.tm_wday as u32);
        let now = RtcTime::host(false);
        assert!(now.secs > unix && now.nanos < 1_000_000_000);
    }
}
