//! Shotgun read requests compiled to SQL for SQLite and PostgreSQL (pure, no I/O): the page
//! executor and the row decoder live in [`crate::db::reader`].
//!
//! [`plan_read`] decides whether a read can be answered from the cache ([`Decision::Local`])
//! or must go to the site ([`Decision::PassThrough`]), and compiles it. SQL is built by
//! [`sql::Sql`]: identifiers come only from the cached schema and are quoted, every value is a
//! bind parameter. Semantics are documented in [`filters`] (relations) and [`select`] (order).
//!
//! Served locally (when every type involved is cached and complete):
//! * filters on every cached data type with the relations of §5.4 (text kinds: is, is_not, in,
//!   not_in, contains, not_contains, starts_with, ends_with; list/status_list: is, is_not, in,
//!   not_in; number/currency: plus less_than, greater_than, between, not_between; float,
//!   percent, duration, timecode: the same without not_between; date/date_time: plus in_last,
//!   not_in_last, in_next, not_in_next, in_calendar_day/week/month/year; checkbox: is, is_not;
//!   entity and multi_entity: is, is_not, in, not_in, type_is, type_is_not, name_is,
//!   name_contains, name_not_contains, name_starts_with, name_ends_with), and/or groups, deep
//!   paths of any depth through entity and multi_entity links (polymorphic hops only follow
//!   links of the named type);
//! * return fields of every cached kind, links with names, multi-entity lists in order, deep
//!   return fields through entity links; unknown return fields are left out;
//! * sorts on scalar and entity fields, deep through entity links; paging with exact counts.
//!
//! Every link is read through the one retired-link rule of [`links`]: a link to a retired
//! entity reads as absent everywhere. With `scanner.projects`, reads of types with a cached
//! `project` field must be restricted to those projects ([`projects`]).
//!
//! Passed through: reads of EventLogEntry, uncached or incomplete types (including types
//! reached by a path or linked by a returned, filtered or sorted link field), uncached fields,
//! reads not restricted to the cached projects, other relations, malformed filter values
//! (the site decides), `additional_filter_presets`, `include_archived_projects: false`,
//! `$FROM$` paths, deep return fields through (or ending in) multi_entity fields, sorts on
//! multi_entity fields, and statements that would need more than [`plan::MAX_PARAMS`] values.
//!
//! Case-insensitive text uses `LOWER()`, which folds only ASCII letters on SQLite: filters
//! comparing text kinds with a non-ASCII value are passed through, and sorting non-ASCII text
//! may order differently between the backends (ASCII text sorts identically: `COLLATE "C"` on
//! PostgreSQL, BINARY on SQLite).
pub mod calibrated;
pub mod filters;
pub mod links;
pub mod paths;
pub mod plan;
pub mod projects;
pub mod rules;
pub mod select;
pub mod sql;

pub use plan::{plan_read, plan_read_restricted};
pub use select::{Decode, MultiRead, OutField};
pub use sql::{Dialect, Sql};

use rules::Rule;

/// Why a request goes to the site: the one vocabulary of pass-through reasons, counted on
/// `/status` (`requests.pass_through_reasons`) and `/metrics`
/// (`sgcache_pass_through_total{reason}`) under [`PassReason::label`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassReason {
    // The read planner's ([`plan_read`]).
    UncachedType,
    IncompleteType,
    /// `Type.field` that the cache does not hold.
    UncachedField(String),
    UnsupportedRelation(String),
    UnsupportedFeature(String),
    /// `scanner.projects` is set and the filters do not restrict the read to those projects.
    ProjectNotRestricted,
    // The read planner's, when a rule is not calibrated.
    /// The answer depends on a rule of the site that calibration has not decided yet.
    Uncalibrated(Rule),
    // The request handler's.
    /// A client write of the type is still being written back: the site has the truth.
    PendingWrite,
    /// The local read failed (the database); the site still answers.
    LocalError,
    /// The request carries no usable credentials.
    NoCredentials,
    /// The caller is not in `auth.local_scripts` / `auth.local_logins`.
    CallerNotTrusted,
    /// The credentials could not be checked (the site is down) and were never accepted.
    CredentialsUnverified,
    /// `info` before any site reply was stored.
    InfoUnknown,
    /// `create`, `update`, `delete`, `revive`, `batch`: the site writes, then the write-back.
    Write,
    /// A method sgcache never answers itself.
    NotCachedMethod,
    /// A schema call with a `project` (per-project visibility is the site's).
    SchemaWithProject,
    /// A schema call before the site's reply was stored (or with `[schema] file`).
    SchemaNotStored,
    /// `schema_field_read` of a type or field the stored schema lacks: the site's own error.
    SchemaUnknownName,
}

