//! Return fields, sorts and paging → the page SELECT and the COUNT.
//!
//! The page is one statement in two levels: an inner query filters, orders and cuts the page
//! plus one row (ids and sort keys only; the extra row tells whether there is a next page); the
//! outer query joins those ids back to the table and computes the return fields (link names,
//! multi-entity lists, deep fields) for the page rows only, keeping the inner order. Nothing
//! counts the whole result in the page statement: the separate `COUNT(*)` runs only when the
//! client asks for counts and the page does not tell them (see `crate::db::reader::page`).
//!
//! Row order: the requested sorts, then `id` ascending. NULLs sort where the site puts them
//! (calibrated, `NULLS FIRST`/`NULLS LAST` spelled out on both backends). Case-insensitive text
//! kinds and links (by display name, then id) sort in the site's calibrated text order: by
//! `LOWER(value)`, by `LOWER(value)` then the value, or by the value.
use super::PassReason;
use super::filters::{Compiler, PlanError, case_insensitive};
use super::links::resolved_row;
use super::paths::{Hop, PathError, Resolved};
use super::sql::{Sql, col, ident};
use crate::api3::read::{ReadRequest, ReturnOnly};
use crate::schema::{CachedEntity, ColumnLayout, FieldKind, SqlType};

/// The alias of the queried table.
pub const ROOT: &str = "t0";
/// Column alias of the count in the `COUNT(*)` statement.
pub const TOTAL: &str = "_total";
/// Column alias of the row id.
pub const ID: &str = "_id";

/// How one return field is read back from the row.
#[derive(Clone, Debug, PartialEq)]
pub enum Decode {
    /// One column decoded by kind.
    Scalar { kind: FieldKind, column: String },
    /// `{type, id, name}` from three columns; null when the id is null.
    Link {
        type_column: String,
        id_column: String,
        name_column: String,
    },
    /// A JSON array of `[position, type, id, name]`.
    Multi { column: String },
}

/// One key of the output entities.
#[derive(Clone, Debug, PartialEq)]
pub struct OutField {
    pub key: String,
    pub decode: Decode,
}

/// The expression of `final_expr` evaluated at the end of entity `hops` from `alias`, as nested
/// scalar subqueries: NULL when a link is null, points at another type or does not resolve
/// (retired target, see [`super::links`]).
fn through(
    c: &Compiler<'_>,
    hops: &[Hop<'_>],
    alias: &str,
    final_expr: &dyn Fn(&str) -> Sql,
) -> Sql {
    let Some((hop, rest)) = hops.split_first() else {
        return final_expr(alias);
    };
    let ColumnLayout::Entity {
        type_column,
        id_column,
    } = &hop.field.layout
    else {
        return Sql::raw("NULL");
    };
    let b = c.alias("t");
    Sql::raw("(SELECT ")
        .push(through(c, rest, &b, final_expr))
        .push(resolved_row(&hop.target.table, &b, &col(alias, id_column)))
        .text(format!(" AND {} = ", col(alias, type_column)))
        .bind(hop.target.name.clone())
        .text(")")
}

/// Resolves a sort or return path for reading values; multi-entity hops are not supported.
fn resolve_value_path<'a>(
    c: &Compiler<'a>,
    root: &'a CachedEntity,
    path: &str,
    what: &str,
) -> Result<Option<Resolved<'a>>, PlanError> {
    match c.schemas.resolve(root, path) {
        Ok(r) => {
            if r.through_multi_entity() {
                return Err(PassReason::UnsupportedFeature(format!(
                    "{what} through a multi_entity field ({path})"
                ))
                .into());
            }
            Ok(Some(r))
        }
        Err(PathError::Missing(_)) => Ok(None),
        Err(PathError::Pass(r)) => Err(r.into()),
    }
}

/// The compiled page and count statements plus the decoding plan.
pub struct Built {
    pub page: Sql,
    pub count: Sql,
    pub fields: Vec<OutField>,
}

