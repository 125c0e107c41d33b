//! Date and time relations: rolling windows (`in_last`, `in_next`) and calendar periods.
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::Value as Json;

use super::{Compiler, PlanError, Rel, unsupported_value};
use crate::query::calibrated::CalUnit;
use crate::query::sql::Sql;
use crate::schema::FieldKind;

pub(super) fn is_date(s: &str) -> bool {
    s.len() == 10 && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Stored values are four-digit years: bounds outside 0000..=9999 are clamped so that text
/// comparison keeps working.
fn fmt_date(d: NaiveDate) -> String {
    match d.year() {
        y if y > 9999 => "9999-12-31".to_owned(),
        y if y < 0 => "0000-01-01".to_owned(),
        _ => d.format("%Y-%m-%d").to_string(),
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    match t.year() {
        y if y > 9999 => "9999-12-31T23:59:59Z".to_owned(),
        y if y < 0 => "0000-01-01T00:00:00Z".to_owned(),
        _ => crate::time::format(t),
    }
}

impl<'a> Compiler<'a> {
    /// `in_last`/`in_next` `[n, unit]`: a rolling window from now.
    pub(super) fn in_window(
        &self,
        kind: FieldKind,
        column: &str,
        rel: Rel,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        let (Some(n), Some(unit)) = (
            values.first().and_then(Json::as_i64),
            values.get(1).and_then(Json::as_str),
        ) else {
            return Err(unsupported_value(
                "for in_last/in_next: expected [int, unit]",
            ));
        };
        let d = match unit {
            "HOUR" => Duration::try_hours(n),
            "DAY" => Duration::try_days(n),
            "WEEK" => Duration::try_weeks(n),
            "MONTH" => n.checked_mul(30).and_then(Duration::try_days),
            "YEAR" => n.checked_mul(365).and_then(Duration::try_days),
            _ => return Err(unsupported_value("unit")),
        };
        let window = d.and_then(|d| {
            if rel == Rel::InLast {
                Some((self.now.checked_sub_signed(d)?, self.now))
            } else {
                Some((self.now, self.now.checked_add_signed(d)?))
            }
        });
        let Some((from, to)) = window else {
            return Err(unsupported_value("time window out of range"));
        };
        self.time_window(kind, column, from, to)
    }

    /// `in_calendar_*` `[offset]`: the calendar period `offset` periods from the current one.
    pub(super) fn in_calendar(
        &self,
        kind: FieldKind,
        column: &str,
        unit: CalUnit,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        let Some(off) = values.first().and_then(Json::as_i64) else {
            return Err(unsupported_value("for in_calendar_*: expected [int]"));
        };
        let (start, end) = self
            .calendar_period(unit, off)?
            .ok_or_else(|| unsupported_value("calendar offset out of range"))?;
        Ok(match kind {
            FieldKind::Date => self.range(column, fmt_date(start), fmt_date(end), false),
            _ => self.range(
                column,
                fmt_time(self.local_midnight(start)?),
                fmt_time(self.local_midnight(end)?),
                false,
            ),
        })
    }

    /// `from <= value <= to`; a date is its midnight in the site's zone.
    fn time_window(
        &self,
        kind: FieldKind,
        column: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Sql, PlanError> {
        // A negative count gives from > to: an empty window, as on the site.
        Ok(if kind == FieldKind::Date {
            let (lo, hi) = self.dates_between(from, to)?;
            self.range(column, fmt_date(lo), fmt_date(hi), true)
        } else {
            self.range(column, fmt_time(from), fmt_time(to), true)
        })
    }

    /// `lo <= column <= hi` (or `< hi`), compared bytewise.
    fn range(&self, column: &str, lo: String, hi: String, hi_inclusive: bool) -> Sql {
        let d = self.dialect;
        d.bytewise(Sql::raw(column.to_owned()))
            .text(" >= ")
            .push(d.bytewise(Sql::param(lo)))
            .text(" AND ")
            .push(d.bytewise(Sql::raw(column.to_owned())))
            .text(if hi_inclusive { " <= " } else { " < " })
            .push(d.bytewise(Sql::param(hi)))
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    #[test]
    fn clamps_out_of_range_bounds() {
        let t = crate::time::parse("2024-03-06T12:00:00Z").unwrap();
        assert_eq!(fmt_time(t), "2024-03-06T12:00:00Z");
        let far = t + Duration::days(365 * 9000);
        assert_eq!(fmt_time(far), "9999-12-31T23:59:59Z");
        assert_eq!(fmt_date(far.date_naive()), "9999-12-31");
    }
}
