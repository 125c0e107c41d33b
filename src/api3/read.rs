//! The parameters of a `read` call (§2.3 of the API reference), parsed strictly.
use serde_json::{Map, Value};

use super::filters::{FilterNode, brief};
use crate::error::ApiError;

/// Largest `entities_per_page` accepted.
pub const MAX_PER_PAGE: u32 = 100_000;
/// Largest `current_page` accepted.
pub const MAX_PAGE: u32 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnOnly {
    #[default]
    Active,
    Retired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReadRequest {
    pub entity_type: String,
    pub filters: FilterNode,
    pub return_fields: Vec<String>,
    pub sorts: Vec<Sort>,
    pub entities_per_page: u32,
    pub current_page: u32,
    pub return_only: ReturnOnly,
    /// Default `true` (the site's default).
    pub include_archived_projects: bool,
    /// `additional_filter_presets` was present (and not null or empty).
    pub has_presets: bool,
    /// `return_paging_info_without_counts: true` (the official client's paging loop): the
    /// reply needs `has_next_page` only, no `entity_count`.
    pub without_counts: bool,
}

fn err(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("API read() {msg}"))
}

fn paging_int(
    paging: &serde_json::Map<String, Value>,
    key: &str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match paging.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            let n = v.as_i64().ok_or_else(|| {
                err(format_args!(
                    "paging.{key} must be an integer, got {}",
                    brief(v)
                ))
            })?;
            if n < 1 || n > max as i64 {
                return Err(err(format_args!(
                    "paging.{key} must be between 1 and {max}, got {n}"
                )));
            }
            Ok(n as u32)
        }
    }
}

impl ReadRequest {
    /// Parses `params[1]` of a `read` call. Wrong types anywhere give a fault.
    pub fn parse(args: &Value) -> Result<ReadRequest, ApiError> {
        let obj = args.as_object().ok_or_else(|| {
            err(format_args!(
                "expects a hash of parameters, got {}",
                brief(args)
            ))
        })?;
        let entity_type = match obj.get("type") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                return Err(err(format_args!(
                    "'type' must be a non-empty string, got {}",
                    brief(other)
                )));
            }
            None => return Err(err("requires an entity 'type'")),
        };
        let filters = FilterNode::parse(obj.get("filters").unwrap_or(&Value::Null))?;
        let return_fields = parse_return_fields(obj)?;
        let return_only = parse_return_only(obj)?;
        let (entities_per_page, current_page) = parse_paging(obj)?;
        let sorts = match obj.get("sorts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(parse_sort).collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(err(format_args!(
                    "sorts must be a list, got {}",
                    brief(other)
                )));
            }
        };
        let include_archived_projects = match obj.get("include_archived_projects") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(err(format_args!(
                    "include_archived_projects must be true or false, got {}",
                    brief(other)
                )));
            }
        };
        let has_presets = match obj.get("additional_filter_presets") {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        let without_counts = obj
            .get("return_paging_info_without_counts")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ReadRequest {
            entity_type,
            filters,
            return_fields,
            sorts,
            entities_per_page,
            current_page,
            return_only,
            include_archived_projects,
            has_presets,
            without_counts,
        })
    }
}

