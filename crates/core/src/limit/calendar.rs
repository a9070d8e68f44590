//! Calendar windows for quotas: the day, ISO week (from Monday) or month holding an
//! instant, in the policy's IANA time zone, so a "per day" quota resets at local
//! midnight and a month is the calendar's, DST days included.

use gatehouse_config::spec::CalendarUnit;
use jiff::{tz::TimeZone, Span, Timestamp, ZonedDateTime as Zoned};

/// Finds a zone by its IANA name; `UTC` needs no database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|e| format!("`{name}` is not a known time zone: {e}"))
}

/// The window holding `now`: its start and end, in seconds since the Unix epoch.
pub fn window(now: Timestamp, tz: &TimeZone, unit: CalendarUnit) -> (i64, i64) {
    let z = now.to_zoned_datetime(tz.clone());
    match bounds(&z, unit) {
        Some((a, b)) => (a.timestamp().as_second(), b.timestamp().as_second()),
        // Only out-of-range dates get here (year 9999); a day-long window stands in.
        None => {
            let s = now.as_second();
            (s - s.rem_euclid(86_400), s - s.rem_euclid(86_400) + 86_400)
        }
    }
}

fn bounds(z: &Zoned, unit: CalendarUnit) -> Option<(Zoned, Zoned)> {
    let start = match unit {
        CalendarUnit::Day => z.start_of_day().ok()?,
        CalendarUnit::Week => {
            let back = i64::from(z.weekday().to_monday_zero_offset());
            z.checked_sub(Span::new().days(back))
                .ok()?
                .start_of_day()
                .ok()?
        }
        CalendarUnit::Month => z.first_of_month().ok()?.start_of_day().ok()?,
    };
    let step = match unit {
        CalendarUnit::Day => Span::new().days(1),
        CalendarUnit::Week => Span::new().weeks(1),
        CalendarUnit::Month => Span::new().months(1),
    };
    let end = start.checked_add(step).ok()?.start_of_day().ok()?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn windows_follow_the_calendar_of_their_zone() {
        let utc = zone("UTC").unwrap();
        let (a, b) = window(ts("2026-12-03T14:00:00Z"), &utc, CalendarUnit::Day);
        assert_eq!(
            (a, b),
            (
                ts("2026-12-03T00:00:00Z").as_second(),
                ts("2026-12-04T00:00:00Z").as_second()
            )
        );
        let (a, b) = window(ts("2026-12-03T14:00:00Z"), &utc, CalendarUnit::Week);
        assert_eq!(a, ts("2026-11-30T00:00:00Z").as_second(), "the Monday");
        assert_eq!(b - a, 7 * 86_400);
        let (a, b) = window(ts("2026-02-10T00:00:00Z"), &utc, CalendarUnit::Month);
        assert_eq!(b - a, 28 * 86_400);
    }

    #[test]
    fn a_zone_moves_midnight_and_its_dst_day_is_23_hours() {
        let berlin = zone("Europe/Berlin").unwrap();
        // 23:30 UTC on the 3rd is already the 4th in Berlin.
        let (a, _) = window(ts("2026-12-03T23:30:00Z"), &berlin, CalendarUnit::Day);
        assert_eq!(a, ts("2026-12-03T23:00:00Z").as_second());
        // Clocks go forward on 2026-03-29 in the EU.
        let (a, b) = window(ts("2026-03-29T12:00:00Z"), &berlin, CalendarUnit::Day);
        assert_eq!(b - a, 23 * 3600);
        assert!(zone("Mars/Olympus").is_err());
    }
}
