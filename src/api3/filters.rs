//! Read filters in their wire form (§5.1 of the API reference): a tree of
//! `{logical_operator, conditions}` groups and `{path, relation, values}` leaves.
//!
//! [`FilterNode::parse`] also accepts the client-side list form (`[[path, relation, values...],
//! ...]`, top level ANDed) and the `{filter_operator, filters}` dialect inside it. Parsing is
//! purely structural: whether paths and relations make sense is decided by the query planner.
use serde_json::Value;

use crate::error::ApiError;

/// Deepest nesting of groups accepted.
pub const MAX_DEPTH: usize = 32;
/// Most leaf conditions accepted in one filter tree.
pub const MAX_CONDITIONS: usize = 10_000;
/// Most ids an `id in` filter may list for [`FilterNode::pins_ids`].
pub const PINNED_IDS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalOp {
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FilterNode {
    Group {
        op: LogicalOp,
        conditions: Vec<FilterNode>,
    },
    Condition {
        path: String,
        relation: String,
        values: Vec<Value>,
    },
}

impl Default for FilterNode {
    /// The empty filter: matches every row.
    fn default() -> FilterNode {
        FilterNode::Group {
            op: LogicalOp::And,
            conditions: Vec::new(),
        }
    }
}

fn err(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("API read() {msg}"))
}

/// A short rendering of a JSON value for error messages.
pub(crate) fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

struct Parser {
    conditions: usize,
}

impl FilterNode {
    /// Parses a wire filter tree (or the list form); `null` is the empty filter.
    pub fn parse(v: &Value) -> Result<FilterNode, ApiError> {
        let mut p = Parser { conditions: 0 };
        match v {
            Value::Null => Ok(FilterNode::default()),
            Value::Array(items) => Ok(FilterNode::Group {
                op: LogicalOp::And,
                conditions: p.items(items, 1)?,
            }),
            Value::Object(_) => p.node(v, 0),
            other => Err(err(format_args!(
                "filters must be a hash or a list, got {}",
                brief(other)
            ))),
        }
    }

    /// Number of leaf conditions.
    pub fn condition_count(&self) -> usize {
        match self {
            FilterNode::Group { conditions, .. } => {
                conditions.iter().map(FilterNode::condition_count).sum()
            }
            FilterNode::Condition { .. } => 1,
        }
    }

    /// Whether the filter selects rows by primary key, at most [`PINNED_IDS`] of them: an `id`
    /// `is`/`in` condition of integers at the top, or in an `and` group at the top.
    pub fn pins_ids(&self) -> bool {
        match self {
            FilterNode::Group {
                op: LogicalOp::And,
                conditions,
            } => conditions.iter().any(FilterNode::pins_ids),
            FilterNode::Group { .. } => false,
            FilterNode::Condition {
                path,
                relation,
                values,
            } => {
                let ids: &[Value] = match values.as_slice() {
                    [Value::Array(inner)] => inner,
                    flat => flat,
                };
                path == "id"
                    && matches!(relation.as_str(), "is" | "in")
                    && !ids.is_empty()
                    && ids.len() <= PINNED_IDS
                    && ids.iter().all(Value::is_i64)
            }
        }
    }

    /// Every leaf, depth first.
    pub fn leaves(&self) -> Vec<(&str, &str, &[Value])> {
        let mut out = Vec::new();
        fn walk<'a>(n: &'a FilterNode, out: &mut Vec<(&'a str, &'a str, &'a [Value])>) {
            match n {
                FilterNode::Group { conditions, .. } => {
                    conditions.iter().for_each(|c| walk(c, out))
                }
                FilterNode::Condition {
                    path,
                    relation,
                    values,
                } => out.push((path, relation, values)),
            }
        }
        walk(self, &mut out);
        out
    }
}

impl Parser {
    fn items(&mut self, items: &[Value], depth: usize) -> Result<Vec<FilterNode>, ApiError> {
        if depth > MAX_DEPTH {
            return Err(err(format_args!(
                "filters are nested more than {MAX_DEPTH} levels deep"
            )));
        }
        items.iter().map(|i| self.node(i, depth)).collect()
    }

