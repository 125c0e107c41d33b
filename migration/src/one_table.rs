//! What the migrations that each add one table share: the table is created if it does not
//! exist yet on the way up, and dropped if it exists on the way down.
use sea_orm_migration::prelude::*;

/// Creates `table` (if it does not exist) as `define` describes it: columns and keys.
pub(crate) async fn create(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    define: impl FnOnce(&mut TableCreateStatement) -> &mut TableCreateStatement,
) -> Result<(), DbErr> {
    let mut statement = Table::create();
    statement.table(table).if_not_exists();
    define(&mut statement);
    manager.create_table(statement).await
}

/// Drops `table` if it exists.
pub(crate) async fn drop(manager: &SchemaManager<'_>, table: impl IntoIden) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(table).if_exists().to_owned())
        .await
}
