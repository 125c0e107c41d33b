//! Site schema model, cache selection rules, column layout and DDL generation (pure, no I/O).

pub mod cached;
pub mod ddl;
pub mod display;
pub mod error;
pub mod kind;
pub mod marks;
pub mod selection;
pub mod site;
pub mod values;

pub use cached::{CachedEntity, CachedField, CachedSchema, ColumnLayout, SqlType};
pub use ddl::{AppliedField, AppliedSchema, Backend, DdlPlan, plan_ddl};
pub use display::display_field;
pub use error::SchemaError;
pub use kind::FieldKind;
pub use marks::UncachedMark;
pub use selection::{SelectionReport, SelectionRules, SkippedField, select};
pub use site::{EntityDef, FieldDef, SiteSchema};
pub use values::{ValueError, entity_value, multi_entity_value, scalar_value};