    fn leaf(
        &mut self,
        path: String,
        relation: String,
        values: Vec<Value>,
    ) -> Result<FilterNode, ApiError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(err(format_args!(
                "filters have more than {MAX_CONDITIONS} conditions"
            )));
        }
        if path.is_empty() {
            return Err(err("filter condition has an empty 'path'"));
        }
        if relation.is_empty() {
            return Err(err("filter condition has an empty 'relation'"));
        }
        Ok(FilterNode::Condition {
            path,
            relation,
            values,
        })
    }

    fn node(&mut self, v: &Value, depth: usize) -> Result<FilterNode, ApiError> {
        match v {
            // List-form leaf: [path, relation, v1, v2...] or [path, relation, [values]].
            Value::Array(arr) => {
                let (Some(Value::String(path)), Some(Value::String(rel))) =
                    (arr.first(), arr.get(1))
                else {
                    return Err(err(format_args!(
                        "invalid filter {}: expected [path, relation, values...]",
                        brief(v)
                    )));
                };
                let rest = &arr[2..];
                let values = match rest {
                    [Value::Array(a)] => a.clone(),
                    _ => rest.to_vec(),
                };
                self.leaf(path.clone(), rel.clone(), values)
            }
            Value::Object(obj) => {
                if obj.contains_key("conditions") || obj.contains_key("logical_operator") {
                    return self.group(obj, GROUP_WIRE, depth);
                }
                if obj.contains_key("filters") || obj.contains_key("filter_operator") {
                    return self.group(obj, GROUP_CLIENT, depth);
                }
                self.object_leaf(obj, v)
            }
            other => Err(err(format_args!(
                "invalid filter condition {}: expected a hash or a list",
                brief(other)
            ))),
        }
    }

    /// An and/or group in either spelling.
    fn group(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        keys: GroupKeys,
        depth: usize,
    ) -> Result<FilterNode, ApiError> {
        let op = match obj.get(keys.operator) {
            None | Some(Value::Null) => LogicalOp::And,
            Some(Value::String(s)) if s == "and" || s == "all" => LogicalOp::And,
            Some(Value::String(s)) if s == "or" || s == "any" => LogicalOp::Or,
            Some(other) => {
                return Err(err(format_args!(
                    "unknown {} {}: expected {}",
                    keys.operator,
                    brief(other),
                    keys.expected
                )));
            }
        };
        let conditions = match obj.get(keys.list) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => self.items(a, depth + 1)?,
            Some(other) => {
                return Err(err(format_args!(
                    "'{}' must be a list, got {}",
                    keys.list,
                    brief(other)
                )));
            }
        };
        Ok(FilterNode::Group { op, conditions })
    }

    /// A hash-form leaf: `{path, relation, values}`.
    fn object_leaf(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        v: &Value,
    ) -> Result<FilterNode, ApiError> {
        let text = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(err(format_args!(
                "filter '{key}' must be a string, got {}",
                brief(other)
            ))),
            None => Err(err(format_args!(
                "filter condition needs a '{key}': {}",
                brief(v)
            ))),
        };
        let path = text("path")?;
        let relation = text("relation")?;
        let values = match obj.get("values") {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(err(format_args!(
                    "filter 'values' must be a list, got {}",
                    brief(other)
                )));
            }
        };
        self.leaf(path, relation, values)
    }
}

/// The keys of an and/or group: the wire form and the client's (`find`) form.
#[derive(Clone, Copy)]
struct GroupKeys {
    operator: &'static str,
    list: &'static str,
    expected: &'static str,
}

const GROUP_WIRE: GroupKeys = GroupKeys {
    operator: "logical_operator",
    list: "conditions",
    expected: "\"and\" or \"or\"",
};

