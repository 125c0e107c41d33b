//! Migrations for sgcache's fixed tables (schema registry, per-type cache state, event
//! checkpoint, site info, verification log, calibrated rules). The per-entity cache tables are not here: their
//! columns follow the site's schema and are generated at run time by `sgcache::schema::ddl`.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_fixed_tables;
mod m20261201_000001_create_rule_table;
mod m20261201_000002_create_uncached_field;
mod one_table;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_fixed_tables::Migration),
            Box::new(m20261201_000001_create_rule_table::Migration),
            Box::new(m20261201_000002_create_uncached_field::Migration),
        ]
    }

    // Keep sgcache's bookkeeping apart from anything else in a shared database.
    fn migration_table_name() -> DynIden {
        "sgcache_migrations".into_iden()
    }
}
