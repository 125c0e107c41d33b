//! Filter trees → SQL predicates.
//!
//! Semantics (§5.5): every leaf is evaluated as "some value reached through the path satisfies
//! the positive relation"; a negated relation (`is_not`, `not_in`, `not_contains`, ...) is the
//! complement of the whole existential, so it includes NULLs, empty lists, and rows whose link
//! points at another type. Deep paths become nested `EXISTS` subqueries (only active target rows
//! count); a path that reaches no row at all yields one NULL value (through a multi-entity field:
//! as calibrated). Text comparisons are case-insensitive (`LOWER(x) = LOWER(?)`,
//! `LOWER(x) LIKE LOWER(?) ESCAPE '\'`) on both backends; `list`/`status_list` values compare
//! exactly. `in_last`/`in_next` are rolling windows from now (HOUR, DAY, WEEK = 7 days,
//! MONTH = 30 days, YEAR = 365 days, bounds included), `in_calendar_*` are calendar periods; a
//! date counts as its midnight. The zone, the first day of the week and `in []` follow the
//! calibrated rules ([`super::calibrated`]).
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::Value as Json;

use super::PassReason;
use super::calibrated::CalUnit;
use super::links::{LinkTarget, resolved_row};
use super::paths::{Hop, PathError, Resolved, Schemas};
use super::rules::{Rule, Rules};
use super::sql::{Dialect, Sql, col, ident};
use crate::api3::filters::{FilterNode, LogicalOp};
use crate::error::ApiError;
use crate::schema::{CachedEntity, CachedField, ColumnLayout, FieldKind};

/// Why a read cannot be compiled.
#[derive(Debug)]
pub enum PlanError {
    Fault(ApiError),
    Pass(PassReason),
}

impl From<PassReason> for PlanError {
    fn from(r: PassReason) -> PlanError {
        PlanError::Pass(r)
    }
}

/// Shared state of one compilation: schemas, the dialect, the site's rules, fresh aliases
/// and "now".
pub struct Compiler<'a> {
    pub schemas: Schemas<'a>,
    pub dialect: Dialect,
    pub now: DateTime<Utc>,
    pub rules: &'a Rules,
    /// The rules this compilation relied on (see [`super::calibrated`]).
    pub used: RefCell<BTreeSet<Rule>>,
    aliases: Cell<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    Is,
    In,
    LessThan,
    GreaterThan,
    Between,
    Contains,
    StartsWith,
    EndsWith,
    TypeIs,
    NameIs,
    NameContains,
    NameStartsWith,
    NameEndsWith,
    InLast,
    InNext,
    InCalendar(CalUnit),
}

fn parse_rel(s: &str) -> Option<(Rel, bool)> {
    use Rel::*;
    Some(match s {
        "is" => (Is, false),
        "is_not" => (Is, true),
        "in" => (In, false),
        "not_in" => (In, true),
        "less_than" => (LessThan, false),
        "greater_than" => (GreaterThan, false),
        "between" => (Between, false),
        "not_between" => (Between, true),
        "contains" => (Contains, false),
        "not_contains" => (Contains, true),
        "starts_with" => (StartsWith, false),
        "ends_with" => (EndsWith, false),
        "type_is" => (TypeIs, false),
        "type_is_not" => (TypeIs, true),
        "name_is" => (NameIs, false),
        "name_contains" => (NameContains, false),
        "name_not_contains" => (NameContains, true),
        "name_starts_with" => (NameStartsWith, false),
        "name_ends_with" => (NameEndsWith, false),
        "in_last" => (InLast, false),
        "not_in_last" => (InLast, true),
        "in_next" => (InNext, false),
        "not_in_next" => (InNext, true),
        "in_calendar_day" => (InCalendar(CalUnit::Day), false),
        "in_calendar_week" => (InCalendar(CalUnit::Week), false),
        "in_calendar_month" => (InCalendar(CalUnit::Month), false),
        "in_calendar_year" => (InCalendar(CalUnit::Year), false),
        _ => return None,
    })
}

/// SQLite's `LOWER()` folds ASCII only (PostgreSQL's depends on the locale): case-insensitive
/// comparisons with non-ASCII text go to the site.
const NON_ASCII: &str = "with non-ASCII text in a case-insensitive comparison";

