//! The DbWriter: the one place where the database is mutated.
//!
//! - [`actor`]: the actor, its messages ([`Apply`] of [`WriteOp`]s, [`ApplySchema`]), its
//!   transaction and retry policy, and the figures `/status` reads.
//! - `ops`: one [`Apply`] inside its transaction: the ops in order, then the checkpoint.
//! - `upsert`: wire records turned into rows, newer-wins, the upsert and association SQL.
//! - `registry`: schema changes: DDL, the schema registry, per-type scan state, snapshots.
pub mod actor;
mod ops;
mod registry;
mod upsert;

pub use actor::{
    Apply, ApplyOutcome, ApplySchema, Checkpoint, DbWriter, DbWriterHandle, EntityStatePatch,
    NewSnapshot, UpsertMode, WriteOp, WriterSnapshot, WriterStats,
};
pub use registry::load_complete;

use super::StoreError;

/// A small cached `Shot` type for the writer's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use crate::schema::{CachedEntity, CachedField, CachedSchema, ColumnLayout, FieldKind};

    fn field(table: &str, name: &str, kind: FieldKind) -> (String, CachedField) {
        let layout = ColumnLayout::for_field(table, name, kind).expect("cacheable kind");
        let field = CachedField {
            name: name.to_owned(),
            kind,
            data_type: kind.data_type().to_owned(),
            valid_types: vec![],
            layout,
        };
        (name.to_owned(), field)
    }

    /// `Shot` with `code`, `updated_at`, `sg_sequence` (entity) and `assets` (multi-entity).
    pub fn shot_entity() -> CachedEntity {
        let fields: BTreeMap<String, CachedField> = [
            field("shot", "code", FieldKind::Text),
            field("shot", "updated_at", FieldKind::DateTime),
            field("shot", "sg_sequence", FieldKind::Entity),
            field("shot", "assets", FieldKind::MultiEntity),
        ]
        .into_iter()
        .collect();
        CachedEntity {
            name: "Shot".to_owned(),
            table: "shot".to_owned(),
            display_field: Some("code".to_owned()),
            fields,
            thin: false,
            uncached: Default::default(),
        }
    }

    pub fn shot_schema() -> CachedSchema {
        CachedSchema {
            types: [("Shot".to_owned(), shot_entity())].into_iter().collect(),
        }
    }
}