const GROUP_CLIENT: GroupKeys = GroupKeys {
    operator: "filter_operator",
    list: "filters",
    expected: "\"all\" or \"any\"",
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leaf(p: &str, r: &str, v: Vec<Value>) -> FilterNode {
        FilterNode::Condition {
            path: p.into(),
            relation: r.into(),
            values: v,
        }
    }

    #[test]
    fn filters_by_primary_key_pin_ids() {
        let pins = |f: Value| FilterNode::parse(&f).unwrap().pins_ids();
        assert!(pins(json!([["id", "is", 3]])));
        assert!(pins(json!([["code", "is", "a"], ["id", "in", [1, 2, 3]]])));
        assert!(pins(json!({"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "in", "values": [1, 2]}]})));
        assert!(!pins(json!([])));
        assert!(!pins(json!([["id", "greater_than", 3]])));
        assert!(!pins(json!([["id", "is", "3"]])));
        assert!(!pins(json!([["sg_sequence.Sequence.id", "is", 3]])));
        assert!(!pins(json!({"logical_operator": "or", "conditions": [
            {"path": "id", "relation": "is", "values": [1]},
            {"path": "code", "relation": "is", "values": ["a"]}]})));
        let many: Vec<i64> = (0..=PINNED_IDS as i64).collect();
        assert!(!pins(json!([["id", "in", many]])));
    }

    #[test]
    fn wire_form() {
        let f = FilterNode::parse(&json!({"logical_operator": "and", "conditions": [
            {"path": "sg_status_list", "relation": "in", "values": ["ip", "rev"]},
            {"logical_operator": "or", "conditions": [
                {"path": "code", "relation": "is", "values": ["a"]}]}]}))
        .unwrap();
        assert_eq!(
            f,
            FilterNode::Group {
                op: LogicalOp::And,
                conditions: vec![
                    leaf("sg_status_list", "in", vec![json!("ip"), json!("rev")]),
                    FilterNode::Group {
                        op: LogicalOp::Or,
                        conditions: vec![leaf("code", "is", vec![json!("a")])]
                    }
                ]
            }
        );
        assert_eq!(f.condition_count(), 2);
        assert_eq!(
            FilterNode::parse(&json!({"logical_operator": "and", "conditions": []})).unwrap(),
            FilterNode::default()
        );
        assert_eq!(
            FilterNode::parse(&json!(null)).unwrap(),
            FilterNode::default()
        );
    }

    #[test]
    fn list_form() {
        let f = FilterNode::parse(&json!([
            ["id", "in", 1, 2],
            ["id", "in", [1, 2]],
            ["code", "is", "x"],
            {"filter_operator": "any", "filters": [["d", "in_last", 7, "DAY"]]}
        ]))
        .unwrap();
        let FilterNode::Group { op, conditions } = f else {
            panic!()
        };
        assert_eq!(op, LogicalOp::And);
        assert_eq!(conditions[0], leaf("id", "in", vec![json!(1), json!(2)]));
        assert_eq!(conditions[1], conditions[0]);
        assert_eq!(conditions[2], leaf("code", "is", vec![json!("x")]));
        assert_eq!(
            conditions[3],
            FilterNode::Group {
                op: LogicalOp::Or,
                conditions: vec![leaf("d", "in_last", vec![json!(7), json!("DAY")])]
            }
        );
    }

    #[test]
    fn bad_inputs() {
        let cases = [
            (json!(3), "filters must be a hash or a list"),
            (
                json!({"logical_operator": "xor", "conditions": []}),
                "unknown logical_operator",
            ),
            (
                json!({"logical_operator": "and", "conditions": 5}),
                "'conditions' must be a list",
            ),
            (json!({"path": "code", "values": []}), "needs a 'relation'"),
            (json!({"relation": "is", "values": []}), "needs a 'path'"),
            (
                json!({"path": 3, "relation": "is", "values": []}),
                "'path' must be a string",
            ),
            (
                json!({"path": "code", "relation": "is", "values": "x"}),
                "'values' must be a list",
            ),
            (json!([["code"]]), "expected [path, relation, values...]"),
            (json!([7]), "expected a hash or a list"),
        ];
        for (v, want) in cases {
            let e = FilterNode::parse(&v).unwrap_err();
            assert!(e.message.contains(want), "{v}: {}", e.message);
            assert!(e.message.starts_with("API read() "));
        }
    }

    #[test]
    fn limits() {
        let mut v = json!({"path": "id", "relation": "is", "values": [1]});
        for _ in 0..MAX_DEPTH {
            v = json!({"logical_operator": "and", "conditions": [v]});
        }
        assert!(FilterNode::parse(&v).is_ok());
        let v = json!({"logical_operator": "and", "conditions": [v]});
        assert!(
            FilterNode::parse(&v)
                .unwrap_err()
                .message
                .contains("nested")
        );
        let many: Vec<Value> = (0..=MAX_CONDITIONS)
            .map(|i| json!(["id", "is", i]))
            .collect();
        let e = FilterNode::parse(&Value::Array(many)).unwrap_err();
        assert!(e.message.contains("10000 conditions"), "{}", e.message);
    }
}