/// Text kinds compared case-insensitively.
pub fn case_insensitive(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Text
            | FieldKind::Color
            | FieldKind::EntityType
            | FieldKind::Uuid
            | FieldKind::Footage
            | FieldKind::SystemTaskType
    )
}

fn is_int_kind(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode
    )
}

/// The relations served locally for each kind (§5.4); everything else is passed through.
fn allowed(kind: FieldKind, rel: Rel, negate: bool) -> bool {
    use Rel::*;
    match kind {
        k if case_insensitive(k) => {
            matches!(rel, Is | In | Contains | StartsWith | EndsWith)
        }
        FieldKind::List | FieldKind::StatusList => matches!(rel, Is | In),
        FieldKind::Number | FieldKind::Currency => {
            matches!(rel, Is | In | LessThan | GreaterThan | Between)
        }
        FieldKind::Float | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode => {
            matches!(rel, Is | In | LessThan | GreaterThan) || (rel == Between && !negate)
        }
        FieldKind::Date | FieldKind::DateTime => {
            matches!(
                rel,
                Is | In | LessThan | GreaterThan | InLast | InNext | InCalendar(_)
            ) || (rel == Between && !negate)
        }
        FieldKind::Checkbox => rel == Is,
        FieldKind::Entity | FieldKind::MultiEntity => matches!(
            rel,
            Is | In | TypeIs | NameIs | NameContains | NameStartsWith | NameEndsWith
        ),
        _ => false,
    }
}

/// A Ruby-hash rendering of a condition, as the site prints it in faults.
pub fn ruby_dump(path: &str, relation: &str, values: &[Json]) -> String {
    format!(
        "{{\"path\"=>{}, \"relation\"=>{}, \"values\"=>{}}}",
        Json::String(path.to_owned()),
        Json::String(relation.to_owned()),
        Json::Array(values.to_vec())
    )
}

fn unsupported_value(what: &str) -> PlanError {
    PlanError::Pass(PassReason::UnsupportedFeature(format!(
        "filter value {what}"
    )))
}

/// `%`, `_` and `\` escaped for `LIKE ... ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_date(s: &str) -> bool {
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

/// A link value `{type, id, ...}`.
fn as_link(v: &Json) -> Option<(String, i64)> {
    let o = v.as_object()?;
    Some((o.get("type")?.as_str()?.to_owned(), o.get("id")?.as_i64()?))
}

