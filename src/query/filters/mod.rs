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
//!
//! Layout: the tree walk and the dispatch on a field's layout ([`tree`]), deep paths as nested
//! `EXISTS` ([`deep`]), relations on links ([`link`]), on text ([`text`]), on numbers and other
//! scalars ([`scalar`]) and on dates and times ([`time`]).
mod deep;
mod link;
mod scalar;
mod text;
mod time;
mod tree;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::PassReason;
use super::calibrated::CalUnit;
use super::paths::Schemas;
use super::rules::{Rule, Rules};
use super::sql::Dialect;
use crate::error::ApiError;
use crate::schema::FieldKind;

pub use text::{case_insensitive, like_escape};

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

/// The values an `is`/`in` relation compares with: the first value for `is` (which needs one),
/// all of them for `in`.
fn relation_values(rel: Rel, values: &[Json]) -> Result<&[Json], PlanError> {
    if rel != Rel::Is {
        return Ok(values);
    }
    if values.is_empty() {
        return Err(unsupported_value("missing"));
    }
    Ok(&values[..1])
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
}
