//! The fixed tables. Timestamps are stored as `YYYY-MM-DDTHH:MM:SSZ` text on both backends,
//! the same canonical form the entity tables use, so they compare correctly as strings.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SgcacheSchemaSnapshot {
    Table,
    Id,
    FetchedAt,
    Source,
    Digest,
    SchemaRead,
    SchemaEntityRead,
}

#[derive(DeriveIden)]
enum SgcacheSchemaField {
    Table,
    EntityType,
    FieldName,
    DataType,
    LayoutSignature,
    AppliedAt,
}

#[derive(DeriveIden)]
enum SgcacheEntityState {
    Table,
    EntityType,
    TableName,
    Cached,
    Complete,
    SelectionSignature,
    FullScanCursor,
    FullScanStartedAt,
    LastFullScanAt,
    ScanCheckpoint,
    LastScanAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SgcacheEventCursor {
    Table,
    Name,
    LastEventId,
    OpenGaps,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SgcacheSiteInfo {
    Table,
    Key,
    Value,
    FetchedAt,
}

#[derive(DeriveIden)]
enum SgcacheVerification {
    Table,
    Id,
    CreatedAt,
    EntityType,
    Outcome,
    Request,
    Diff,
    EntityIds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            schema_snapshot(),
            schema_field(),
            entity_state(),
            event_cursor(),
            site_info(),
            verification(),
        ] {
            manager.create_table(table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SgcacheVerification::Table.into_iden(),
            SgcacheSiteInfo::Table.into_iden(),
            SgcacheEventCursor::Table.into_iden(),
            SgcacheEntityState::Table.into_iden(),
            SgcacheSchemaField::Table.into_iden(),
            SgcacheSchemaSnapshot::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `sgcache_schema_snapshot`: the schema snapshots read from the site.
fn schema_snapshot() -> TableCreateStatement {
    Table::create()
        .table(SgcacheSchemaSnapshot::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::FetchedAt)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::Source)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::Digest)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::SchemaRead)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaSnapshot::SchemaEntityRead)
                .text()
                .null(),
        )
        .to_owned()
}

/// `sgcache_schema_field`: the layout of every cached field as applied.
fn schema_field() -> TableCreateStatement {
    Table::create()
        .table(SgcacheSchemaField::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheSchemaField::EntityType)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaField::FieldName)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaField::DataType)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaField::LayoutSignature)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheSchemaField::AppliedAt)
                .text()
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(SgcacheSchemaField::EntityType)
                .col(SgcacheSchemaField::FieldName),
        )
        .to_owned()
}

/// `sgcache_entity_state`: scanner bookkeeping, one row per type.
fn entity_state() -> TableCreateStatement {
    Table::create()
        .table(SgcacheEntityState::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheEntityState::EntityType)
                .text()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::TableName)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::Cached)
                .boolean()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::Complete)
                .boolean()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::SelectionSignature)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::FullScanCursor)
                .big_integer()
                .null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::FullScanStartedAt)
                .text()
                .null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::LastFullScanAt)
                .text()
                .null(),
        )
        .col(
            ColumnDef::new(SgcacheEntityState::ScanCheckpoint)
                .text()
                .null(),
        )
        .col(ColumnDef::new(SgcacheEntityState::LastScanAt).text().null())
        .col(
            ColumnDef::new(SgcacheEntityState::UpdatedAt)
                .text()
                .not_null(),
        )
        .to_owned()
}

/// `sgcache_event_cursor`: the event poller's cursor and open gaps.
fn event_cursor() -> TableCreateStatement {
    Table::create()
        .table(SgcacheEventCursor::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheEventCursor::Name)
                .text()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(SgcacheEventCursor::LastEventId)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEventCursor::OpenGaps)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheEventCursor::UpdatedAt)
                .text()
                .not_null(),
        )
        .to_owned()
}

/// `sgcache_site_info`: facts read from the site.
fn site_info() -> TableCreateStatement {
    Table::create()
        .table(SgcacheSiteInfo::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheSiteInfo::Key)
                .text()
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(SgcacheSiteInfo::Value).text().not_null())
        .col(ColumnDef::new(SgcacheSiteInfo::FetchedAt).text().not_null())
        .to_owned()
}

/// `sgcache_verification`: the verifier's findings.
fn verification() -> TableCreateStatement {
    Table::create()
        .table(SgcacheVerification::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(SgcacheVerification::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(SgcacheVerification::CreatedAt)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheVerification::EntityType)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheVerification::Outcome)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(SgcacheVerification::Request)
                .text()
                .not_null(),
        )
        .col(ColumnDef::new(SgcacheVerification::Diff).text().not_null())
        .col(
            ColumnDef::new(SgcacheVerification::EntityIds)
                .text()
                .not_null(),
        )
        .to_owned()
}
