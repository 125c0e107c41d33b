//! Event log helpers: which link fields mirror each other (back-reference events, §9.4) and
//! the hold / release / burn controls for out-of-order visibility (§9.3).

use crate::store::{ReverseField, Store};

/// Reverse link pairs maintained by default. A pair is only active when both fields exist in
/// the loaded schema.
pub fn default_reverse_fields() -> Vec<ReverseField> {
    [
        ("Shot.assets", "Asset.shots"),
        ("Shot.sg_sequence", "Sequence.shots"),
        ("Task.entity", "Shot.tasks"),
        ("Task.entity", "Asset.tasks"),
        ("Task.entity", "Sequence.tasks"),
        ("Task.upstream_tasks", "Task.downstream_tasks"),
        ("Asset.parents", "Asset.assets"),
        ("Shot.parent_shots", "Shot.shots"),
    ]
    .iter()
    .map(|(a, b)| ReverseField::new(a, b))
    .collect()
}

/// Keep only pairs whose two fields exist in the store's schema.
pub fn active_reverse_fields(store: &Store, pairs: Vec<ReverseField>) -> Vec<ReverseField> {
    pairs
        .into_iter()
        .filter(|r| {
            store.schema.data_type(&r.a_type, &r.a_field).is_some()
                && store.schema.data_type(&r.b_type, &r.b_field).is_some()
        })
        .collect()
}

/// Start holding: events created from now on get ids but stay invisible.
pub fn hold(store: &mut Store) {
    store.holding = true;
}

/// Stop holding and make every held event visible.
pub fn release(store: &mut Store) {
    store.holding = false;
    store.held.clear();
}
