//! Relations on entity and multi-entity fields: `is`/`in` on links, `type_is`, `name_*`.
use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{Compiler, PlanError, Rel, relation_values, unsupported_value};
use crate::query::links::LinkTarget;
use crate::query::sql::Sql;

/// A link value `{type, id, ...}`.
fn as_link(v: &Json) -> Option<(String, i64)> {
    let o = v.as_object()?;
    Some((o.get("type")?.as_str()?.to_owned(), o.get("id")?.as_i64()?))
}

impl<'a> Compiler<'a> {
    /// Links equal to any of `links`: `(type = ? AND id IN (?, ...)) OR ...`, one group per type.
    fn links_in(&self, tcol: &str, icol: &str, links: &[Json]) -> Result<Sql, PlanError> {
        let mut by_type: BTreeMap<String, Vec<i64>> = Default::default();
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
    /// rule of [`crate::query::links`]), so a null relation value matches when no live link is left.
    pub(super) fn link_predicate(
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
                let wanted = relation_values(rel, values)?;
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
}