impl PassReason {
    /// The label on `/status` and `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            PassReason::UncachedType => "uncached_type",
            PassReason::IncompleteType => "incomplete_type",
            PassReason::UncachedField(_) => "uncached_field",
            PassReason::UnsupportedRelation(_) => "unsupported_relation",
            PassReason::UnsupportedFeature(_) => "unsupported_feature",
            PassReason::ProjectNotRestricted => "outside_cached_projects",
            PassReason::Uncalibrated(_) => "uncalibrated",
            PassReason::PendingWrite => "pending_write",
            PassReason::LocalError => "local_error",
            PassReason::NoCredentials => "no_credentials",
            PassReason::CallerNotTrusted => "caller_not_trusted",
            PassReason::CredentialsUnverified => "credentials_unverified",
            PassReason::InfoUnknown => "info_unknown",
            PassReason::Write => "write",
            PassReason::NotCachedMethod => "not_cached_method",
            PassReason::SchemaWithProject => "schema_with_project",
            PassReason::SchemaNotStored => "schema_not_stored",
            PassReason::SchemaUnknownName => "schema_unknown_name",
        }
    }
}

impl std::fmt::Display for PassReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassReason::UncachedType => f.write_str("type is not cached"),
            PassReason::IncompleteType => f.write_str("a type involved is not completely cached"),
            PassReason::UncachedField(x) => write!(f, "field {x} is not cached"),
            PassReason::UnsupportedRelation(x) => write!(f, "relation {x} is not supported"),
            PassReason::UnsupportedFeature(x) => write!(f, "{x} is not supported"),
            PassReason::ProjectNotRestricted => f.write_str(
                "the filters do not restrict the read to the cached projects (scanner.projects)",
            ),
            PassReason::Uncalibrated(r) => write!(f, "the site's rule {r} is not calibrated"),
            PassReason::PendingWrite => f.write_str("a write of the type is being written back"),
            PassReason::LocalError => f.write_str("the local read failed"),
            PassReason::NoCredentials => f.write_str("the request carries no credentials"),
            PassReason::CallerNotTrusted => f.write_str("the caller is not trusted (auth.local_*)"),
            PassReason::CredentialsUnverified => {
                f.write_str("the credentials cannot be checked while the site is down")
            }
            PassReason::InfoUnknown => f.write_str("no info reply stored yet"),
            PassReason::Write => f.write_str("writes go to the site"),
            PassReason::NotCachedMethod => f.write_str("the method is not answered locally"),
            PassReason::SchemaWithProject => f.write_str("schema calls with a project"),
            PassReason::SchemaNotStored => f.write_str("no site schema reply is stored"),
            PassReason::SchemaUnknownName => {
                f.write_str("the stored schema has no such type or field")
            }
        }
    }
}

/// A read compiled for one backend.
#[derive(Clone, Debug)]
pub struct CompiledRead {
    pub entity_type: String,
    pub dialect: Dialect,
    /// The page: `_id` and the return-field columns, `entities_per_page + 1` rows (the extra
    /// row tells whether there is a next page).
    pub page: Sql,
    /// `COUNT(*)` of all matching rows, run when counts are asked for and the page does not
    /// tell them.
    pub count: Sql,
    /// `entity_count` is part of the reply (not asked `return_paging_info_without_counts`).
    pub counts: bool,
    pub fields: Vec<OutField>,
    /// The page's ids and sort keys (the inner query of `page`).
    pub ids: Sql,
    /// One statement per multi-entity return field, run over the page's ids.
    pub multis: Vec<MultiRead>,
    pub entities_per_page: u32,
    pub current_page: u32,
    /// The filters select rows by primary key ([`crate::api3::filters::FilterNode::pins_ids`]):
    /// the read is cheap whatever the table's size.
    pub by_id: bool,
}

/// What to do with a read.
#[derive(Clone, Debug)]
pub enum Decision {
    Local(CompiledRead),
    PassThrough(PassReason),
}
