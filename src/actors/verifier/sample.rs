//! `sgcache verify --sample N` (run by [`crate::commands`]): random cached rows of each type
//! compared, every cached field, with what the site has now.
use std::collections::BTreeMap;

use super::compare::row_differences;
use crate::db::reader::rows;
use crate::schema::{CachedEntity, CachedSchema};
use crate::upstream::UpstreamClient;
use crate::upstream::refresh::refresh;

/// How many mismatching ids a report lists.
const IDS_SHOWN: usize = 20;

/// One type's result of `sgcache verify`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SampleReport {
    pub entity_type: String,
    pub checked: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Mismatching rows per field (`_active`: retirement; `(missing)`: the site lacks the row).
    pub fields: BTreeMap<String, u64>,
    /// Some of the mismatching ids.
    pub ids: Vec<i64>,
}

impl SampleReport {
    fn add(&mut self, id: i64, differences: Vec<String>) {
        self.checked += 1;
        if differences.is_empty() {
            self.matched += 1;
            return;
        }
        self.mismatched += 1;
        if self.ids.len() < IDS_SHOWN {
            self.ids.push(id);
        }
        for f in differences {
            *self.fields.entry(f).or_default() += 1;
        }
    }
}

/// Compares `sample` random cached rows of each type with the site.
pub async fn verify_sample(
    upstream: &UpstreamClient,
    db: &sea_orm::DatabaseConnection,
    schema: &CachedSchema,
    sample: u64,
) -> anyhow::Result<Vec<SampleReport>> {
    let mut reports = Vec::new();
    for entity in schema.types.values() {
        reports.push(sample_type(upstream, db, entity, sample).await?);
    }
    Ok(reports)
}

async fn sample_type(
    upstream: &UpstreamClient,
    db: &sea_orm::DatabaseConnection,
    entity: &CachedEntity,
    sample: u64,
) -> anyhow::Result<SampleReport> {
    let ids = rows::random_ids(db, entity, sample).await?;
    let cached = rows::cached_rows(db, entity, &ids).await?;
    let site = refresh(upstream, entity, &ids.iter().copied().collect()).await?;
    let mut report = SampleReport {
        entity_type: entity.name.clone(),
        ..Default::default()
    };
    for (id, row) in &cached {
        report.add(*id, row_differences(entity, row, site.get(*id)));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_rows_and_fields_and_lists_some_ids() {
        let mut report = SampleReport::default();
        report.add(1, vec![]);
        for id in 2..(IDS_SHOWN as i64 + 5) {
            report.add(id, vec!["code".into(), "_active".into()]);
        }
        assert_eq!(report.checked, IDS_SHOWN as u64 + 4);
        assert_eq!(report.matched, 1);
        assert_eq!(report.mismatched, IDS_SHOWN as u64 + 3);
        assert_eq!(report.fields["code"], IDS_SHOWN as u64 + 3);
        assert_eq!(report.ids.len(), IDS_SHOWN);
        assert_eq!(report.ids[0], 2);
    }
}
