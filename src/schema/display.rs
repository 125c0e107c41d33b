//! The identifier ("display") field of each entity type: what Shotgun returns as `name` in links.

use super::site::EntityDef;

/// The field whose value Shotgun returns as `name` in links to an entity of this type.
///
/// Known exceptions (Project→name, Task→content, Note→subject, …) come first; otherwise
/// `code`, then `name`, then `title`. Only a field that exists on the type is returned.
pub fn display_field(def: &EntityDef) -> Option<&str> {
    let preferred: &[&str] = match def.name.as_str() {
        "Project" | "HumanUser" | "Department" | "Tag" | "Status" => &["name"],
        "ApiUser" => &["name", "firstname"],
        "Task" | "Reply" => &["content"],
        "Note" => &["subject"],
        "Delivery" | "Ticket" => &["title"],
        // Links to DisplayColumn carry the field's internal name, not a field value.
        "DisplayColumn" => return None,
        _ => &[],
    };
    preferred
        .iter()
        .chain(["code", "name", "title"].iter())
        .find_map(|f| def.fields.get_key_value(*f).map(|(k, _)| k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::site::tests::fixture;

    #[test]
    fn fixture_display_fields() {
        let s = fixture();
        let got: Vec<(&str, Option<&str>)> = s
            .entities
            .values()
            .map(|e| (e.name.as_str(), display_field(e)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ApiUser", Some("firstname")),
                ("Asset", Some("code")),
                ("Department", Some("name")),
                ("Element", Some("code")),
                ("EventLogEntry", None),
                ("Group", Some("code")),
                ("HumanUser", Some("name")),
                ("Note", Some("subject")),
                ("Playlist", Some("code")),
                ("Project", Some("name")),
                ("PublishedFile", Some("code")),
                ("PublishedFileType", Some("code")),
                ("Scene", Some("code")),
                ("Sequence", Some("code")),
                ("Shot", Some("code")),
                ("Step", Some("code")),
                ("Task", Some("content")),
                ("TaskTemplate", Some("code")),
                ("Version", Some("code")),
            ]
        );
    }

    #[test]
    fn exceptions_and_fallbacks() {
        let mk = |name: &str, fields: &[&str]| {
            let v = serde_json::json!({ name: fields.iter().map(|f| (f.to_string(), serde_json::json!({"data_type": {"value": "text"}}))).collect::<serde_json::Map<_, _>>() });
            crate::schema::site::SiteSchema::from_json(&v, None)
                .unwrap()
                .entities
                .remove(name)
                .unwrap()
        };
        assert_eq!(
            display_field(&mk("Note", &["subject", "code"])),
            Some("subject")
        );
        assert_eq!(display_field(&mk("Reply", &["content"])), Some("content"));
        assert_eq!(
            display_field(&mk("Delivery", &["title", "code"])),
            Some("title")
        );
        assert_eq!(display_field(&mk("Ticket", &["title"])), Some("title"));
        assert_eq!(
            display_field(&mk("ApiUser", &["name", "firstname"])),
            Some("name")
        );
        assert_eq!(
            display_field(&mk("Status", &["name", "icon", "code"])),
            Some("name")
        );
        assert_eq!(display_field(&mk("DisplayColumn", &["code"])), None);
        assert_eq!(display_field(&mk("Page", &["title"])), Some("title"));
        assert_eq!(display_field(&mk("Attachment", &["id"])), None);
        // An exception whose field is missing falls back to the defaults.
        assert_eq!(display_field(&mk("Task", &["code"])), Some("code"));
    }
}
