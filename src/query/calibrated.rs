//! Every place where the compiled SQL depends on one of the site's calibrated rules
//! ([`super::rules`]). The compiler asks here, and only where the answer really depends on the
//! rule: a read sorted only by `id` never asks for NULL placement, a sort on a number never
//! asks for the text order, a read without relative-date filters never asks for the zone.
//! An undecided rule makes the read pass through with reason `uncalibrated`.
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc, Weekday};

use super::PassReason;
use super::filters::{Compiler, PlanError};
use super::rules::{EmptyIn, EmptyPath, NullsAt, Rule, Rules, TextOrder};
use super::sql::Sql;

/// Calendar units of `in_calendar_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalUnit {
    Day,
    Week,
    Month,
    Year,
}

impl Compiler<'_> {
    /// The decided value of `rule`, recorded as relied upon; an undecided rule passes the read
    /// through (`uncalibrated`).
    pub fn rule<T>(
        &self,
        rule: Rule,
        get: impl FnOnce(&Rules) -> Option<T>,
    ) -> Result<T, PlanError> {
        self.used.borrow_mut().insert(rule);
        get(self.rules).ok_or(PlanError::Pass(PassReason::Uncalibrated(rule)))
    }

    /// `ASC`/`DESC` with the site's NULL placement, for a sort key that can be NULL.
    pub fn order_direction(&self, descending: bool) -> Result<&'static str, PlanError> {
        let rule = if descending {
            Rule::NullsDescending
        } else {
            Rule::NullsAscending
        };
        Ok(
            match (descending, self.rule(rule, |r| r.nulls(descending))?) {
                (false, NullsAt::First) => " ASC NULLS FIRST",
                (false, NullsAt::Last) => " ASC NULLS LAST",
                (true, NullsAt::First) => " DESC NULLS FIRST",
                (true, NullsAt::Last) => " DESC NULLS LAST",
            },
        )
    }

    /// The sort keys of a case-insensitive text expression in the site's text order, each
    /// compared bytewise: `LOWER(x)`, `LOWER(x), x` or `x`.
    pub fn text_sort_keys(&self, expr: &dyn Fn(bool) -> Sql) -> Result<Vec<Sql>, PlanError> {
        let lower = || self.dialect.bytewise(expr(true));
        let exact = || self.dialect.bytewise(expr(false));
        Ok(match self.rule(Rule::TextOrder, Rules::text_order)? {
            TextOrder::CaseInsensitive => vec![lower()],
            TextOrder::CaseInsensitiveThenCodePoint => vec![lower(), exact()],
            TextOrder::CodePoint => vec![exact()],
        })
    }

    /// Does a filter path that reaches no entity yield one NULL? Only paths through a
    /// multi-entity field depend on the rule (a NULL single link always yields NULL).
    pub fn empty_path_yields_null(&self, through_multi_entity: bool) -> Result<bool, PlanError> {
        if !through_multi_entity {
            return Ok(true);
        }
        let p = self.rule(Rule::EmptyMultiPath, Rules::empty_multi_path)?;
        Ok(p == EmptyPath::NullValue)
    }

    /// The predicate of `in []` (`not_in []` when `negate`).
    pub fn empty_in(&self, negate: bool) -> Result<Sql, PlanError> {
        match self.rule(Rule::EmptyIn, Rules::empty_in)? {
            EmptyIn::MatchNone => Ok(Sql::raw(if negate { "TRUE" } else { "FALSE" })),
            EmptyIn::Ignored => Ok(Sql::raw("TRUE")),
            // The site answers its own fault.
            EmptyIn::Fault => Err(PassReason::UnsupportedFeature(
                "an empty in / not_in list (the site rejects it)".into(),
            )
            .into()),
        }
    }

    /// The site's zone, as an offset to add to UTC.
    pub fn zone_offset(&self) -> Result<Duration, PlanError> {
        let minutes = self.rule(Rule::TimeZone, Rules::utc_offset)?;
        Ok(Duration::minutes(i64::from(minutes)))
    }

    /// The calendar period `off` periods from the one holding now, in the site's zone:
    /// `[start, end)` as local dates, with the UTC offset to turn them into instants.
    pub fn calendar_period(
        &self,
        unit: CalUnit,
        off: i64,
    ) -> Result<Option<(NaiveDate, NaiveDate)>, PlanError> {
        let offset = self.zone_offset()?;
        let week_start = if unit == CalUnit::Week {
            self.rule(Rule::WeekStart, Rules::week_start)?
        } else {
            Weekday::Mon
        };
        let today = (self.now + offset).date_naive();
        Ok(calendar_period(today, unit, off, week_start))
    }

    /// The instant of a local midnight.
    pub fn local_midnight(&self, d: NaiveDate) -> Result<DateTime<Utc>, PlanError> {
        let offset = self.zone_offset()?;
        Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() - offset)
    }

    /// The dates whose local midnight lies in `[from, to]`: `(first, last)`.
    pub fn dates_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(NaiveDate, NaiveDate), PlanError> {
        let offset = self.zone_offset()?;
        let (from, to) = (from + offset, to + offset);
        let mut lo = from.date_naive();
        if lo.and_hms_opt(0, 0, 0).map(|t| t.and_utc()) < Some(from) {
            lo = lo.succ_opt().unwrap_or(lo);
        }
        Ok((lo, to.date_naive()))
    }
}

