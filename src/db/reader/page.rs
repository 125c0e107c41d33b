//! Runs a compiled read on the reader pool and shapes the `results` value.
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::{Value as Json, json};

use super::decode;
use crate::query::CompiledRead;
use crate::query::select;

/// Runs a compiled read; returns the `results` value
/// `{"entities": [...], "paging_info": {"entity_count": N, "has_next_page": bool}}`.
pub async fn execute(read: &CompiledRead, db: &DatabaseConnection) -> Result<Json, DbErr> {
    let rows = db.query_all_raw(read.page.statement(read.dialect)).await?;
    let total: i64 = match rows.first() {
        Some(r) => r.try_get("", select::TOTAL)?,
        None if read.current_page <= 1 => 0,
        None => match db.query_one_raw(read.count.statement(read.dialect)).await? {
            Some(r) => r.try_get("", select::TOTAL)?,
            None => 0,
        },
    };
    let entities = rows
        .iter()
        .map(|r| decode::entity(r, &read.entity_type, &read.fields))
        .collect::<Result<Vec<_>, _>>()?;
    let end = i64::from(read.current_page) * i64::from(read.entities_per_page);
    Ok(json!({
        "entities": entities,
        "paging_info": {"entity_count": total, "has_next_page": total > end},
    }))
}
