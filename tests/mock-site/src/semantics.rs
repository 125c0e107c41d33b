//! The site's undocumented rules (`shotgun-api.md` §11), switchable so that tests can prove a
//! cache learns each variant. [`Semantics::default`] is the behaviour the mock always had.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, Utc, Weekday};
use std::cmp::Ordering;

/// Where NULLs go in one sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsAt {
    First,
    Last,
}

/// How text kinds (and link display names) sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOrder {
    /// Case-insensitive; values equal but for case tie (the next sort key, then `id`, decides).
    CaseInsensitive,
    /// Case-insensitive; values equal but for case are ordered by code point.
    CaseInsensitiveThenCodePoint,
    /// Code-point order (`"B"` before `"a"`).
    CodePoint,
}

/// What a deep filter path through a multi-entity field yields when it reaches no entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyPath {
    /// One NULL value: `assets.Asset.code is null` matches a Shot with no assets.
    NullValue,
    /// No value at all: that filter does not match (its negation does).
    NoValue,
}

/// What `in` / `not_in` with an empty list do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyIn {
    /// `in []` matches nothing, `not_in []` everything.
    MatchNone,
    /// The condition is ignored: both match everything.
    Ignored,
    /// The site rejects the request.
    Fault,
}

/// The switchable rules of a mock site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semantics {
    pub nulls_ascending: NullsAt,
    pub nulls_descending: NullsAt,
    pub text_order: TextOrder,
    /// First day of the week of `in_calendar_week`.
    pub week_start: Weekday,
    /// The zone of calendar periods and of a date's midnight, as minutes east of UTC.
    pub utc_offset_minutes: i32,
    pub empty_path: EmptyPath,
    pub empty_in: EmptyIn,
}

impl Default for Semantics {
    fn default() -> Semantics {
        Semantics {
            nulls_ascending: NullsAt::First,
            nulls_descending: NullsAt::Last,
            text_order: TextOrder::CaseInsensitive,
            week_start: Weekday::Mon,
            utc_offset_minutes: 0,
            empty_path: EmptyPath::NullValue,
            empty_in: EmptyIn::MatchNone,
        }
    }
}

/// Calendar units of `in_calendar_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalUnit {
    Day,
    Week,
    Month,
    Year,
}

impl Semantics {
    fn zone(&self) -> FixedOffset {
        FixedOffset::east_opt(self.utc_offset_minutes * 60)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC is a valid offset"))
    }

    /// The instant a date stands for: its midnight in the site's zone.
    pub fn date_instant(&self, d: NaiveDate) -> Option<DateTime<Utc>> {
        let local = d.and_hms_opt(0, 0, 0)?;
        Some(local.and_utc() - Duration::minutes(i64::from(self.utc_offset_minutes)))
    }

    /// The calendar period `off` periods from the one containing `now`: `[start, end)`.
    pub fn calendar_period(
        &self,
        now: DateTime<Utc>,
        unit: CalUnit,
        off: i64,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let today = now.with_timezone(&self.zone()).date_naive();
        let (start, end) = match unit {
            CalUnit::Day => {
                let s = today + Duration::days(off);
                (s, s + Duration::days(1))
            }
            CalUnit::Week => {
                let back = today.weekday().days_since(self.week_start);
                let s = today - Duration::days(i64::from(back)) + Duration::weeks(off);
                (s, s + Duration::weeks(1))
            }
            CalUnit::Month => {
                let first = today.with_day(1)?;
                let s = if off >= 0 {
                    first.checked_add_months(Months::new(off as u32))?
                } else {
                    first.checked_sub_months(Months::new((-off) as u32))?
                };
                (s, s.checked_add_months(Months::new(1))?)
            }
            CalUnit::Year => {
                let s = NaiveDate::from_ymd_opt(today.year() + off as i32, 1, 1)?;
                (s, NaiveDate::from_ymd_opt(s.year() + 1, 1, 1)?)
            }
        };
        Some((self.date_instant(start)?, self.date_instant(end)?))
    }

    /// Order of two non-null strings of a case-insensitive text kind.
    pub fn text_cmp(&self, a: &str, b: &str) -> Ordering {
        match self.text_order {
            TextOrder::CodePoint => a.cmp(b),
            TextOrder::CaseInsensitive => a.to_lowercase().cmp(&b.to_lowercase()),
            TextOrder::CaseInsensitiveThenCodePoint => a
                .to_lowercase()
                .cmp(&b.to_lowercase())
                .then_with(|| a.cmp(b)),
        }
    }

    /// Order of one sort key in its direction, NULLs placed by the rule; `cmp` orders two
    /// non-null values ascending.
    pub fn sort_key_cmp<T>(
        &self,
        a: Option<T>,
        b: Option<T>,
        descending: bool,
        cmp: impl FnOnce(T, T) -> Ordering,
    ) -> Ordering {
        let nulls = if descending {
            self.nulls_descending
        } else {
            self.nulls_ascending
        };
        let null_first = |o: Ordering| match nulls {
            NullsAt::First => o,
            NullsAt::Last => o.reverse(),
        };
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => null_first(Ordering::Less),
            (Some(_), None) => null_first(Ordering::Greater),
            (Some(x), Some(y)) => {
                let o = cmp(x, y);
                if descending { o.reverse() } else { o }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn default_is_the_old_behaviour() {
        let s = Semantics::default();
        let now = t("2024-03-06T12:00:00Z"); // a Wednesday
        assert_eq!(
            s.calendar_period(now, CalUnit::Week, 0),
            Some((t("2024-03-04T00:00:00Z"), t("2024-03-11T00:00:00Z")))
        );
        assert_eq!(
            s.sort_key_cmp(None, Some(1), false, |x: i32, y| x.cmp(&y)),
            Ordering::Less
        );
        assert_eq!(
            s.sort_key_cmp(None, Some(1), true, |x: i32, y| x.cmp(&y)),
            Ordering::Greater
        );
        assert_eq!(s.text_cmp("abc", "ABC"), Ordering::Equal);
    }

    #[test]
    fn variants() {
        let s = Semantics {
            week_start: Weekday::Sun,
            utc_offset_minutes: -300,
            nulls_ascending: NullsAt::Last,
            nulls_descending: NullsAt::Last,
            text_order: TextOrder::CodePoint,
            ..Semantics::default()
        };
        // 03:00 UTC on Sunday the 10th is still Saturday the 9th at UTC-5.
        let now = t("2024-03-10T03:00:00Z");
        assert_eq!(
            s.calendar_period(now, CalUnit::Week, 0),
            Some((t("2024-03-03T05:00:00Z"), t("2024-03-10T05:00:00Z")))
        );
        assert_eq!(
            s.calendar_period(now, CalUnit::Day, 0),
            Some((t("2024-03-09T05:00:00Z"), t("2024-03-10T05:00:00Z")))
        );
        assert_eq!(
            s.sort_key_cmp(None, Some(1), false, |x: i32, y| x.cmp(&y)),
            Ordering::Greater
        );
        assert_eq!(
            s.sort_key_cmp(None, Some(1), true, |x: i32, y| x.cmp(&y)),
            Ordering::Greater
        );
        assert_eq!(s.text_cmp("B", "a"), Ordering::Less);
        let ci = Semantics {
            text_order: TextOrder::CaseInsensitiveThenCodePoint,
            ..s
        };
        assert_eq!(ci.text_cmp("B", "a"), Ordering::Greater);
        assert_eq!(ci.text_cmp("abc", "ABC"), Ordering::Greater);
    }
}
