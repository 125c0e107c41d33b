//! Field paths (`code`, `sg_sequence.Sequence.code`, `task_assignees.HumanUser.login`) resolved
//! against the site schema (does it exist?) and the cached schema (can we answer it?).
use std::collections::BTreeSet;

use super::PassReason;
use super::links::LinkTarget;
use crate::schema::{
    CachedEntity, CachedField, CachedSchema, FieldKind, SiteSchema, display_field,
};

/// One hop of a deep path: `owner.field` links to `target`.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    pub field: &'a CachedField,
    pub target: &'a CachedEntity,
}

/// A resolved path: zero or more hops, then a field of `owner`.
#[derive(Clone, Debug)]
pub struct Resolved<'a> {
    pub hops: Vec<Hop<'a>>,
    pub owner: &'a CachedEntity,
    pub field: &'a CachedField,
}

impl Resolved<'_> {
    pub fn through_multi_entity(&self) -> bool {
        self.hops
            .iter()
            .any(|h| h.field.kind == FieldKind::MultiEntity)
    }
}

/// Why a path cannot be resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum PathError {
    /// The site has no such field (or type): `Type.field`.
    Missing(String),
    /// The site has it but the cache cannot answer it.
    Pass(PassReason),
}

/// Everything the planner consults.
#[derive(Clone, Copy)]
pub struct Schemas<'a> {
    pub cached: &'a CachedSchema,
    pub site: &'a SiteSchema,
    pub complete: &'a BTreeSet<String>,
}

fn site_has(site: &SiteSchema, ty: &str, field: &str) -> Option<FieldKind> {
    match site.field(ty, field) {
        Some(f) => Some(f.kind),
        // `id` is implied even when a schema forgets to list it.
        None if field == "id" && site.entity(ty).is_some() => Some(FieldKind::Number),
        None => None,
    }
}

impl<'a> Schemas<'a> {
    /// The cached type `ty`, which must be cached and complete.
    pub fn usable_type(&self, ty: &str, next_field: &str) -> Result<&'a CachedEntity, PathError> {
        let Some(e) = self.cached.entity(ty) else {
            return Err(PathError::Pass(PassReason::UncachedField(format!(
                "{ty}.{next_field}"
            ))));
        };
        if !self.complete.contains(ty) {
            return Err(PathError::Pass(PassReason::IncompleteType));
        }
        Ok(e)
    }

    /// The first `Type.field` of `path` (from type `root`) that the site does not have.
    pub fn site_missing(&self, root: &str, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len().is_multiple_of(2) || parts.iter().any(|p| p.is_empty()) {
            return Some(format!("{root}.{path}"));
        }
        let mut owner = root;
        for pair in parts[..parts.len() - 1].chunks(2) {
            match site_has(self.site, owner, pair[0]) {
                Some(FieldKind::Entity | FieldKind::MultiEntity) => {}
                _ => return Some(format!("{owner}.{}", pair[0])),
            }
            if self.site.entity(pair[1]).is_none() {
                return Some(format!("{}.{}", pair[1], parts[parts.len() - 1]));
            }
            owner = pair[1];
        }
        let last = parts[parts.len() - 1];
        site_has(self.site, owner, last)
            .is_none()
            .then(|| format!("{owner}.{last}"))
    }

    /// Resolves `path` from `root`.
    pub fn resolve(&self, root: &'a CachedEntity, path: &str) -> Result<Resolved<'a>, PathError> {
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len().is_multiple_of(2) || parts.iter().any(|p| p.is_empty()) {
            return Err(PathError::Missing(format!("{}.{path}", root.name)));
        }
        let mut owner = root;
        let mut hops = Vec::new();
        for pair in parts[..parts.len() - 1].chunks(2) {
            let (fname, target) = (pair[0], pair[1]);
            match site_has(self.site, &owner.name, fname) {
                Some(FieldKind::Entity | FieldKind::MultiEntity) => {}
                _ => return Err(PathError::Missing(format!("{}.{fname}", owner.name))),
            }
            if self.site.entity(target).is_none() {
                return Err(PathError::Missing(format!(
                    "{target}.{}",
                    parts[parts.len() - 1]
                )));
            }
            let field = owner.field(fname).ok_or_else(|| {
                PathError::Pass(PassReason::UncachedField(owner.uncached_detail(fname)))
            })?;
            let next = parts[parts.len() - 1];
            let target = self.usable_type(target, next)?;
            hops.push(Hop { field, target });
            owner = target;
        }
        let last = parts[parts.len() - 1];
        if site_has(self.site, &owner.name, last).is_none() {
            return Err(PathError::Missing(format!("{}.{last}", owner.name)));
        }
        let field = owner.field(last).ok_or_else(|| {
            PathError::Pass(PassReason::UncachedField(owner.uncached_detail(last)))
        })?;
        Ok(Resolved { hops, owner, field })
    }

    /// The types links held by `field` may point to, with the column giving their `name`.
    /// Every valid type must be cached and complete (the schema selection caches link targets
    /// at least thinly and leaves uncached the fields whose targets cannot be cached).
    pub fn link_targets(&self, field: &CachedField) -> Result<Vec<LinkTarget>, PassReason> {
        let mut out = Vec::new();
        for ty in &field.valid_types {
            let disp = self.site.entity(ty).and_then(display_field).unwrap_or("id");
            let Some(ce) = self.cached.entity(ty) else {
                return Err(PassReason::UncachedField(format!("{ty}.{disp}")));
            };
            let Some(crate::schema::ColumnLayout::Scalar { column, .. }) = ce
                .display_field
                .as_deref()
                .and_then(|d| ce.field(d))
                .map(|f| &f.layout)
            else {
                return Err(PassReason::UncachedField(format!("{ty}.{disp}")));
            };
            if !self.complete.contains(ty) {
                return Err(PassReason::IncompleteType);
            }
            out.push(LinkTarget {
                entity_type: ty.clone(),
                table: ce.table.clone(),
                name_column: column.clone(),
            });
        }
        Ok(out)
    }
}
