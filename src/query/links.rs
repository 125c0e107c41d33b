//! The one rule for links, used by return fields, filters, sorts, multi-entity lists and deep
//! paths alike.
//!
//! **A stored link `(type, id)` resolves only to an active row of `type` in the cache.** A link
//! whose target is retired reads as if it were absent: an entity field is `null` (so `is null`
//! matches it and `is_not null` does not; `type_is null` matches it), a multi-entity list
//! leaves it out (`is null` on the list matches when no live link is left), a deep path does not
//! go through it, its name is never shown and a sort sees `null`. Reviving the target restores
//! the link: nothing is rewritten, the rule is applied at read time.
//!
//! Source: the site nulls `EventLogEntry.entity` while the linked entity is retired, even for
//! old events (shotgun-api.md §9.1); the same rule is applied to every link field (§7, §11 q6),
//! and the mock site used as the reference in the tests implements it the same way.
//!
//! Every link field's valid types are cached (at least thinly, see
//! [`crate::schema::selection`]), so "no active row in the cache" means "retired on the site"
//! (or not yet known to the cache, which the event poller and scanner fix).
use super::filters::Compiler;
use super::sql::{Sql, col, ident, quoted};

/// A type a link field may point to: its table and the column giving links their `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTarget {
    pub entity_type: String,
    pub table: String,
    /// The display ("identifier") column, returned as the link's `name` (§7).
    pub name_column: String,
}

/// `FROM "table" alias WHERE alias."id" = <id_expr> AND alias."_active" = TRUE`: the row a link
/// with id `id_expr` resolves to (the caller checks the type). The whole rule is this `WHERE`.
pub fn resolved_row(table: &str, alias: &str, id_expr: &str) -> Sql {
    Sql::raw(format!(" FROM {} {alias} WHERE ", ident(table))).push(resolves(alias, id_expr))
}

/// `alias."id" = <id_expr> AND alias."_active" = TRUE`: the condition on the row of `alias`.
fn resolves(alias: &str, id_expr: &str) -> Sql {
    Sql::raw(format!(
        "{alias}.\"id\" = {id_expr} AND {alias}.\"_active\" = TRUE"
    ))
}

/// A link joined to the rows it may resolve to: one `LEFT JOIN` per target type.
pub struct JoinedLink {
    /// ` LEFT JOIN "table" j ON <type_expr> = 'Type' AND j."id" = <id_expr> AND j."_active"`, ...
    pub joins: Sql,
    /// The id of the row the link resolves to; NULL when it does not resolve.
    pub id: Sql,
    /// That row's display name; NULL when the link does not resolve.
    pub name: Sql,
}

/// `COALESCE(a, b, ...)` of columns; `empty` when there are none.
fn coalesce(columns: Vec<String>, empty: &str) -> Sql {
    match columns.len() {
        0 => Sql::raw(empty),
        1 => Sql::raw(columns.concat()),
        _ => Sql::raw(format!("COALESCE({})", columns.join(", "))),
    }
}

impl Compiler<'_> {
    /// Whether the link stored as (`type_expr`, `id_expr`) resolves (never NULL): false for a
    /// null link, a link of another type than `targets`, and a link to a retired entity.
    pub fn live_link(&self, targets: &[LinkTarget], type_expr: &str, id_expr: &str) -> Sql {
        let parts = targets
            .iter()
            .map(|t| {
                let n = self.alias("n");
                Sql::raw(format!("{type_expr} = {} AND ", quoted(&t.entity_type)))
                    .push(self.dialect.exists(resolved_row(&t.table, &n, id_expr)))
            })
            .collect();
        Sql::raw("COALESCE(")
            .push(Sql::join(parts, " OR ", "FALSE"))
            .text(", FALSE)")
    }

    /// The link stored as (`type_expr`, `id_expr`) joined to the row it resolves to (for the
    /// rows of a page: one index lookup per target type, where the scalar subqueries of
    /// [`Self::if_live`] and [`Self::name_expr`] take three).
    pub fn joined_link(
        &self,
        targets: &[LinkTarget],
        type_expr: &str,
        id_expr: &str,
    ) -> JoinedLink {
        let mut joins = Sql::raw("");
        let (mut ids, mut names) = (Vec::new(), Vec::new());
        for t in targets {
            let j = self.alias("j");
            joins = joins
                .text(format!(
                    " LEFT JOIN {} {j} ON {type_expr} = {} AND ",
                    ident(&t.table),
                    quoted(&t.entity_type)
                ))
                .push(resolves(&j, id_expr));
            ids.push(col(&j, "id"));
            names.push(col(&j, &t.name_column));
        }
        JoinedLink {
            joins,
            id: coalesce(ids, "CAST(NULL AS BIGINT)"),
            name: coalesce(names, "CAST(NULL AS TEXT)"),
        }
    }

    /// `expr` when the link (`type_expr`, `id_expr`) resolves, else NULL.
    pub fn if_live(
        &self,
        targets: &[LinkTarget],
        type_expr: &str,
        id_expr: &str,
        expr: Sql,
    ) -> Sql {
        Sql::raw("CASE WHEN ")
            .push(self.live_link(targets, type_expr, id_expr))
            .text(" THEN ")
            .push(expr)
            .text(" END")
    }

    /// The display name of the link (`type_expr`, `id_expr`); NULL when it does not resolve.
    pub fn name_expr(&self, targets: &[LinkTarget], type_expr: &str, id_expr: &str) -> Sql {
        if targets.is_empty() {
            return Sql::raw("CAST(NULL AS TEXT)");
        }
        let mut s = Sql::raw("CASE");
        for t in targets {
            let n = self.alias("n");
            s = s
                .text(format!(
                    " WHEN {type_expr} = {} THEN (SELECT {}",
                    quoted(&t.entity_type),
                    col(&n, &t.name_column)
                ))
                .push(resolved_row(&t.table, &n, id_expr))
                .text(")");
        }
        s.text(" ELSE CAST(NULL AS TEXT) END")
    }
}
