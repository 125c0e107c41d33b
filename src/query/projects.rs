//! `scanner.projects` on the read path: with a project restriction the cache holds only those
//! projects' rows of every type that has a cached `project` field (the scanner reads them with
//! `project in [...]`), so a read of such a type is answered locally only when its filters
//! restrict it to cached projects. Types without a `project` field are scanned whole and are
//! not affected.
use serde_json::Value as Json;

use crate::api3::filters::{FilterNode, LogicalOp};
use crate::schema::CachedEntity;

/// Whether a read of `entity` with `filters` only reaches rows of the cached `projects`
/// (always true when `projects` is empty or the type has no cached `project` field).
///
/// The filters must hold, at the top level or inside an `and` group reached only through
/// `and` groups, a condition `project is {Project, id}` or `project in [{Project, id}, ...]`
/// whose ids are all in `projects` (no `null`).
pub fn restricted_to(entity: &CachedEntity, filters: &FilterNode, projects: &[i64]) -> bool {
    projects.is_empty() || !entity.fields.contains_key("project") || restricts(filters, projects)
}

fn restricts(node: &FilterNode, projects: &[i64]) -> bool {
    match node {
        FilterNode::Group {
            op: LogicalOp::And,
            conditions,
        } => conditions.iter().any(|c| restricts(c, projects)),
        FilterNode::Group {
            op: LogicalOp::Or, ..
        } => false,
        FilterNode::Condition {
            path,
            relation,
            values,
        } => {
            let wanted = match relation.as_str() {
                "is" => values.get(..1).unwrap_or_default(),
                "in" => values.as_slice(),
                _ => return false,
            };
            path == "project"
                && !wanted.is_empty()
                && wanted.iter().all(|v| cached_project(v, projects))
        }
    }
}

/// `{"type": "Project", "id": N}` with N among `projects`.
fn cached_project(v: &Json, projects: &[i64]) -> bool {
    v.get("type").and_then(Json::as_str) == Some("Project")
        && v.get("id")
            .and_then(Json::as_i64)
            .is_some_and(|id| projects.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api3::read::ReadRequest;
    use crate::schema::selection::{SelectionRules, select};
    use crate::schema::site::tests::fixture;
    use serde_json::json;

    #[test]
    fn decisions() {
        let rules = SelectionRules {
            include: vec!["Shot".into(), "HumanUser".into()],
            exclude: vec![],
        };
        let (cached, _) = select(&fixture(), &rules).unwrap();
        let p = |id: i64| json!({"type": "Project", "id": id});
        let check = |ty: &str, filters: serde_json::Value, projects: &[i64]| {
            let req = ReadRequest::parse(&json!({"type": ty, "filters": filters})).unwrap();
            restricted_to(cached.entity(ty).unwrap(), &req.filters, projects)
        };
        let ok = [
            json!([["project", "is", p(1)]]),
            json!([["code", "is", "x"], ["project", "in", [p(1), p(2)]]]),
            json!({"filter_operator": "all", "filters": [
                {"filter_operator": "all", "filters": [["project", "is", p(2)]]}]}),
            json!([["project", "is", {"type": "Project", "id": 1, "name": "a"}]]),
        ];
        for f in ok {
            assert!(check("Shot", f.clone(), &[1, 2]), "{f}");
        }
        let not_ok = [
            json!([]),
            json!([["project", "is", p(3)]]),
            json!([["project", "in", [p(1), p(3)]]]),
            json!([["project", "in", [p(1), null]]]),
            json!([["project", "is", null]]),
            json!([["project", "in", []]]),
            json!([["project", "is_not", p(3)]]),
            json!([["project.Project.id", "is", 1]]),
            json!({"filter_operator": "any", "filters": [["project", "is", p(1)], ["code", "is", "x"]]}),
            json!([{"filter_operator": "any", "filters": [["project", "is", p(1)]]}]),
            json!([["project", "is", {"type": "Shot", "id": 1}]]),
        ];
        for f in not_ok {
            assert!(!check("Shot", f.clone(), &[1, 2]), "{f}");
        }
        // No restriction configured, or a type without a project field: always local.
        assert!(check("Shot", json!([]), &[]));
        assert!(check("HumanUser", json!([]), &[1]));
    }
}
