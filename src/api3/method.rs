//! The api3 methods, parsed once from `method_name`.
//!
//! Known methods get a variant; anything else is [`ApiMethod::Unknown`] and is passed through
//! unchanged. [`ApiMethod::label`] is the `method` label of `/metrics` and `/status`: a known
//! method's name, `other` for the rest, so a client cannot grow the number of series.

/// Declares the enum and its name table from one list, so parsing and naming cannot disagree.
macro_rules! api_methods {
    ($($variant:ident => $name:literal,)*) => {
        /// One api3 method (`method_name`).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum ApiMethod {
            $($variant,)*
            /// A method sgcache does not know: passed through, labelled `other`.
            Unknown(String),
        }

        impl ApiMethod {
            /// Every known method with its wire name.
            const KNOWN: &'static [(&'static str, fn() -> ApiMethod)] =
                &[$(($name, || ApiMethod::$variant),)*];

            /// The known method's wire name, `None` for [`ApiMethod::Unknown`].
            fn known_name(&self) -> Option<&'static str> {
                match self {
                    $(ApiMethod::$variant => Some($name),)*
                    ApiMethod::Unknown(_) => None,
                }
            }
        }
    };
}

api_methods! {
    Info => "info",
    Read => "read",
    Create => "create",
    Update => "update",
    Delete => "delete",
    Revive => "revive",
    Batch => "batch",
    Summarize => "summarize",
    TextSearch => "text_search",
    EntityTypes => "entity_types",
    SchemaRead => "schema_read",
    SchemaEntityRead => "schema_entity_read",
    SchemaFieldRead => "schema_field_read",
    SchemaFieldCreate => "schema_field_create",
    SchemaFieldUpdate => "schema_field_update",
    SchemaFieldDelete => "schema_field_delete",
    Follow => "follow",
    Unfollow => "unfollow",
    Followers => "followers",
    Following => "following",
    ActivityStreamRead => "activity_stream_read",
    NoteThreadRead => "note_thread_read",
    WorkScheduleRead => "work_schedule_read",
    WorkScheduleUpdate => "work_schedule_update",
    PreferencesRead => "preferences_read",
    UpdateProjectLastAccessed => "update_project_last_accessed",
    GetSessionToken => "get_session_token",
}

impl ApiMethod {
    pub fn parse(method_name: &str) -> ApiMethod {
        ApiMethod::KNOWN
            .iter()
            .find(|(name, _)| *name == method_name)
            .map_or_else(|| ApiMethod::Unknown(method_name.to_owned()), |(_, m)| m())
    }

    /// The name as the client sent it.
    pub fn name(&self) -> &str {
        match self {
            ApiMethod::Unknown(name) => name,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The `method` label: the name of a known method, `other` for the rest.
    pub fn label(&self) -> &'static str {
        self.known_name().unwrap_or("other")
    }

    /// Methods whose success changes entities: their effect is written back before answering.
    pub fn is_entity_write(&self) -> bool {
        matches!(
            self,
            ApiMethod::Create
                | ApiMethod::Update
                | ApiMethod::Delete
                | ApiMethod::Revive
                | ApiMethod::Batch
        )
    }
}

impl std::fmt::Display for ApiMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_methods_share_one_label() {
        for (name, make) in ApiMethod::KNOWN {
            let method = ApiMethod::parse(name);
            assert_eq!(method, make());
            assert_eq!(method.name(), *name);
            assert_eq!(method.label(), *name);
        }
        let odd = ApiMethod::parse("x; DROP TABLE");
        assert_eq!(odd, ApiMethod::Unknown("x; DROP TABLE".into()));
        assert_eq!(odd.name(), "x; DROP TABLE");
        assert_eq!(odd.label(), "other");
        assert!(ApiMethod::parse("batch").is_entity_write());
        assert!(!ApiMethod::parse("read").is_entity_write());
    }
}
