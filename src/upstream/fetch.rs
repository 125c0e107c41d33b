//! Reading whole cached entities from the site: the full cached field set of a type, by id.
use serde_json::{Map, Value as Json, json};

use super::{UpstreamClient, UpstreamError};
use crate::schema::CachedEntity;

/// Ids per `read` (`id in [...]`), one page of the site's default size.
const IDS_PER_READ: usize = 500;

/// `{"logical_operator": "and", "conditions": [...]}` from leaf conditions.
pub fn and_filter(conditions: Vec<Json>) -> Json {
    json!({"logical_operator": "and", "conditions": conditions})
}

/// The `read` arguments for one page of `entity` with every cached field, sorted by id.
pub fn read_args(
    entity: &CachedEntity,
    filters: Json,
    retired: bool,
    per_page: u32,
    page: u32,
) -> Json {
    let fields: Vec<&str> = entity.fields.keys().map(String::as_str).collect();
    json!({
        "type": entity.name,
        "filters": filters,
        "return_fields": fields,
        "return_only": if retired { "retired" } else { "active" },
        "sorts": [{"field_name": "id", "direction": "asc"}],
        "paging": {"entities_per_page": per_page, "current_page": page},
    })
}

/// The entities of one `read` reply, as records (moved out of the reply, not copied).
pub fn entities_of(results: &mut Json) -> Result<Vec<Map<String, Json>>, UpstreamError> {
    let Some(Json::Array(entities)) = results.get_mut("entities").map(Json::take) else {
        return Err(UpstreamError::Decode(
            "a read reply without an entities list".to_owned(),
        ));
    };
    entities
        .into_iter()
        .map(|e| match e {
            Json::Object(record) => Ok(record),
            _ => Err(UpstreamError::Decode(
                "an entity that is not an object".to_owned(),
            )),
        })
        .collect()
}

/// Every cached field of the entities `ids`, active ones first, then retired ones for the ids
/// not found active. Each record comes with whether it is active. Ids the site does not
/// have at all are simply absent.
pub async fn fetch_by_ids(
    client: &UpstreamClient,
    entity: &CachedEntity,
    ids: &[i64],
) -> Result<Vec<(Map<String, Json>, bool)>, UpstreamError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_READ) {
        let filter = and_filter(vec![
            json!({"path": "id", "relation": "in", "values": chunk}),
        ]);
        let active = entities_of(
            &mut client
                .call(
                    "read",
                    Some(read_args(entity, filter, false, IDS_PER_READ as u32, 1)),
                )
                .await?,
        )?;
        let seen: std::collections::BTreeSet<i64> = active
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_i64))
            .collect();
        let missing: Vec<i64> = chunk
            .iter()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        found.extend(active.into_iter().map(|r| (r, true)));
        if !missing.is_empty() {
            let filter = and_filter(vec![
                json!({"path": "id", "relation": "in", "values": missing}),
            ]);
            let retired = entities_of(
                &mut client
                    .call(
                        "read",
                        Some(read_args(entity, filter, true, IDS_PER_READ as u32, 1)),
                    )
                    .await?,
            )?;
            found.extend(retired.into_iter().map(|r| (r, false)));
        }
    }
    Ok(found)
}
