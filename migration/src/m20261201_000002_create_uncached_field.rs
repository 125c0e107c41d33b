//! `sgcache_uncached_field`: fields left uncached for one type because the site answered a
//! value the cache cannot store (kept across restarts; see `sgcache::schema::marks`).
use sea_orm_migration::prelude::*;

use crate::one_table;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SgcacheUncachedField {
    Table,
    EntityType,
    FieldName,
    DataType,
    LayoutSignature,
    ValueKind,
    Problem,
    Since,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |c: SgcacheUncachedField| ColumnDef::new(c).text().not_null().to_owned();
        one_table::create(manager, SgcacheUncachedField::Table, |t| {
            t.col(text(SgcacheUncachedField::EntityType))
                .col(text(SgcacheUncachedField::FieldName))
                .col(text(SgcacheUncachedField::DataType))
                .col(text(SgcacheUncachedField::LayoutSignature))
                .col(text(SgcacheUncachedField::ValueKind))
                .col(text(SgcacheUncachedField::Problem))
                .col(text(SgcacheUncachedField::Since))
                .primary_key(
                    Index::create()
                        .col(SgcacheUncachedField::EntityType)
                        .col(SgcacheUncachedField::FieldName),
                )
        })
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        one_table::drop(manager, SgcacheUncachedField::Table).await
    }
}
