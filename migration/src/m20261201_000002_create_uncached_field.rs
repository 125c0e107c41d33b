//! `sgcache_uncached_field`: fields left uncached for one type because the site answered a
//! value the cache cannot store (kept across restarts; see `sgcache::schema::marks`).
use sea_orm_migration::prelude::*;

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
        manager
            .create_table(
                Table::create()
                    .table(SgcacheUncachedField::Table)
                    .if_not_exists()
                    .col(text(SgcacheUncachedField::EntityType))
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
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(SgcacheUncachedField::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