fn parse_return_fields(obj: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let value = match obj.get("return_fields") {
        None | Some(Value::Null) => vec!["id".to_owned()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    err(format_args!(
                        "return_fields must be strings, got {}",
                        brief(x)
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(err(format_args!(
                "return_fields must be a list, got {}",
                brief(other)
            )));
        }
    };
    Ok(value)
}

fn parse_return_only(obj: &Map<String, Value>) -> Result<ReturnOnly, ApiError> {
    let value = match obj.get("return_only") {
        None | Some(Value::Null) => ReturnOnly::Active,
        Some(Value::String(s)) if s == "active" => ReturnOnly::Active,
        Some(Value::String(s)) if s == "retired" => ReturnOnly::Retired,
        Some(other) => {
            return Err(err(format_args!(
                "return_only must be \"active\" or \"retired\", got {}",
                brief(other)
            )));
        }
    };
    Ok(value)
}

fn parse_paging(obj: &Map<String, Value>) -> Result<(u32, u32), ApiError> {
    let value = match obj.get("paging") {
        None | Some(Value::Null) => (500, 1),
        Some(Value::Object(p)) => (
            paging_int(p, "entities_per_page", 500, MAX_PER_PAGE)?,
            paging_int(p, "current_page", 1, MAX_PAGE)?,
        ),
        Some(other) => {
            return Err(err(format_args!(
                "paging must be a hash, got {}",
                brief(other)
            )));
        }
    };
    Ok(value)
}

fn parse_sort(v: &Value) -> Result<Sort, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| err(format_args!("each sort must be a hash, got {}", brief(v))))?;
    let field = match obj.get("field_name").or_else(|| obj.get("column")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(err(format_args!(
                "each sort needs a string field_name, got {}",
                brief(v)
            )));
        }
    };
    let descending = match obj.get("direction") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "asc" => false,
        Some(Value::String(s)) if s == "desc" => true,
        Some(other) => {
            return Err(err(format_args!(
                "sort direction must be \"asc\" or \"desc\", got {}",
                brief(other)
            )));
        }
    };
    Ok(Sort { field, descending })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_full_request() {
        let r = ReadRequest::parse(&json!({
            "type": "Shot",
            "filters": {"logical_operator": "and", "conditions": [
                {"path": "code", "relation": "is", "values": ["a"]}]},
            "return_fields": ["code", "sg_sequence.Sequence.code"],
            "return_only": "retired",
            "paging": {"entities_per_page": 50, "current_page": 3},
            "sorts": [{"field_name": "code", "direction": "desc"}, {"column": "id"}],
            "api_return_image_urls": true,
            "return_paging_info_without_counts": true,
            "include_archived_projects": false,
        }))
        .unwrap();
        assert_eq!(r.entity_type, "Shot");
        assert_eq!(r.filters.condition_count(), 1);
        assert_eq!(r.return_fields, ["code", "sg_sequence.Sequence.code"]);
        assert_eq!(r.return_only, ReturnOnly::Retired);
        assert_eq!((r.entities_per_page, r.current_page), (50, 3));
        assert_eq!(
            r.sorts,
            [
                Sort {
                    field: "code".into(),
                    descending: true
                },
                Sort {
                    field: "id".into(),
                    descending: false
                }
            ]
        );
        assert!(!r.include_archived_projects);
        assert!(!r.has_presets);
    }

    #[test]
    fn defaults() {
        let r = ReadRequest::parse(&json!({"type": "Shot"})).unwrap();
        assert_eq!(r.return_fields, ["id"]);
        assert_eq!((r.entities_per_page, r.current_page), (500, 1));
        assert_eq!(r.return_only, ReturnOnly::Active);
        assert!(r.include_archived_projects);
        assert_eq!(r.filters, FilterNode::default());
        let r = ReadRequest::parse(&json!({"type": "Shot",
            "additional_filter_presets": [{"preset_name": "LATEST"}]}))
        .unwrap();
        assert!(r.has_presets);
    }

    #[test]
    fn rejects_bad_inputs() {
        let cases = [
            (json!([1]), "expects a hash"),
            (json!({}), "requires an entity 'type'"),
            (json!({"type": 5}), "'type' must be"),
            (
                json!({"type": "Shot", "return_fields": "code"}),
                "return_fields must be a list",
            ),
            (
                json!({"type": "Shot", "return_fields": [1]}),
                "return_fields must be strings",
            ),
            (json!({"type": "Shot", "return_only": "all"}), "return_only"),
            (
                json!({"type": "Shot", "paging": 5}),
                "paging must be a hash",
            ),
            (
                json!({"type": "Shot", "paging": {"entities_per_page": 0}}),
                "between 1 and 100000",
            ),
            (
                json!({"type": "Shot", "paging": {"entities_per_page": -3}}),
                "between",
            ),
            (
                json!({"type": "Shot", "paging": {"entities_per_page": 100001}}),
                "between",
            ),
            (
                json!({"type": "Shot", "paging": {"entities_per_page": "5"}}),
                "must be an integer",
            ),
            (
                json!({"type": "Shot", "paging": {"current_page": 0}}),
                "current_page",
            ),
            (
                json!({"type": "Shot", "paging": {"current_page": 10_000_001}}),
                "current_page",
            ),
            (
                json!({"type": "Shot", "paging": {"current_page": 1.5}}),
                "must be an integer",
            ),
            (json!({"type": "Shot", "sorts": {}}), "sorts must be a list"),
            (
                json!({"type": "Shot", "sorts": [{"direction": "asc"}]}),
                "field_name",
            ),
            (
                json!({"type": "Shot", "sorts": [{"field_name": "code", "direction": "up"}]}),
                "direction",
            ),
            (
                json!({"type": "Shot", "include_archived_projects": "no"}),
                "include_archived_projects",
            ),
            (json!({"type": "Shot", "filters": 7}), "filters must be"),
        ];
        for (v, want) in cases {
            let e = ReadRequest::parse(&v).unwrap_err();
            assert!(e.message.contains(want), "{v}: {}", e.message);
        }
    }
}