pub fn build(
    c: &Compiler<'_>,
    req: &ReadRequest,
    root: &CachedEntity,
    filter: Sql,
) -> Result<Built, PlanError> {
    // Return fields.
    let mut select: Vec<Sql> = Vec::new();
    let mut fields = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for key in &req.return_fields {
        if key == "type" || key == "id" || !seen.insert(key.as_str()) {
            continue;
        }
        // Unknown fields are left out, as the site does.
        let Some(r) = resolve_value_path(c, root, key, "return field")? else {
            continue;
        };
        let n = fields.len();
        let decode = match &r.field.layout {
            ColumnLayout::Scalar { column, .. } => {
                let alias = format!("c{n}");
                let column = column.clone();
                select.push(
                    through(c, &r.hops, ROOT, &|a| Sql::raw(col(a, &column)))
                        .text(format!(" AS {}", ident(&alias))),
                );
                Decode::Scalar {
                    kind: r.field.kind,
                    column: alias,
                }
            }
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => {
                let targets = c.schemas.link_targets(r.field)?;
                let (ta, ia, na) = (format!("c{n}_t"), format!("c{n}_i"), format!("c{n}_n"));
                // A link that does not resolve reads as null (see `super::links`).
                let live_col = |a: &str, column: &str| {
                    let (t, i) = (col(a, type_column), col(a, id_column));
                    c.if_live(&targets, &t, &i, Sql::raw(col(a, column)))
                };
                select.push(
                    through(c, &r.hops, ROOT, &|a| live_col(a, type_column))
                        .text(format!(" AS {}", ident(&ta))),
                );
                select.push(
                    through(c, &r.hops, ROOT, &|a| live_col(a, id_column))
                        .text(format!(" AS {}", ident(&ia))),
                );
                select.push(
                    through(c, &r.hops, ROOT, &|a| {
                        c.name_expr(&targets, &col(a, type_column), &col(a, id_column))
                    })
                    .text(format!(" AS {}", ident(&na))),
                );
                Decode::Link {
                    type_column: ta,
                    id_column: ia,
                    name_column: na,
                }
            }
            ColumnLayout::MultiEntity { table } => {
                if !r.hops.is_empty() {
                    return Err(PassReason::UnsupportedFeature(format!(
                        "deep multi_entity return field ({key})"
                    ))
                    .into());
                }
                let targets = c.schemas.link_targets(r.field)?;
                let m = c.alias("m");
                let (tcol, icol) = (format!("{m}.\"child_type\""), format!("{m}.\"child_id\""));
                let live = c.live_link(&targets, &tcol, &icol);
                let element = Sql::raw(format!(
                    "{}({m}.\"position\", {tcol}, {icol}, ",
                    c.dialect.json_array()
                ))
                .push(c.name_expr(&targets, &tcol, &icol))
                .text(")");
                let alias = format!("c{n}");
                // Links that do not resolve are left out of the list.
                select.push(
                    Sql::raw("(SELECT ")
                        .push(c.dialect.json_agg(element))
                        .text(format!(
                            " FROM {} {m} WHERE {m}.\"parent_id\" = {ROOT}.\"id\" AND ",
                            ident(table)
                        ))
                        .push(live)
                        .text(format!(") AS {}", ident(&alias))),
                );
                Decode::Multi { column: alias }
            }
        };
        fields.push(OutField {
            key: key.clone(),
            decode,
        });
    }

    // Sorts.
    let mut order = Vec::new();
    for s in &req.sorts {
        let Some(r) = resolve_value_path(c, root, &s.field, "sort")? else {
            return Err(PassReason::UncachedField(root.uncached_detail(&s.field)).into());
        };
        // `id` is never NULL: its sorts do not depend on where the site puts NULLs.
        let dir = if s.field == "id" {
            if s.descending { " DESC" } else { " ASC" }
        } else {
            c.order_direction(s.descending)?
        };
        match &r.field.layout {
            ColumnLayout::Scalar { column, .. } => {
                let kind = r.field.kind;
                if case_insensitive(kind) {
                    let keys = c.text_sort_keys(&|lower| {
                        through(c, &r.hops, ROOT, &|a| {
                            let e = col(a, column);
                            Sql::raw(if lower { format!("LOWER({e})") } else { e })
                        })
                    })?;
                    order.extend(keys.into_iter().map(|k| (k, dir, true)));
                } else {
                    let e = through(c, &r.hops, ROOT, &|a| Sql::raw(col(a, column)));
                    let text = matches!(
                        r.field.layout,
                        ColumnLayout::Scalar {
                            sql: SqlType::Text,
                            ..
                        }
                    );
                    let e = if text { c.dialect.bytewise(e) } else { e };
                    order.push((e, dir, text));
                }
            }
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => {
                let targets = c.schemas.link_targets(r.field)?;
                let keys = c.text_sort_keys(&|lower| {
                    through(c, &r.hops, ROOT, &|a| {
                        let name = c.name_expr(&targets, &col(a, type_column), &col(a, id_column));
                        if lower {
                            Sql::raw("LOWER(").push(name).text(")")
                        } else {
                            name
                        }
                    })
                })?;
                // A link that does not resolve sorts as null.
                let id = through(c, &r.hops, ROOT, &|a| {
                    let (t, i) = (col(a, type_column), col(a, id_column));
                    c.if_live(&targets, &t, &i, Sql::raw(i.clone()))
                });
                order.extend(keys.into_iter().map(|k| (k, dir, true)));
                order.push((id, dir, false));
            }
            ColumnLayout::MultiEntity { .. } => {
                return Err(PassReason::UnsupportedFeature(format!(
                    "sort on multi_entity field {}",
                    s.field
                ))
                .into());
            }
        }
    }

    let from_where = Sql::raw(format!(
        " FROM {} {ROOT} WHERE {ROOT}.\"_active\" = ",
        ident(&root.table)
    ))
    .bind(req.return_only == ReturnOnly::Active)
    .text(" AND ")
    .push(filter.paren());

    let limit = i64::from(req.entities_per_page);
    let offset = i64::from(req.current_page.saturating_sub(1)) * limit;
    // The inner query picks the page and one more row (ids, sort keys); the outer one computes
    // the return fields for those rows only.
    let mut inner = Sql::raw(format!("SELECT {ROOT}.\"id\" AS {}", ident(ID)));
    for (i, (e, _, _)) in order.iter().enumerate() {
        inner = inner
            .text(", ")
            .push(e.clone())
            .text(format!(" AS \"s{i}\""));
    }
    inner = inner.push(from_where.clone()).text(" ORDER BY ");
    for (e, dir, _) in &order {
        inner = inner.push(e.clone()).text(format!("{dir}, "));
    }
    // LIMIT and OFFSET are literals: SQLite plans an ORDER BY ... LIMIT with the bound value,
    // so a bound LIMIT makes every cached statement re-prepare on its next use.
    let inner = inner.text(format!(
        "{ROOT}.\"id\" ASC LIMIT {} OFFSET {offset}",
        limit + 1
    ));
    let mut page = Sql::raw(format!("SELECT p.{id} AS {id}", id = ident(ID)));
    for s in select {
        page = page.text(", ").push(s);
    }
    page = page.text(" FROM (").push(inner).text(format!(
        ") p JOIN {} {ROOT} ON {ROOT}.\"id\" = p.{} ORDER BY ",
        ident(&root.table),
        ident(ID)
    ));
    for (i, (_, dir, text)) in order.iter().enumerate() {
        let key = Sql::raw(format!("p.\"s{i}\""));
        let key = if *text { c.dialect.bytewise(key) } else { key };
        page = page.push(key).text(format!("{dir}, "));
    }
    let page = page.text(format!("p.{} ASC", ident(ID)));
    let count = Sql::raw(format!("SELECT COUNT(*) AS {}", ident(TOTAL))).push(from_where);
    Ok(Built {
        page,
        count,
        fields,
    })
}