/// The calendar period `off` periods from the one containing the local date `today`.
pub fn calendar_period(
    today: NaiveDate,
    unit: CalUnit,
    off: i64,
    week_start: Weekday,
) -> Option<(NaiveDate, NaiveDate)> {
    Some(match unit {
        CalUnit::Day => {
            let s = today.checked_add_signed(Duration::try_days(off)?)?;
            (s, s.succ_opt()?)
        }
        CalUnit::Week => {
            let back = today.weekday().days_since(week_start);
            let first = today - Duration::days(i64::from(back));
            let s = first.checked_add_signed(Duration::try_weeks(off)?)?;
            (s, s.checked_add_signed(Duration::weeks(1))?)
        }
        CalUnit::Month => {
            let first = today.with_day(1)?;
            let s = if off >= 0 {
                first.checked_add_months(Months::new(u32::try_from(off).ok()?))?
            } else {
                first.checked_sub_months(Months::new(u32::try_from(off.checked_neg()?).ok()?))?
            };
            (s, s.checked_add_months(Months::new(1))?)
        }
        CalUnit::Year => {
            let y = i32::try_from(i64::from(today.year()).checked_add(off)?).ok()?;
            (
                NaiveDate::from_ymd_opt(y, 1, 1)?,
                NaiveDate::from_ymd_opt(y.checked_add(1)?, 1, 1)?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn calendar_periods() {
        let today = d("2024-03-06"); // a Wednesday
        let p = |unit, off, start| calendar_period(today, unit, off, start);
        assert_eq!(
            p(CalUnit::Day, -1, Weekday::Mon),
            Some((d("2024-03-05"), d("2024-03-06")))
        );
        assert_eq!(
            p(CalUnit::Week, 0, Weekday::Mon),
            Some((d("2024-03-04"), d("2024-03-11")))
        );
        assert_eq!(
            p(CalUnit::Week, 0, Weekday::Sun),
            Some((d("2024-03-03"), d("2024-03-10")))
        );
        assert_eq!(
            p(CalUnit::Week, -1, Weekday::Sat),
            Some((d("2024-02-24"), d("2024-03-02")))
        );
        assert_eq!(
            p(CalUnit::Month, -3, Weekday::Mon),
            Some((d("2023-12-01"), d("2024-01-01")))
        );
        assert_eq!(
            p(CalUnit::Year, 1, Weekday::Mon),
            Some((d("2025-01-01"), d("2026-01-01")))
        );
        assert_eq!(p(CalUnit::Year, i64::MAX, Weekday::Mon), None);
        assert_eq!(p(CalUnit::Day, i64::MIN, Weekday::Mon), None);
        assert_eq!(p(CalUnit::Month, i64::MIN, Weekday::Mon), None);
    }
}
