//! Return fields, sorts and paging → the page SELECT and the COUNT.
//!
//! The page is one statement in two levels: an inner query filters, orders and cuts the page
//! plus one row (ids and sort keys only; the extra row tells whether there is a next page); the
//! outer query joins those ids back to the table and computes the return fields for the page
//! rows only, keeping the inner order: the row's own links through one `LEFT JOIN` per target
//! type, deep fields through scalar subqueries. When the return fields are all columns of the
//! row itself, the page is the inner query with them in its select list (one level). Each
//! multi-entity return field is one more statement over the page's ids ([`MultiRead`]), not a
//! subquery per row. Nothing counts the
//! whole result in the page statement: the separate `COUNT(*)` runs only when the client asks
//! for counts and the page does not tell them (see `crate::db::reader::page`).
//!
//! Row order: the requested sorts, then `id` ascending. NULLs sort where the site puts them
//! (calibrated, `NULLS FIRST`/`NULLS LAST` spelled out on both backends). Case-insensitive text
//! kinds and links (by display name, then id) sort in the site's calibrated text order: by
//! `LOWER(value)`, by `LOWER(value)` then the value, or by the value.
use super::PassReason;
use super::filters::{Compiler, PlanError, case_insensitive};
use super::links::resolved_row;
use super::paths::{Hop, PathError, Resolved};
use super::sql::{Dialect, Sql, col, ident, quoted, truth};
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
    /// The links of the row in the rows of [`Built::multis`]`[index]`.
    Multi { index: usize },
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
        .text(format!(
            " AND {} = {})",
            col(alias, type_column),
            quoted(&hop.target.name)
        ))
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

/// The links of one multi-entity return field for the rows of a page, in one statement over
/// the page's ids (the page's inner query, so it can run before the page and each entity be
/// written as its row is read): rows `(parent_id, type, id, name)` ordered by parent and
/// position, the links that do not resolve left out (see [`super::links`]).
#[derive(Clone, Debug)]
pub struct MultiRead {
    /// `SELECT ... WHERE <the link resolves> AND `: the ids condition and `order` follow.
    head: Sql,
    parent: String,
    /// ` ORDER BY <parent>, <position>`.
    order: String,
}

impl MultiRead {
    /// The statement for the page whose ids (and sort keys) `ids` selects: it can run before
    /// the page (SQLite, whose rows are serialised as they are read).
    pub fn over_page(&self, ids: &Sql) -> Sql {
        self.head
            .clone()
            .text(format!("{} IN (SELECT q.{} FROM (", self.parent, ident(ID)))
            .push(ids.clone())
            .text(") q)")
            .text(self.order.clone())
    }

    /// The statement for the page rows `ids`, bound as one array (PostgreSQL, which reads the
    /// page's rows before serialising them: an index scan of the association table, where a
    /// subquery over the page made it hash the whole table).
    pub fn over_ids(&self, ids: &[i64]) -> Sql {
        self.head
            .clone()
            .text(format!("{} = ANY(", self.parent))
            .bind(ids.to_vec())
            .text(")")
            .text(self.order.clone())
    }

    /// The statement for the page whose inner query is `page` and whose rows, already read,
    /// are `ids`: the array form on PostgreSQL (SQLite has no arrays).
    pub fn over_rows(&self, dialect: Dialect, page: &Sql, ids: &[i64]) -> Sql {
        match dialect {
            Dialect::Sqlite => self.over_page(page),
            Dialect::Postgres => self.over_ids(ids),
        }
    }
}

/// The compiled page and count statements plus the decoding plan.
pub struct Built {
    pub page: Sql,
    /// The inner query of the page: its ids and sort keys (see [`MultiRead::over_page`]).
    pub ids: Sql,
    pub count: Sql,
    pub fields: Vec<OutField>,
    pub multis: Vec<MultiRead>,
}

