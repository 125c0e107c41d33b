//! The walk over a filter tree: groups, leaves (path resolution, the relation, negation) and the
//! dispatch on the layout of the field a path ends at.
use serde_json::Value as Json;

use super::{Compiler, PlanError, Rel, allowed, parse_rel, ruby_dump};
use crate::api3::filters::{FilterNode, LogicalOp};
use crate::error::ApiError;
use crate::query::PassReason;
use crate::query::paths::PathError;
use crate::query::sql::{Sql, col, ident};
use crate::schema::{CachedEntity, CachedField, ColumnLayout};

impl<'a> Compiler<'a> {
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

    /// The positive relation on `field` of the row aliased `alias`.
    pub(super) fn field_predicate(
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
                    self.dialect.exists(
                        Sql::raw(format!(
                            " FROM {} {m} WHERE {m}.\"parent_id\" = {alias}.\"id\" AND ",
                            ident(table)
                        ))
                        .push(live.clone())
                        .text(" AND ")
                        .push(p.paren()),
                    )
                };
                self.link_predicate(&targets, &tcol, &icol, rel, values, &exists)
            }
        }
    }
}
