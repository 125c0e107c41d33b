//! Deep paths: each hop through a link field becomes a nested `EXISTS` over the active rows
//! the link resolves to.
use serde_json::Value as Json;

use super::{Compiler, PlanError, Rel};
use crate::query::links::resolved_row;
use crate::query::paths::{Hop, Resolved};
use crate::query::sql::{Sql, col, ident, quoted};
use crate::schema::ColumnLayout;

impl<'a> Compiler<'a> {
    /// Positive predicate through the remaining `hops` from `alias`.
    pub(super) fn chain(
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

    /// `EXISTS` a row `to` that the link `field` of `from` resolves to (see [`crate::query::links`])
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
        let inner = self.dialect.exists(
            resolved_row(&target.table, to, &id_expr)
                .text(format!(" AND {type_expr} = {} AND ", quoted(&target.name)))
                .push(pred.paren()),
        );
        match outer {
            None => inner,
            Some((table, m)) => self.dialect.exists(
                Sql::raw(format!(
                    " FROM {} {m} WHERE {m}.\"parent_id\" = {from}.\"id\" AND ",
                    ident(table)
                ))
                .push(inner),
            ),
        }
    }
}
