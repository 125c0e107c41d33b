//! SeaORM entities for sgcache's fixed tables (created by the `migration` crate).
//! Timestamps are canonical `YYYY-MM-DDTHH:MM:SSZ` strings, see [`crate::time`].

/// One fetched `schema_read` (+ `schema_entity_read`) reply, newest last.
pub mod schema_snapshot {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_schema_snapshot")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub fetched_at: String,
        /// `site` or `file`.
        pub source: String,
        pub digest: String,
        pub schema_read: String,
        pub schema_entity_read: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The schema registry: one row per cached field whose columns exist in the database.
pub mod schema_field {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_schema_field")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub entity_type: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub field_name: String,
        pub data_type: String,
        pub layout_signature: String,
        pub applied_at: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Per entity type: is it cached, is its first full scan complete, scan checkpoints.
pub mod entity_state {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_entity_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub entity_type: String,
        pub table_name: String,
        pub cached: bool,
        /// Reads of this type may be answered locally only when true.
        pub complete: bool,
        pub selection_signature: String,
        /// Highest id done by a full scan in progress (resume point), `None` when idle.
        pub full_scan_cursor: Option<i64>,
        pub full_scan_started_at: Option<String>,
        pub last_full_scan_at: Option<String>,
        /// `updated_at` watermark of the incremental scans.
        pub scan_checkpoint: Option<String>,
        pub last_scan_at: Option<String>,
        pub updated_at: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The event-log checkpoint (one row named `events`).
pub mod event_cursor {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_event_cursor")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub last_event_id: i64,
        /// JSON: ids below the high-water mark not seen yet, with when they were first missed.
        pub open_gaps: String,
        pub updated_at: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Site facts kept across restarts (e.g. the `info` reply).
pub mod site_info {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_site_info")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub fetched_at: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The verifier's log of real mismatches (see `actors::verifier`), newest last.
pub mod verification {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_verification")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub created_at: String,
        pub entity_type: String,
        /// `mismatch` (real mismatches only are logged).
        pub outcome: String,
        /// The client's read arguments (JSON).
        pub request: String,
        /// A compact diff (JSON list).
        pub diff: String,
        /// JSON list of the ids involved.
        pub entity_ids: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Fields left uncached for one type because the site answered a value the cache cannot
/// store (see [`crate::schema::marks`]); the mark holds while the field's site definition
/// (`data_type`, `layout_signature`) is unchanged.
pub mod uncached_field {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_uncached_field")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub entity_type: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub field_name: String,
        pub data_type: String,
        pub layout_signature: String,
        /// The JSON kind of the value that could not be stored (`null`, `object`…).
        pub value_kind: String,
        pub problem: String,
        pub since: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}
