//! Relations on scalar columns: `is`/`in`, ordered comparisons and `between` on numbers,
//! checkboxes, lists, text and dates; the family-specific relations are in [`super::text`] and
//! [`super::time`].
use serde_json::Value as Json;

use super::text::{NON_ASCII, case_insensitive};
use super::time::is_date;
use super::{Compiler, PlanError, Rel, relation_values, unsupported_value};
use crate::query::PassReason;
use crate::query::sql::Sql;
use crate::schema::FieldKind;

fn is_int_kind(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode
    )
}

/// Case-insensitive comparisons with non-ASCII text go to the site (see [`NON_ASCII`]).
fn ascii_only(kind: FieldKind, v: &Json) -> Result<(), PlanError> {
    if case_insensitive(kind) && v.as_str().is_some_and(|s| !s.is_ascii()) {
        return Err(unsupported_value(NON_ASCII));
    }
    Ok(())
}

/// `col IN (?, ...)` (case-folded for text kinds): one index probe per value.
fn in_list(kind: FieldKind, column: &str, list: Vec<sea_orm::Value>) -> Sql {
    let ci = case_insensitive(kind);
    let mut s = Sql::raw(if ci {
        format!("LOWER({column}) IN (")
    } else {
        format!("{column} IN (")
    });
    for (i, b) in list.into_iter().enumerate() {
        if i > 0 {
            s = s.text(", ");
        }
        s = if ci {
            s.text("LOWER(").bind(b).text(")")
        } else {
            s.bind(b)
        };
    }
    s.text(")")
}

impl<'a> Compiler<'a> {
    /// A bind value of `kind` from a (non-null) filter value.
    fn scalar_bind(&self, kind: FieldKind, v: &Json) -> Result<sea_orm::Value, PlanError> {
        let bad = || unsupported_value(&format!("{v} for a {} field", kind.data_type()));
        Ok(match kind {
            k if is_int_kind(k) => match (v.as_i64(), v.as_f64()) {
                (Some(i), _) => sea_orm::Value::BigInt(Some(i)),
                (None, Some(f)) if v.is_number() => sea_orm::Value::Double(Some(f)),
                _ => return Err(bad()),
            },
            FieldKind::Float | FieldKind::Currency => {
                sea_orm::Value::Double(Some(v.as_f64().filter(|_| v.is_number()).ok_or_else(bad)?))
            }
            FieldKind::Checkbox => sea_orm::Value::Bool(Some(v.as_bool().ok_or_else(bad)?)),
            FieldKind::Date => {
                let s = v.as_str().filter(|s| is_date(s)).ok_or_else(bad)?;
                sea_orm::Value::String(Some(s.to_owned()))
            }
            FieldKind::DateTime => {
                let s = v
                    .as_str()
                    .filter(|s| crate::time::parse(s).is_some())
                    .ok_or_else(bad)?;
                sea_orm::Value::String(Some(s.to_owned()))
            }
            _ => sea_orm::Value::String(Some(v.as_str().ok_or_else(bad)?.to_owned())),
        })
    }

    /// `lhs OP rhs` with case folding for case-insensitive kinds.
    fn compare(&self, kind: FieldKind, column: &str, op: &str, v: &Json) -> Result<Sql, PlanError> {
        ascii_only(kind, v)?;
        let b = self.scalar_bind(kind, v)?;
        let ordered = op != "=";
        let text = matches!(b, sea_orm::Value::String(_));
        let (lhs, rhs) = if case_insensitive(kind) {
            (
                Sql::raw(format!("LOWER({column})")),
                Sql::raw("LOWER(").bind(b).text(")"),
            )
        } else if is_int_kind(kind) && matches!(b, sea_orm::Value::Double(_)) {
            // A distinct statement text: sqlx caches prepared statements by text, and a
            // PostgreSQL parameter typed bigint must never receive a double.
            (
                Sql::raw(column.to_owned()),
                Sql::raw("CAST(").bind(b).text(" AS DOUBLE PRECISION)"),
            )
        } else {
            (Sql::raw(column.to_owned()), Sql::param(b))
        };
        Ok(if ordered && text {
            self.dialect
                .bytewise(lhs)
                .text(format!(" {op} "))
                .push(self.dialect.bytewise(rhs))
        } else {
            lhs.text(format!(" {op} ")).push(rhs)
        })
    }

    /// The positive relation `rel` on the scalar `column` of `kind`.
    pub(super) fn scalar_predicate(
        &self,
        kind: FieldKind,
        column: &str,
        rel: Rel,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        match rel {
            Rel::Is | Rel::In => self.scalar_in(kind, column, relation_values(rel, values)?),
            Rel::LessThan | Rel::GreaterThan => {
                let op = if rel == Rel::LessThan { "<" } else { ">" };
                self.ordered(kind, column, op, values.first())
            }
            Rel::Between => self.between(kind, column, values),
            Rel::Contains | Rel::StartsWith | Rel::EndsWith => {
                self.text_match(Sql::raw(column.to_owned()), rel, values)
            }
            Rel::InLast | Rel::InNext => self.in_window(kind, column, rel, values),
            Rel::InCalendar(unit) => self.in_calendar(kind, column, unit, values),
            _ => Err(PassReason::UnsupportedRelation(format!("{rel:?}")).into()),
        }
    }

    /// `is`/`in`: the column equals one of `targets`; a null target matches NULL.
    fn scalar_in(&self, kind: FieldKind, column: &str, targets: &[Json]) -> Result<Sql, PlanError> {
        let mut parts = Vec::new();
        let mut list = Vec::new();
        for v in targets {
            if v.is_null() {
                if kind == FieldKind::Checkbox {
                    return Err(unsupported_value("null for a checkbox"));
                }
                parts.push(Sql::raw(format!("{column} IS NULL")));
                continue;
            }
            ascii_only(kind, v)?;
            match self.scalar_bind(kind, v)? {
                // Equality with a fraction on an integer column: its own test.
                sea_orm::Value::Double(_) if is_int_kind(kind) => {
                    parts.push(self.compare(kind, column, "=", v)?);
                }
                b => list.push(b),
            }
        }
        if list.len() == 1 && targets.len() == 1 {
            return self.compare(kind, column, "=", &targets[0]);
        }
        if !list.is_empty() {
            parts.push(in_list(kind, column, list));
        }
        Ok(Sql::join(parts, " OR ", "FALSE"))
    }

    /// `less_than`/`greater_than` (`op`): a null bound matches nothing.
    fn ordered(
        &self,
        kind: FieldKind,
        column: &str,
        op: &str,
        bound: Option<&Json>,
    ) -> Result<Sql, PlanError> {
        match bound {
            None => Err(unsupported_value("missing")),
            Some(Json::Null) => Ok(Sql::raw("FALSE")),
            Some(v) => self.compare(kind, column, op, v),
        }
    }

    /// `between [lo, hi]`, bounds included; a null bound is open.
    fn between(&self, kind: FieldKind, column: &str, values: &[Json]) -> Result<Sql, PlanError> {
        let (Some(lo), Some(hi)) = (values.first(), values.get(1)) else {
            return Err(unsupported_value("between needs two bounds"));
        };
        let mut parts = vec![Sql::raw(format!("{column} IS NOT NULL"))];
        if !lo.is_null() {
            parts.push(self.compare(kind, column, ">=", lo)?);
        }
        if !hi.is_null() {
            parts.push(self.compare(kind, column, "<=", hi)?);
        }
        Ok(Sql::join(parts, " AND ", "TRUE"))
    }
}
