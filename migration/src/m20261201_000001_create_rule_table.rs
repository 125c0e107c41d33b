//! `sgcache_rule`: the site's rules learned by calibration (`sgcache::query::rules`), one row a
//! rule. `value` is NULL while the rule is undecided; the evidence columns describe the last
//! probe run that concerned the rule.
use sea_orm_migration::prelude::*;

use crate::one_table;

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
        one_table::create(manager, SgcacheRule::Table, |t| {
            t.col(
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
        })
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        one_table::drop(manager, SgcacheRule::Table).await
    }
}
