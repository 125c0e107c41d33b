//! Outbound reads: the one builder of `read` arguments ([`ReadArgs`]), the entities of a
//! reply, and whole cached entities of a type by id ([`fetch_by_ids`]).
use serde_json::{Map, Value as Json, json};

use super::{UpstreamClient, UpstreamError};
use crate::schema::CachedEntity;

/// Ids per `read` (`id in [...]`), one page of the site's default size.
pub const IDS_PER_READ: usize = 500;

/// `return_only` of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnOnly {
    Active,
    Retired,
}

impl ReturnOnly {
    pub fn name(self) -> &'static str {
        match self {
            ReturnOnly::Active => "active",
            ReturnOnly::Retired => "retired",
        }
    }
}

/// One leaf condition of an outbound read's filters.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub path: String,
    pub relation: &'static str,
    pub values: Json,
}

impl Condition {
    pub fn new(path: &str, relation: &'static str, values: Json) -> Condition {
        Condition {
            path: path.to_owned(),
            relation,
            values,
        }
    }

    fn to_json(&self) -> Json {
        json!({"path": self.path, "relation": self.relation, "values": self.values})
    }
}

/// The arguments of one outbound `read`: an `and` of leaf conditions, return fields, one sort
/// on a field, one page. [`ReadArgs::build`] gives the wire JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadArgs {
    entity_type: String,
    conditions: Vec<Condition>,
    fields: Vec<String>,
    return_only: ReturnOnly,
    sort: (String, &'static str),
    per_page: u32,
    page: u32,
    paging_info: Option<bool>,
}

impl ReadArgs {
    /// A read of `entity_type` returning `id`, active rows, sorted by id ascending, first page
    /// of [`IDS_PER_READ`].
    pub fn new(entity_type: &str) -> ReadArgs {
        ReadArgs {
            entity_type: entity_type.to_owned(),
            conditions: Vec::new(),
            fields: vec!["id".to_owned()],
            return_only: ReturnOnly::Active,
            sort: ("id".to_owned(), "asc"),
            per_page: IDS_PER_READ as u32,
            page: 1,
            paging_info: None,
        }
    }

    /// A read of `entity` returning every cached field.
    pub fn whole(entity: &CachedEntity) -> ReadArgs {
        ReadArgs::new(&entity.name).fields(entity.fields.keys().cloned())
    }

    pub fn fields(mut self, fields: impl IntoIterator<Item = String>) -> ReadArgs {
        self.fields = fields.into_iter().collect();
        self
    }

    /// Adds `{"path", "relation", "values"}` to the `and` of conditions.
    pub fn filter(self, path: &str, relation: &'static str, values: Json) -> ReadArgs {
        self.condition(Condition::new(path, relation, values))
    }

    /// Adds an already built condition.
    pub fn condition(mut self, condition: Condition) -> ReadArgs {
        self.conditions.push(condition);
        self
    }

    /// Adds every condition of `conditions`.
    pub fn conditions<'a>(
        mut self,
        conditions: impl IntoIterator<Item = &'a Condition>,
    ) -> ReadArgs {
        self.conditions.extend(conditions.into_iter().cloned());
        self
    }

    pub fn return_only(mut self, return_only: ReturnOnly) -> ReadArgs {
        self.return_only = return_only;
        self
    }

    /// Sorts by `field`, descending when `descending`.
    pub fn sort(mut self, field: &str, descending: bool) -> ReadArgs {
        self.sort = (field.to_owned(), if descending { "desc" } else { "asc" });
        self
    }

    pub fn page(mut self, per_page: u32, page: u32) -> ReadArgs {
        self.per_page = per_page;
        self.page = page;
        self
    }

    /// Sets `return_paging_info` (left out unless set).
    pub fn paging_info(mut self, on: bool) -> ReadArgs {
        self.paging_info = Some(on);
        self
    }

    pub fn build(self) -> Json {
        let conditions: Vec<Json> = self.conditions.iter().map(Condition::to_json).collect();
        let mut args = json!({
            "type": self.entity_type,
            "filters": {"logical_operator": "and", "conditions": conditions},
            "return_fields": self.fields,
            "return_only": self.return_only.name(),
            "sorts": [{"field_name": self.sort.0, "direction": self.sort.1}],
            "paging": {"entities_per_page": self.per_page, "current_page": self.page},
        });
        if let Some(on) = self.paging_info {
            args["return_paging_info"] = json!(on);
        }
        args
    }
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

/// Runs one `read` and returns its entities.
pub async fn read(
    client: &UpstreamClient,
    args: ReadArgs,
) -> Result<Vec<Map<String, Json>>, UpstreamError> {
    entities_of(&mut client.call("read", Some(args.build())).await?)
}

/// Every cached field of the entities `ids`, active ones first, then retired ones for the ids
/// not found active. Each record comes with whether it is active. Ids the site does not
/// have at all are simply absent.
pub async fn fetch_by_ids(
    client: &UpstreamClient,
    entity: &CachedEntity,
    ids: &[i64],
) -> Result<Vec<(Map<String, Json>, bool)>, UpstreamError> {
    let by_ids = |ids: &[i64], return_only| {
        ReadArgs::whole(entity)
            .filter("id", "in", json!(ids))
            .return_only(return_only)
    };
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_READ) {
        let active = read(client, by_ids(chunk, ReturnOnly::Active)).await?;
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
            let retired = read(client, by_ids(&missing, ReturnOnly::Retired)).await?;
            found.extend(retired.into_iter().map(|r| (r, false)));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_wire_arguments() {
        let args = ReadArgs::new("Shot")
            .fields(["id".to_owned(), "code".to_owned()])
            .filter("id", "greater_than", json!([5]))
            .return_only(ReturnOnly::Retired)
            .page(100, 2)
            .paging_info(true)
            .build();
        assert_eq!(
            args,
            json!({
                "type": "Shot",
                "filters": {"logical_operator": "and",
                            "conditions": [{"path": "id", "relation": "greater_than", "values": [5]}]},
                "return_fields": ["id", "code"],
                "return_only": "retired",
                "sorts": [{"field_name": "id", "direction": "asc"}],
                "paging": {"entities_per_page": 100, "current_page": 2},
                "return_paging_info": true,
            })
        );
        let newest = ReadArgs::new("EventLogEntry").sort("id", true).build();
        assert_eq!(newest["sorts"][0]["direction"], "desc");
        assert!(newest.get("return_paging_info").is_none());
        assert_eq!(newest["filters"]["conditions"], json!([]));
    }
}
