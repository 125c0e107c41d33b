//! Text relations: case-insensitive equality and `LIKE` patterns.
use serde_json::Value as Json;

use super::{Compiler, PlanError, Rel, unsupported_value};
use crate::query::sql::Sql;
use crate::schema::FieldKind;

/// SQLite's `LOWER()` folds ASCII only (PostgreSQL's depends on the locale): case-insensitive
/// comparisons with non-ASCII text go to the site.
pub(super) const NON_ASCII: &str = "with non-ASCII text in a case-insensitive comparison";

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

impl<'a> Compiler<'a> {
    /// Case-insensitive `name_*` / `contains` family on a text expression.
    pub(super) fn text_match(
        &self,
        expr: Sql,
        rel: Rel,
        values: &[Json],
    ) -> Result<Sql, PlanError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
    }
}
