//! The one canonical timestamp form sgcache stores and compares: the wire form of Shotgun
//! date_time values, `YYYY-MM-DDTHH:MM:SSZ` (UTC, no fraction). Fixed width, so text
//! comparison is time order on SQLite and PostgreSQL alike.
use chrono::{DateTime, SecondsFormat, Utc};

pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn now() -> String {
    format(Utc::now())
}

/// A unix-milliseconds figure kept in an atomic, formatted; `None` for 0 (never).
pub fn format_unix_ms(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| DateTime::from_timestamp_millis(ms).map(format))
        .flatten()
}

pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    if s.len() != 20 || !s.ends_with('Z') {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_wire_form() {
        let t = parse("2024-03-05T07:08:09Z").expect("valid");
        assert_eq!(format(t), "2024-03-05T07:08:09Z");
        assert!(parse("2024-03-05 07:08:09 UTC").is_none());
        assert!(parse("2024-03-05T07:08:09+00:00").is_none());
    }
}
