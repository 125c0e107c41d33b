//! Wire JSON → column values, for the code that writes cache rows.

use sea_orm::sea_query::Value;
use serde_json::Value as Json;

use super::cached::{CachedField, ColumnLayout, SqlType};
use super::kind::FieldKind;

/// A wire value that cannot be stored in a field's column(s).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct ValueError {
    /// The field name (`"<link>"` when the caller did not say).
    pub field: String,
    pub problem: String,
}

impl ValueError {
    fn new(field: &str, problem: impl Into<String>) -> ValueError {
        ValueError {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    /// The same error, attributed to `field`.
    pub fn in_field(mut self, field: &str) -> ValueError {
        self.field = field.to_owned();
        self
    }
}

const LINK: &str = "<link>";

fn describe(v: &Json) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let mut cut = 60;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn is_date_time(s: &str) -> bool {
    s.len() == 20 && chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").is_ok()
}

/// The column value of a scalar field from its wire JSON value.
///
/// `null` gives a typed SQL NULL, except for a NOT NULL column (a checkbox whose site default is
/// a boolean). Integers must fit in an `i64` (an
/// integral float is accepted); dates must be `YYYY-MM-DD` and date-times `YYYY-MM-DDTHH:MM:SSZ`.
pub fn scalar_value(field: &CachedField, v: &Json) -> Result<Value, ValueError> {
    let err = |p: String| ValueError::new(&field.name, p);
    let ColumnLayout::Scalar { sql, not_null, .. } = &field.layout else {
        return Err(err(format!(
            "{} field is not stored as a scalar column",
            field.data_type
        )));
    };
    if v.is_null() {
        return match sql {
            _ if *not_null => Err(err(format!("{} cannot be null", field.data_type))),
            SqlType::Text => Ok(Value::String(None)),
            SqlType::BigInt => Ok(Value::BigInt(None)),
            SqlType::Double => Ok(Value::Double(None)),
            SqlType::Boolean => Ok(Value::Bool(None)),
        };
    }
    match sql {
        SqlType::Text => {
            let s = v.as_str().ok_or_else(|| {
                err(format!(
                    "expected a string for {}, got {}",
                    field.data_type,
                    describe(v)
                ))
            })?;
            match field.kind {
                FieldKind::Date if !is_date(s) => {
                    Err(err(format!("expected a date YYYY-MM-DD, got {s:?}")))
                }
                FieldKind::DateTime if !is_date_time(s) => Err(err(format!(
                    "expected a date_time YYYY-MM-DDTHH:MM:SSZ, got {s:?}"
                ))),
                _ => Ok(Value::String(Some(s.to_owned()))),
            }
        }
        SqlType::BigInt => {
            if let Some(i) = v.as_i64() {
                return Ok(Value::BigInt(Some(i)));
            }
            if v.is_u64() {
                return Err(err(format!("integer {v} is out of range")));
            }
            match v.as_f64() {
                Some(f)
                    // i64::MAX as f64 is exactly 2^63, an exclusive bound.
                    if f.fract() == 0.0 && (i64::MIN as f64..i64::MAX as f64).contains(&f) =>
                {
                    Ok(Value::BigInt(Some(f as i64)))
                }
                Some(f) => Err(err(format!("expected an integer, got {f}"))),
                None => Err(err(format!("expected an integer, got {}", describe(v)))),
            }
        }
        SqlType::Double => v
            .as_f64()
            .map(|f| Value::Double(Some(f)))
            .ok_or_else(|| err(format!("expected a number, got {}", describe(v)))),
        SqlType::Boolean => v
            .as_bool()
            .map(|b| Value::Bool(Some(b)))
            .ok_or_else(|| err(format!("expected true or false, got {}", describe(v)))),
    }
}

/// An entity link: `null` → `None`, `{"type": "Shot", "id": 12, …}` → `Some(("Shot", 12))`.
/// Extra keys (`name`, `valid`, …) are ignored. Errors name the field `<link>`; use
/// [`ValueError::in_field`] to attribute them.
pub fn entity_value(v: &Json) -> Result<Option<(String, i64)>, ValueError> {
    if v.is_null() {
        return Ok(None);
    }
    let obj = v.as_object().ok_or_else(|| {
        ValueError::new(
            LINK,
            format!("expected a link {{type, id}} or null, got {}", describe(v)),
        )
    })?;
    let ty = obj
        .get("type")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ValueError::new(LINK, format!("link without a type: {}", describe(v))))?;
    let id = obj.get("id").and_then(Json::as_i64).ok_or_else(|| {
        ValueError::new(LINK, format!("link without an integer id: {}", describe(v)))
    })?;
    Ok(Some((ty.to_owned(), id)))
}

/// A multi-entity value: a list of links, in order; `null` → empty.
pub fn multi_entity_value(v: &Json) -> Result<Vec<(String, i64)>, ValueError> {
    match v {
        Json::Null => Ok(vec![]),
        Json::Array(items) => items
            .iter()
            .map(|item| {
                entity_value(item)?.ok_or_else(|| {
                    ValueError::new(LINK, "null inside a multi-entity list".to_owned())
                })
            })
            .collect(),
        other => Err(ValueError::new(
            LINK,
            format!("expected a list of links, got {}", describe(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str, kind: FieldKind) -> CachedField {
        CachedField {
            name: name.into(),
            kind,
            data_type: kind.data_type().into(),
            valid_types: vec![],
            layout: ColumnLayout::for_field("t", name, kind).unwrap(),
        }
    }

    #[test]
    fn scalars_accept() {
        let text = field("code", FieldKind::Text);
        assert_eq!(
            scalar_value(&text, &json!("a&b")).unwrap(),
            Value::String(Some("a&b".into()))
        );
        assert_eq!(
            scalar_value(&text, &json!(null)).unwrap(),
            Value::String(None)
        );
        let n = field("n", FieldKind::Number);
        assert_eq!(
            scalar_value(&n, &json!(42)).unwrap(),
            Value::BigInt(Some(42))
        );
        assert_eq!(
            scalar_value(&n, &json!(-7)).unwrap(),
            Value::BigInt(Some(-7))
        );
        assert_eq!(
            scalar_value(&n, &json!(3.0)).unwrap(),
            Value::BigInt(Some(3))
        );
        assert_eq!(scalar_value(&n, &json!(null)).unwrap(), Value::BigInt(None));
        assert_eq!(
            scalar_value(&field("d", FieldKind::Duration), &json!(i64::MAX)).unwrap(),
            Value::BigInt(Some(i64::MAX))
        );
        let f = field("f", FieldKind::Float);
        assert_eq!(
            scalar_value(&f, &json!(1.5)).unwrap(),
            Value::Double(Some(1.5))
        );
        assert_eq!(
            scalar_value(&f, &json!(2)).unwrap(),
            Value::Double(Some(2.0))
        );
        assert_eq!(
            scalar_value(&field("c", FieldKind::Currency), &json!(null)).unwrap(),
            Value::Double(None)
        );
        let cb = field("cb", FieldKind::Checkbox);
        assert_eq!(
            scalar_value(&cb, &json!(true)).unwrap(),
            Value::Bool(Some(true))
        );
        assert_eq!(
            scalar_value(&field("d", FieldKind::Date), &json!("2024-02-29")).unwrap(),
            Value::String(Some("2024-02-29".into()))
        );
        assert_eq!(
            scalar_value(
                &field("dt", FieldKind::DateTime),
                &json!("2015-07-13T22:32:35Z")
            )
            .unwrap(),
            Value::String(Some("2015-07-13T22:32:35Z".into()))
        );
        assert_eq!(
            scalar_value(&field("s", FieldKind::StatusList), &json!("ip")).unwrap(),
            Value::String(Some("ip".into()))
        );
        assert_eq!(
            scalar_value(&field("id", FieldKind::Number), &json!(5)).unwrap(),
            Value::BigInt(Some(5))
        );
    }

    #[test]
    fn scalars_reject() {
        let mut cb = field("cb", FieldKind::Checkbox);
        // Nullable unless the site gives a boolean default.
        assert_eq!(scalar_value(&cb, &json!(null)).unwrap(), Value::Bool(None));
        cb.layout = cb.layout.not_null();
        let e = scalar_value(&cb, &json!(null)).unwrap_err();
        assert_eq!(e.to_string(), "field cb: checkbox cannot be null");
        assert!(scalar_value(&cb, &json!(1)).is_err());
        let n = field("n", FieldKind::Number);
        assert!(
            scalar_value(&n, &json!(u64::MAX))
                .unwrap_err()
                .problem
                .contains("out of range")
        );
        assert!(scalar_value(&n, &json!(1.5)).is_err());
        assert!(scalar_value(&n, &json!(1e300)).is_err());
        assert!(scalar_value(&n, &json!("12")).is_err());
        assert!(scalar_value(&field("f", FieldKind::Float), &json!("1.5")).is_err());
        assert!(scalar_value(&field("code", FieldKind::Text), &json!(12)).is_err());
        let d = field("d", FieldKind::Date);
        for bad in [
            "2024-2-1",
            "2024-02-30",
            "2024-02-01T00:00:00Z",
            "01/02/2024",
            "",
        ] {
            let e = scalar_value(&d, &json!(bad)).unwrap_err();
            assert!(e.problem.contains("YYYY-MM-DD"), "{bad}: {e}");
            assert_eq!(e.field, "d");
        }
        let dt = field("dt", FieldKind::DateTime);
        for bad in [
            "2015-07-13 22:32:35 UTC",
            "2015-07-13T22:32:35+00:00",
            "2015-07-13T22:32:35.123Z",
            "2015-07-13 22:32:35Z",
            "2015-07-13",
        ] {
            assert!(scalar_value(&dt, &json!(bad)).is_err(), "{bad}");
        }
        let link = field("project", FieldKind::Entity);
        assert!(
            scalar_value(&link, &json!(null))
                .unwrap_err()
                .problem
                .contains("not stored as a scalar")
        );
    }

    #[test]
    fn links() {
        assert_eq!(entity_value(&json!(null)).unwrap(), None);
        assert_eq!(
            entity_value(&json!({"type": "Shot", "id": 12, "name": "sh010", "valid": "valid"}))
                .unwrap(),
            Some(("Shot".into(), 12))
        );
        for bad in [
            json!({"id": 1}),
            json!({"type": "Shot"}),
            json!({"type": "", "id": 1}),
            json!({"type": "Shot", "id": "1"}),
            json!(12),
            json!("Shot"),
        ] {
            let e = entity_value(&bad).unwrap_err();
            assert_eq!(e.field, "<link>");
            assert_eq!(e.clone().in_field("project").field, "project");
        }
        assert_eq!(multi_entity_value(&json!(null)).unwrap(), vec![]);
        assert_eq!(multi_entity_value(&json!([])).unwrap(), vec![]);
        assert_eq!(
            multi_entity_value(
                &json!([{"type": "Asset", "id": 3, "name": "a"}, {"type": "Shot", "id": 1}])
            )
            .unwrap(),
            vec![("Asset".into(), 3), ("Shot".into(), 1)]
        );
        assert!(multi_entity_value(&json!([null])).is_err());
        assert!(multi_entity_value(&json!([{"type": "Asset"}])).is_err());
        assert!(multi_entity_value(&json!({"type": "Asset", "id": 1})).is_err());
    }
}