impl<'a> Compiler<'a> {
    pub fn new(
        schemas: Schemas<'a>,
        dialect: Dialect,
        now: DateTime<Utc>,
        rules: &'a Rules,
    ) -> Compiler<'a> {
        Compiler {
            schemas,
            dialect,
            now,
            rules,
            used: RefCell::new(BTreeSet::new()),
            aliases: Cell::new(0),
        }
    }

    /// A fresh table alias.
    pub fn alias(&self, prefix: &str) -> String {
        let n = self.aliases.get() + 1;
        self.aliases.set(n);
        format!("{prefix}{n}")
    }

    /// The predicate for a whole filter tree on rows of `root` aliased `alias`.
    pub fn predicate(
        &self,
        node: &FilterNode,
        root: &'a CachedEntity,
        alias: &str,
    ) -> Result<Sql, PlanError> {
        match node {
            FilterNode::Group { op, conditions } => {
                let parts = conditions
                    .iter()
                    .map(|c| self.predicate(c, root, alias))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(match op {
                    LogicalOp::And => Sql::join(parts, " AND ", "TRUE"),
                    LogicalOp::Or => Sql::join(parts, " OR ", "FALSE"),
                })
            }
            FilterNode::Condition {
                path,
                relation,
                values,
            } => self.leaf(root, alias, path, relation, values),
        }
    }

    fn leaf(
        &self,
        root: &'a CachedEntity,
        alias: &str,
        path: &str,
        relation: &str,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        if path.starts_with("$FROM$") {
            return Err(PassReason::UnsupportedFeature("$FROM$ filter paths".into()).into());
        }
        let resolved = match self.schemas.resolve(root, path) {
            Ok(r) => r,
            Err(PathError::Missing(name)) => {
                return Err(PlanError::Fault(ApiError::bad_request(format!(
                    "API read() {name} doesn't exist: {}",
                    ruby_dump(path, relation, values)
                ))));
            }
            Err(PathError::Pass(r)) => return Err(r.into()),
        };
        let Some((rel, negate)) = parse_rel(relation) else {
            return Err(PassReason::UnsupportedRelation(relation.to_owned()).into());
        };
        let field = resolved.field;
        if !allowed(field.kind, rel, negate) {
            return Err(PassReason::UnsupportedRelation(format!(
                "{relation} on {}",
                field.data_type
            ))
            .into());
        }
        if rel == Rel::In && values.is_empty() {
            return self.empty_in(negate);
        }
        let null_matches = match rel {
            Rel::Is => values.first().is_some_and(Json::is_null),
            Rel::In => values.iter().any(Json::is_null),
            Rel::TypeIs => values.first().is_some_and(Json::is_null),
            _ => false,
        };
        // Does a path that reaches nothing yield the NULL this relation accepts?
        let null_matches = null_matches
            && (resolved.hops.is_empty()
                || self.empty_path_yields_null(resolved.through_multi_entity())?);
        let positive = self.chain(&resolved, &resolved.hops, alias, rel, values, null_matches)?;
        Ok(if negate {
            Sql::raw("NOT COALESCE(").push(positive).text(", FALSE)")
        } else {
            positive
        })
    }

    /// Positive predicate through the remaining `hops` from `alias`.
    fn chain(
        &self,
        r: &Resolved<'a>,
        hops: &[Hop<'a>],
        alias: &str,
        rel: Rel,
        values: &[Json],
        null_matches: bool,
    ) -> Result<Sql, PlanError> {
        let Some((hop, rest)) = hops.split_first() else {
            return self.field_predicate(r.field, alias, rel, values);
        };
        let inner_alias = self.alias("t");
        // Only the whole chain reaching nothing yields the NULL candidate.
        let inner = self.chain(r, rest, &inner_alias, rel, values, false)?;
        let exists = |pred: Sql| self.hop_exists(hop, alias, &inner_alias, pred);
        if !null_matches {
            return Ok(exists(inner));
        }
        // A path that reaches no row yields a single NULL, which this relation accepts.
        let any = self.chain_reaches(hops, alias);
        Ok(exists(inner).paren().text(" OR NOT ").push(any.paren()))
    }

    /// `EXISTS` over the full chain with no condition at the end.
    fn chain_reaches(&self, hops: &[Hop<'a>], alias: &str) -> Sql {
        let Some((hop, rest)) = hops.split_first() else {
            return Sql::raw("TRUE");
        };
        let inner_alias = self.alias("t");
        let inner = self.chain_reaches(rest, &inner_alias);
        self.hop_exists(hop, alias, &inner_alias, inner)
    }

    /// `EXISTS` a row `to` that the link `field` of `from` resolves to (see [`super::links`])
    /// and that satisfies `pred`.
    fn hop_exists(&self, hop: &Hop<'a>, from: &str, to: &str, pred: Sql) -> Sql {
        let target = hop.target;
        let (type_expr, id_expr, outer) = match &hop.field.layout {
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => (col(from, type_column), col(from, id_column), None),
            ColumnLayout::MultiEntity { table } => {
                let m = self.alias("m");
                (
                    format!("{m}.\"child_type\""),
                    format!("{m}.\"child_id\""),
                    Some((table, m)),
                )
            }
            // Paths only hop through link fields.
            ColumnLayout::Scalar { .. } => return Sql::raw("FALSE"),
        };
        let inner = Sql::raw("EXISTS (SELECT 1")
            .push(resolved_row(&target.table, to, &id_expr))
            .text(format!(" AND {type_expr} = "))
            .bind(target.name.clone())
            .text(" AND ")
            .push(pred.paren())
            .text(")");
        match outer {
            None => inner,
            Some((table, m)) => Sql::raw(format!(
                "EXISTS (SELECT 1 FROM {} {m} WHERE {m}.\"parent_id\" = {from}.\"id\" AND ",
                ident(table)
            ))
            .push(inner)
            .text(")"),
        }
    }

    /// The positive relation on `field` of the row aliased `alias`.
    fn field_predicate(
        &self,
        field: &CachedField,
        alias: &str,
        rel: Rel,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        match &field.layout {
            ColumnLayout::Scalar { column, .. } => {
                self.scalar_predicate(field.kind, &col(alias, column), rel, values)
            }
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => {
                let targets = self.schemas.link_targets(field)?;
                let (tcol, icol) = (col(alias, type_column), col(alias, id_column));
                let live = self.live_link(&targets, &tcol, &icol);
                // The link is live and satisfies `p`.
                let exists = |p: Sql| live.clone().text(" AND ").push(p.paren());
                self.link_predicate(&targets, &tcol, &icol, rel, values, &exists)
            }
            ColumnLayout::MultiEntity { table } => {
                let targets = self.schemas.link_targets(field)?;
                let m = self.alias("m");
                let (tcol, icol) = (format!("{m}.\"child_type\""), format!("{m}.\"child_id\""));
                let live = self.live_link(&targets, &tcol, &icol);
                // Some live link of the list satisfies `p`.
                let exists = |p: Sql| {
                    Sql::raw(format!(
                        "EXISTS (SELECT 1 FROM {} {m} WHERE {m}.\"parent_id\" = {alias}.\"id\" AND ",
                        ident(table)
                    ))
                    .push(live.clone())
                    .text(" AND ")
                    .push(p.paren())
                    .text(")")
                };
                self.link_predicate(&targets, &tcol, &icol, rel, values, &exists)
            }
        }
    }

    /// Links equal to any of `links`: `(type = ? AND id IN (?, ...)) OR ...`, one group per type.
    fn links_in(&self, tcol: &str, icol: &str, links: &[Json]) -> Result<Sql, PlanError> {
        let mut by_type: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for v in links {
            let (t, id) =
                as_link(v).ok_or_else(|| unsupported_value("that is not a {type, id} link"))?;
            by_type.entry(t).or_default().push(id);
        }
        if by_type.len() == 1 && links.len() == 1 {
            return self.link_eq(tcol, icol, &links[0]);
        }
        let parts = by_type
            .into_iter()
            .map(|(t, ids)| {
                let mut s = Sql::raw(format!("{tcol} = "))
                    .bind(t)
                    .text(format!(" AND {icol} IN ("));
                for (i, id) in ids.into_iter().enumerate() {
                    if i > 0 {
                        s = s.text(", ");
                    }
                    s = s.bind(id);
                }
                s.text(")")
            })
            .collect();
        Ok(Sql::join(parts, " OR ", "FALSE"))
    }

    fn link_eq(&self, tcol: &str, icol: &str, v: &Json) -> Result<Sql, PlanError> {
        let (t, id) =
            as_link(v).ok_or_else(|| unsupported_value("that is not a {type, id} link"))?;
        Ok(Sql::raw(format!("{tcol} = "))
            .bind(t)
            .text(format!(" AND {icol} = "))
            .bind(id))
    }

    /// The positive relation on the links (`tcol`, `icol`) of an entity field (at most one) or
    /// a multi-entity list: `exists(p)` says "some live link satisfies `p`" (the retired-link
    /// rule of [`super::links`]), so a null relation value matches when no live link is left.
    fn link_predicate(
        &self,
        targets: &[LinkTarget],
        tcol: &str,
        icol: &str,
        rel: Rel,
        values: &[Json],
        exists: &dyn Fn(Sql) -> Sql,
    ) -> Result<Sql, PlanError> {
        let none_live = || Sql::raw("NOT ").push(exists(Sql::raw("TRUE")).paren());
        match rel {
            Rel::Is | Rel::In => {
                let wanted = if rel == Rel::Is {
                    &values[..values.len().min(1)]
                } else {
                    values
                };
                if rel == Rel::Is && wanted.is_empty() {
                    return Err(unsupported_value("missing"));
                }
                let mut parts = Vec::new();
                let mut links = Vec::new();
                for v in wanted {
                    if v.is_null() {
                        parts.push(none_live());
                    } else {
                        links.push(v.clone());
                    }
                }
                if !links.is_empty() {
                    parts.push(exists(self.links_in(tcol, icol, &links)?));
                }
                Ok(Sql::join(parts, " OR ", "FALSE"))
            }
            Rel::TypeIs => match values.first() {
                Some(Json::Null) => Ok(none_live()),
                Some(Json::String(t)) => Ok(exists(Sql::raw(format!("{tcol} = ")).bind(t.clone()))),
                _ => Err(unsupported_value("for type_is")),
            },
            _ => {
                let name = self.name_expr(targets, tcol, icol);
                Ok(exists(self.text_match(name, rel, values)?))
            }
        }
    }

    /// Case-insensitive `name_*` / `contains` family on a text expression.
    fn text_match(&self, expr: Sql, rel: Rel, values: &[Json]) -> Result<Sql, PlanError> {
        let Some(Json::String(needle)) = values.first() else {
            return Err(unsupported_value("that is not a string"));
        };
        if !needle.is_ascii() {
            return Err(unsupported_value(NON_ASCII));
        }
        let lower = || Sql::raw("LOWER(").push(expr.clone()).text(")");
        let like = |pattern: String| {
            lower()
                .text(" LIKE LOWER(")
                .bind(pattern)
                .text(") ESCAPE '\\'")
        };
        let e = like_escape(needle);
        Ok(match rel {
            Rel::NameIs => lower().text(" = LOWER(").bind(needle.clone()).text(")"),
            Rel::Contains | Rel::NameContains => like(format!("%{e}%")),
            Rel::StartsWith | Rel::NameStartsWith => like(format!("{e}%")),
            Rel::EndsWith | Rel::NameEndsWith => like(format!("%{e}")),
            _ => return Err(unsupported_value("for this relation")),
        })
    }

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
        if case_insensitive(kind) && v.as_str().is_some_and(|s| !s.is_ascii()) {
            return Err(unsupported_value(NON_ASCII));
        }
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

    fn scalar_predicate(
        &self,
        kind: FieldKind,
        column: &str,
        rel: Rel,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
        let first = values.first();
        match rel {
            Rel::Is | Rel::In => {
                let targets = if rel == Rel::Is {
                    &values[..values.len().min(1)]
                } else {
                    values
                };
                if rel == Rel::Is && targets.is_empty() {
                    return Err(unsupported_value("missing"));
                }
                let mut parts = Vec::new();
                let mut list = Vec::new();
                for v in targets {
                    if v.is_null() {
                        if kind == FieldKind::Checkbox {
                            return Err(unsupported_value("null for a checkbox"));
                        }
                        parts.push(Sql::raw(format!("{column} IS NULL")));
                    } else if case_insensitive(kind) && v.as_str().is_some_and(|s| !s.is_ascii()) {
                        return Err(unsupported_value(NON_ASCII));
                    } else {
                        match self.scalar_bind(kind, v)? {
                            // Equality with a fraction on an integer column: its own test.
                            sea_orm::Value::Double(_) if is_int_kind(kind) => {
                                parts.push(self.compare(kind, column, "=", v)?);
                            }
                            b => list.push(b),
                        }
                    }
                }
                if list.len() == 1 && targets.len() == 1 {
                    return self.compare(kind, column, "=", &targets[0]);
                }
                if !list.is_empty() {
                    // `col IN (?, ...)` (case-folded for text kinds): one index probe per value.
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
                    parts.push(s.text(")"));
                }
                Ok(Sql::join(parts, " OR ", "FALSE"))
            }
            Rel::LessThan | Rel::GreaterThan => match first {
                None => Err(unsupported_value("missing")),
                Some(Json::Null) => Ok(Sql::raw("FALSE")),
                Some(v) => self.compare(
                    kind,
                    column,
                    if rel == Rel::LessThan { "<" } else { ">" },
                    v,
                ),
            },
            Rel::Between => {
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
            Rel::Contains | Rel::StartsWith | Rel::EndsWith => {
                self.text_match(Sql::raw(column.to_owned()), rel, values)
            }
            Rel::InLast | Rel::InNext => {
                let (Some(n), Some(unit)) = (
                    first.and_then(Json::as_i64),
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
            Rel::InCalendar(unit) => {
                let Some(off) = first.and_then(Json::as_i64) else {
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
            _ => Err(PassReason::UnsupportedRelation(format!("{rel:?}")).into()),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
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