/// The page and count statements of a read whose filter compiled to `filter`.
pub fn build(
    c: &Compiler<'_>,
    req: &ReadRequest,
    root: &CachedEntity,
    filter: Sql,
) -> Result<Built, PlanError> {
    let returns = return_fields(c, req, root)?;
    let order = order_keys(c, req, root)?;
    let from_where = Sql::raw(format!(
        " FROM {} {ROOT} WHERE {ROOT}.\"_active\" = {} AND ",
        ident(&root.table),
        truth(req.return_only == ReturnOnly::Active)
    ))
    .push(filter.paren());
    let count = Sql::raw(format!("SELECT COUNT(*) AS {}", ident(TOTAL))).push(from_where.clone());
    let cut = ordered_cut(c.dialect, req, &order, from_where);
    let ids = page_ids(&order, cut.clone());
    let page = if returns.own_columns_only() {
        page_flat(cut, &returns)
    } else {
        page_rows(c, root, ids.clone(), &order, &returns)
    };
    Ok(Built {
        page,
        ids,
        count,
        fields: returns.fields,
        multis: returns.multis,
    })
}

/// One sort key: the expression, its direction and whether it is compared as text.
type OrderKey = (Sql, &'static str, bool);

/// The inner query: the page's ids and sort keys, plus one more row.
fn page_ids(order: &[OrderKey], cut: Sql) -> Sql {
    let mut inner = Sql::raw(format!("SELECT {ROOT}.\"id\" AS {}", ident(ID)));
    for (i, (e, _, _)) in order.iter().enumerate() {
        inner = inner
            .text(", ")
            .push(e.clone())
            .text(format!(" AS \"s{i}\""));
    }
    inner.push(cut)
}

/// `FROM ... WHERE ... ORDER BY ... LIMIT ... OFFSET ...`: the page's rows plus one, in order.
///
/// LIMIT and OFFSET are literals, except on PostgreSQL past the first page:
///
/// * SQLite plans an ORDER BY ... LIMIT with the bound value, so a bound LIMIT makes every
///   cached statement re-prepare on its next use.
/// * PostgreSQL kept planning a find by id whose LIMIT and OFFSET were bound, on every
///   execution (the plan it would keep is costed for an unknown offset, so next to a one-row
///   lookup it never looks cheaper): a find by id then spent most of its database time
///   planning. A first page's literal `OFFSET 0` keeps one statement per read shape, whose plan
///   PostgreSQL keeps. Later pages come from paging loops, where a literal offset made a new
///   statement per page (parsed, planned and cached for one use); bound, all pages of a read
///   share one prepared statement, and PostgreSQL keeps its plan from the sixth execution on a
///   connection (server log, the bench's 500-Task pages: bind 1.0–1.8 ms for the first six,
///   about 0.15 ms after). Binding the OFFSET alone changes nothing for these pages.
fn ordered_cut(dialect: Dialect, req: &ReadRequest, order: &[OrderKey], from_where: Sql) -> Sql {
    let limit = i64::from(req.entities_per_page);
    let offset = i64::from(req.current_page.saturating_sub(1)) * limit;
    let mut cut = from_where.text(" ORDER BY ");
    for (e, dir, _) in order {
        cut = cut.push(e.clone()).text(format!("{dir}, "));
    }
    let cut = cut.text(format!("{ROOT}.\"id\" ASC LIMIT "));
    if dialect == Dialect::Postgres && offset > 0 {
        cut.bind(limit + 1).text(" OFFSET ").bind(offset)
    } else {
        cut.text(format!("{} OFFSET {offset}", limit + 1))
    }
}

/// The page in one level, when the return fields are columns of the row itself (no join, no
/// subquery, so nothing is computed for rows outside the page): the inner query's filter,
/// order and cut with the return fields in its select list. A find by id then costs the
/// database one index scan, as a hand-written `SELECT ... WHERE id = $1` does (the two-level
/// form costs two scans, a join and a sort: about 30 % less throughput under `pgbench`).
fn page_flat(cut: Sql, returns: &Returns) -> Sql {
    let mut page = Sql::raw(format!("SELECT {ROOT}.\"id\" AS {}", ident(ID)));
    for s in &returns.select {
        page = page.text(", ").push(s.clone());
    }
    page.push(cut)
}

/// The outer query: the return fields of the rows `inner` picked, in its order.
fn page_rows(
    c: &Compiler<'_>,
    root: &CachedEntity,
    inner: Sql,
    order: &[OrderKey],
    returns: &Returns,
) -> Sql {
    let mut page = Sql::raw(format!("SELECT p.{id} AS {id}", id = ident(ID)));
    for s in &returns.select {
        page = page.text(", ").push(s.clone());
    }
    page = page.text(" FROM (").push(inner).text(format!(
        ") p JOIN {} {ROOT} ON {ROOT}.\"id\" = p.{}",
        ident(&root.table),
        ident(ID)
    ));
    for j in &returns.joins {
        page = page.push(j.clone());
    }
    page = page.text(" ORDER BY ");
    for (i, (_, dir, text)) in order.iter().enumerate() {
        let key = Sql::raw(format!("p.\"s{i}\""));
        let key = if *text { c.dialect.bytewise(key) } else { key };
        page = page.push(key).text(format!("{dir}, "));
    }
    page.text(format!("p.{} ASC", ident(ID)))
}

/// What the return fields add to the page: select-list items, joins, decoders and the
/// multi-entity statements.
#[derive(Default)]
struct Returns {
    select: Vec<Sql>,
    joins: Vec<Sql>,
    /// A select-list item reads through a link (scalar subqueries along a deep path).
    deep: bool,
    fields: Vec<OutField>,
    multis: Vec<MultiRead>,
}

fn return_fields(
    c: &Compiler<'_>,
    req: &ReadRequest,
    root: &CachedEntity,
) -> Result<Returns, PlanError> {
    let mut out = Returns::default();
    let mut seen = std::collections::BTreeSet::new();
    for key in &req.return_fields {
        if key == "type" || key == "id" || !seen.insert(key.as_str()) {
            continue;
        }
        // Unknown fields are left out, as the site does.
        let Some(r) = resolve_value_path(c, root, key, "return field")? else {
            continue;
        };
        let decode = match &r.field.layout {
            ColumnLayout::Scalar { column, .. } => out.scalar(c, &r, column),
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => out.link(c, &r, type_column, id_column)?,
            ColumnLayout::MultiEntity { table } => out.multi(c, &r, key, table)?,
        };
        out.fields.push(OutField {
            key: key.clone(),
            decode,
        });
    }
    Ok(out)
}

impl Returns {
    /// The select list reads only columns of the queried row.
    fn own_columns_only(&self) -> bool {
        self.joins.is_empty() && !self.deep
    }

    /// The column alias of the next field plus `suffix`.
    fn alias(&self, suffix: &str) -> String {
        format!("c{}{suffix}", self.fields.len())
    }

    fn push(&mut self, expr: Sql, alias: &str) {
        self.select.push(expr.text(format!(" AS {}", ident(alias))));
    }

    fn scalar(&mut self, c: &Compiler<'_>, r: &Resolved<'_>, column: &str) -> Decode {
        let alias = self.alias("");
        self.deep |= !r.hops.is_empty();
        self.push(
            through(c, &r.hops, ROOT, &|a| Sql::raw(col(a, column))),
            &alias,
        );
        Decode::Scalar {
            kind: r.field.kind,
            column: alias,
        }
    }

    /// `{type, id, name}`: null when the link does not resolve (see `super::links`).
    fn link(
        &mut self,
        c: &Compiler<'_>,
        r: &Resolved<'_>,
        type_column: &str,
        id_column: &str,
    ) -> Result<Decode, PlanError> {
        let targets = c.schemas.link_targets(r.field)?;
        let (ta, ia, na) = (self.alias("_t"), self.alias("_i"), self.alias("_n"));
        if r.hops.is_empty() {
            // The row's own link: joined to its targets.
            let j = c.joined_link(&targets, &col(ROOT, type_column), &col(ROOT, id_column));
            let ty = Sql::raw("CASE WHEN ")
                .push(j.id.clone())
                .text(format!(" IS NOT NULL THEN {} END", col(ROOT, type_column)));
            self.joins.push(j.joins);
            self.push(ty, &ta);
            self.push(j.id, &ia);
            self.push(j.name, &na);
        } else {
            // A link at the end of a deep path: scalar subqueries along the path.
            self.deep = true;
            let live_col = |a: &str, column: &str| {
                let (t, i) = (col(a, type_column), col(a, id_column));
                c.if_live(&targets, &t, &i, Sql::raw(col(a, column)))
            };
            let name = |a: &str| c.name_expr(&targets, &col(a, type_column), &col(a, id_column));
            self.push(
                through(c, &r.hops, ROOT, &|a| live_col(a, type_column)),
                &ta,
            );
            self.push(through(c, &r.hops, ROOT, &|a| live_col(a, id_column)), &ia);
            self.push(through(c, &r.hops, ROOT, &name), &na);
        }
        Ok(Decode::Link {
            type_column: ta,
            id_column: ia,
            name_column: na,
        })
    }

    /// The list of links, read by a statement of its own over the page's ids.
    fn multi(
        &mut self,
        c: &Compiler<'_>,
        r: &Resolved<'_>,
        key: &str,
        table: &str,
    ) -> Result<Decode, PlanError> {
        if !r.hops.is_empty() {
            return Err(PassReason::UnsupportedFeature(format!(
                "deep multi_entity return field ({key})"
            ))
            .into());
        }
        let targets = c.schemas.link_targets(r.field)?;
        let m = c.alias("m");
        let j = c.joined_link(&targets, &col(&m, "child_type"), &col(&m, "child_id"));
        let head = Sql::raw(format!(
            "SELECT {}, {}, ",
            col(&m, "parent_id"),
            col(&m, "child_type")
        ))
        .push(j.id.clone())
        .text(", ")
        .push(j.name)
        .text(format!(" FROM {} {m}", ident(table)))
        .push(j.joins)
        .text(" WHERE ")
        .push(j.id)
        .text(" IS NOT NULL AND ");
        let parent = col(&m, "parent_id");
        self.multis.push(MultiRead {
            head,
            order: format!(" ORDER BY {parent}, {}", col(&m, "position")),
            parent,
        });
        Ok(Decode::Multi {
            index: self.multis.len() - 1,
        })
    }
}

/// The sort keys of the requested sorts, in order (`id` ascending breaks ties after them).
fn order_keys(
    c: &Compiler<'_>,
    req: &ReadRequest,
    root: &CachedEntity,
) -> Result<Vec<OrderKey>, PlanError> {
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
            ColumnLayout::Scalar { column, .. } => scalar_keys(c, &r, column, dir, &mut order)?,
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => link_keys(c, &r, type_column, id_column, dir, &mut order)?,
            ColumnLayout::MultiEntity { .. } => {
                return Err(PassReason::UnsupportedFeature(format!(
                    "sort on multi_entity field {}",
                    s.field
                ))
                .into());
            }
        }
    }
    Ok(order)
}

/// A scalar sorts by its value; case-insensitive text kinds in the site's text order.
fn scalar_keys(
    c: &Compiler<'_>,
    r: &Resolved<'_>,
    column: &str,
    dir: &'static str,
    order: &mut Vec<OrderKey>,
) -> Result<(), PlanError> {
    if case_insensitive(r.field.kind) {
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
    Ok(())
}

/// A link sorts by its target's display name, then its id; one that does not resolve as null.
fn link_keys(
    c: &Compiler<'_>,
    r: &Resolved<'_>,
    type_column: &str,
    id_column: &str,
    dir: &'static str,
    order: &mut Vec<OrderKey>,
) -> Result<(), PlanError> {
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
    let id = through(c, &r.hops, ROOT, &|a| {
        let (t, i) = (col(a, type_column), col(a, id_column));
        c.if_live(&targets, &t, &i, Sql::raw(i.clone()))
    });
    order.extend(keys.into_iter().map(|k| (k, dir, true)));
    order.push((id, dir, false));
    Ok(())
}
