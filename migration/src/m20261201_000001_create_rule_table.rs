//! `sgcache_rule`: the site's rules learned by calibration (`sgcache::query::rules`), one row a
//! rule. `value` is NULL while the rule is undecided; the evidence columns describe the last
//! probe run that concerned the rule.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SgcacheRule {
    Table,
    Rule,
    Value,
    ProbedAt,
    Requests,
    Detail,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SgcacheRule::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SgcacheRule::Rule)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SgcacheRule::Value).text().null())
                    .col(ColumnDef::new(SgcacheRule::ProbedAt).text().null())
                    .col(
                        ColumnDef::new(SgcacheRule::Requests)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(SgcacheRule::Detail).text().not_null())
                    .col(ColumnDef::new(SgcacheRule::UpdatedAt).text().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(SgcacheRule::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
