//! The one entity-refresh path: "these ids of this type" → what the site has now → DbWriter
//! operations (active upserts, retired upserts, and retirements of ids the site no longer has).
//!
//! Used by the write-back (entities a write touched), the event poller (New/Revival events and
//! rows the cache lacks), the verifier's healing and the scanner's reconciliation.
//!
//! [`relink`] re-reads the entities that link to a revived entity: the site hides a link to a
//! retired entity, so an entity read while its target was retired was cached without the link,
//! and the site shows it again after the revival without any event for the linking entity.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};
use tracing::warn;

use super::fetch::{IDS_PER_READ, ReadArgs, fetch_by_ids, read};
use super::{UpstreamClient, UpstreamError};
use crate::db::writer::{UpsertMode, WriteOp};
use crate::schema::{CachedEntity, CachedSchema, ColumnLayout};

/// Rows [`relink`] reads at most for one caller's budget (one page of events, one write).
pub const RELINK_MAX_ROWS: usize = 5_000;

/// What to do with asked-for ids the site does not have at all (neither active nor retired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Retire their rows (the site deleted them for good).
    Retire,
    /// Leave the cache alone (the caller counts or logs them).
    Keep,
}

/// The site's current records of some ids of one type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refreshed {
    pub entity_type: String,
    /// Found ids → (record with every cached field, whether it is active).
    pub found: BTreeMap<i64, (Map<String, Json>, bool)>,
    /// The ids asked for.
    pub asked: BTreeSet<i64>,
}

impl Refreshed {
    /// Records as [`fetch_by_ids`] returns them (records without an integer id are dropped).
    pub fn from_records(
        entity_type: &str,
        asked: impl IntoIterator<Item = i64>,
        records: Vec<(Map<String, Json>, bool)>,
    ) -> Refreshed {
        Refreshed {
            entity_type: entity_type.to_owned(),
            found: records
                .into_iter()
                .filter_map(|(r, active)| Some((r.get("id")?.as_i64()?, (r, active))))
                .collect(),
            asked: asked.into_iter().collect(),
        }
    }

    pub fn get(&self, id: i64) -> Option<(&Map<String, Json>, bool)> {
        self.found.get(&id).map(|(r, a)| (r, *a))
    }

    /// Asked-for ids the site does not have.
    pub fn gone(&self) -> impl Iterator<Item = i64> + '_ {
        self.asked
            .iter()
            .copied()
            .filter(|id| !self.found.contains_key(id))
    }

    /// Adds what `other` (of the same type) found and asked.
    pub fn merge(&mut self, other: Refreshed) {
        self.found.extend(other.found);
        self.asked.extend(other.asked);
    }

    /// Only the ids `ids` (now the ids asked for).
    pub fn only(mut self, ids: &BTreeSet<i64>) -> Refreshed {
        self.found.retain(|id, _| ids.contains(id));
        self.asked = ids.clone();
        self
    }

    /// The DbWriter operations: one upsert of the active records, one of the retired ones
    /// (whole records, `_active` set), then the retirements of gone ids when `gone` says so.
    pub fn ops(&self, event_id: Option<i64>, gone: Gone) -> Vec<WriteOp> {
        let mut ops = Vec::new();
        for active in [true, false] {
            let records: Vec<Map<String, Json>> = self
                .found
                .values()
                .filter(|(_, a)| *a == active)
                .map(|(r, _)| r.clone())
                .collect();
            if !records.is_empty() {
                ops.push(upsert(&self.entity_type, records, active, event_id));
            }
        }
        if gone == Gone::Retire {
            ops.extend(self.gone().map(|id| WriteOp::SetActive {
                entity_type: self.entity_type.clone(),
                id,
                active: false,
                event_id,
            }));
        }
        ops
    }
}

/// An upsert of whole records read from the site, all active or all retired.
pub fn upsert(
    entity_type: &str,
    records: Vec<Map<String, Json>>,
    active: bool,
    event_id: Option<i64>,
) -> WriteOp {
    WriteOp::Upsert {
        entity_type: entity_type.to_owned(),
        records,
        mode: UpsertMode::Full,
        active: Some(active),
        event_id,
    }
}

/// Reads `ids` of `entity` whole from the site (active first, then retired for the rest).
pub async fn refresh(
    client: &UpstreamClient,
    entity: &CachedEntity,
    ids: &BTreeSet<i64>,
) -> Result<Refreshed, UpstreamError> {
    let list: Vec<i64> = ids.iter().copied().collect();
    let records = if list.is_empty() {
        Vec::new()
    } else {
        fetch_by_ids(client, entity, &list).await?
    };
    Ok(Refreshed::from_records(
        &entity.name,
        ids.iter().copied(),
        records,
    ))
}

/// The entities re-read because they link to a revived entity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Relinked {
    /// Per linking type, the active entities found (whole).
    pub refreshed: BTreeMap<String, Refreshed>,
    /// Rows read.
    pub rows: u64,
    /// The budget ran out before every linking entity was read.
    pub truncated: bool,
}

impl Relinked {
    /// The DbWriter operations: the whole records, upserted.
    pub fn ops(&self, event_id: Option<i64>) -> Vec<WriteOp> {
        self.refreshed
            .values()
            .flat_map(|r| r.ops(event_id, Gone::Keep))
            .collect()
    }
}

/// The cached `(type, link field)` pairs that may point to `target_type`.
pub fn fields_linking_to<'s>(
    schema: &'s CachedSchema,
    target_type: &'s str,
) -> impl Iterator<Item = (&'s CachedEntity, &'s str)> + 's {
    schema.types.values().flat_map(move |entity| {
        entity
            .fields
            .values()
            .filter(move |f| {
                matches!(
                    f.layout,
                    ColumnLayout::Entity { .. } | ColumnLayout::MultiEntity { .. }
                ) && f.valid_types.iter().any(|t| t == target_type)
            })
            .map(move |f| (entity, f.name.as_str()))
    })
}

/// Reads whole, from the site, the active cached entities that link to `target_type` #
/// `target_id` (`[field, "is", target]` for every cached entity or multi-entity field that may
/// point to its type), in pages by id, reading at most `*budget` rows (taken off the budget).
pub async fn relink(
    client: &UpstreamClient,
    schema: &CachedSchema,
    target_type: &str,
    target_id: i64,
    budget: &mut usize,
) -> Result<Relinked, UpstreamError> {
    let mut out = Relinked::default();
    let target = json!([{"type": target_type, "id": target_id}]);
    for (entity, field) in fields_linking_to(schema, target_type) {
        let mut after = 0i64;
        loop {
            if *budget == 0 {
                out.truncated = true;
                warn!(entity_type = %target_type, id = target_id, "re-reading the entities linking to a revived entity stopped at its bound; some links may stay hidden until those entities change");
                return Ok(out);
            }
            let per_page = (*budget).min(IDS_PER_READ);
            let args = ReadArgs::whole(entity)
                .filter(field, "is", target.clone())
                .filter("id", "greater_than", json!([after]))
                .page(per_page as u32, 1);
            let records = read(client, args).await?;
            let ids: Vec<i64> = records
                .iter()
                .filter_map(|r| r.get("id").and_then(Json::as_i64))
                .collect();
            let page = Refreshed::from_records(
                &entity.name,
                ids.iter().copied(),
                records.into_iter().map(|r| (r, true)).collect(),
            );
            let n = page.found.len();
            *budget -= n.min(*budget);
            out.rows += n as u64;
            after = ids.iter().copied().max().unwrap_or(after);
            match out.refreshed.get_mut(&entity.name) {
                Some(known) => known.merge(page),
                None => {
                    out.refreshed.insert(entity.name.clone(), page);
                }
            }
            if n < per_page {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(id: i64) -> Map<String, Json> {
        json!({"type": "Shot", "id": id})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn splits_active_and_retired_and_retires_the_gone() {
        let r = Refreshed::from_records(
            "Shot",
            [1, 2, 3, 4],
            vec![(record(2), false), (record(1), true), (record(4), true)],
        );
        assert_eq!(r.gone().collect::<Vec<_>>(), vec![3]);
        let ops = r.ops(Some(9), Gone::Retire);
        assert_eq!(ops.len(), 3);
        let WriteOp::Upsert {
            records,
            active: Some(true),
            event_id: Some(9),
            ..
        } = &ops[0]
        else {
            panic!("active upsert first: {ops:?}");
        };
        assert_eq!(records, &vec![record(1), record(4)]);
        assert!(
            matches!(&ops[1], WriteOp::Upsert { records, active: Some(false), .. } if records == &vec![record(2)])
        );
        assert!(matches!(
            &ops[2],
            WriteOp::SetActive {
                id: 3,
                active: false,
                event_id: Some(9),
                ..
            }
        ));
        // Kept: no retirement.
        assert_eq!(r.ops(None, Gone::Keep).len(), 2);
    }

    #[test]
    fn the_fields_that_may_link_to_a_type() {
        let schema = crate::actors::fixture::schema(&["Shot", "Asset", "Sequence"]);
        let to_asset: Vec<(&str, &str)> = fields_linking_to(&schema, "Asset")
            .map(|(e, f)| (e.name.as_str(), f))
            .collect();
        assert!(to_asset.contains(&("Shot", "assets")), "{to_asset:?}");
        assert!(
            fields_linking_to(&schema, "Sequence")
                .any(|(e, f)| (e.name.as_str(), f) == ("Shot", "sg_sequence"))
        );
        assert_eq!(fields_linking_to(&schema, "Reading").count(), 0);
        let found = Refreshed::from_records("Shot", [1], vec![(record(1), true)]);
        let relinked = Relinked {
            refreshed: BTreeMap::from([("Shot".to_owned(), found)]),
            rows: 1,
            truncated: false,
        };
        assert!(matches!(
            &relinked.ops(Some(4))[..],
            [WriteOp::Upsert {
                active: Some(true),
                event_id: Some(4),
                ..
            }]
        ));
    }

    #[test]
    fn only_restricts_found_and_asked() {
        let mut r = Refreshed::from_records("Shot", [1], vec![(record(1), true)]);
        r.merge(Refreshed::from_records(
            "Shot",
            [5, 6],
            vec![(record(5), true)],
        ));
        let r = r.only(&BTreeSet::from([5, 6, 7]));
        assert_eq!(r.found.keys().copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!(r.gone().collect::<Vec<_>>(), vec![6, 7]);
        assert!(Refreshed::default().ops(None, Gone::Retire).is_empty());
    }
}
