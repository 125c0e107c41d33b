//! DDL for the cache tables (sea-query), and the planner that migrates an applied layout to a
//! desired one.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::sea_query::{
    Alias, ColumnDef, ConditionalStatement, Expr, ExprTrait, Index, IndexCreateStatement,
    PostgresQueryBuilder, SchemaStatementBuilder, SqliteQueryBuilder, Table,
};
use sha2::{Digest, Sha256};

use super::cached::{
    CachedEntity, CachedField, CachedSchema, ColumnLayout, MAX_IDENT_LEN, SqlType, is_valid_ident,
};
use super::kind::FieldKind;

/// Bookkeeping column: `false` once the entity is retired on the site.
pub const COL_ACTIVE: &str = "_active";
/// Bookkeeping column: when the cache first stored the row (`YYYY-MM-DDTHH:MM:SSZ`).
pub const COL_CACHE_CREATED_AT: &str = "_cache_created_at";
/// Bookkeeping column: when the cache last wrote the row (`YYYY-MM-DDTHH:MM:SSZ`).
pub const COL_CACHE_UPDATED_AT: &str = "_cache_updated_at";
/// Bookkeeping column: the id of the last event log entry applied to the row.
pub const COL_LAST_LOG_EVENT_ID: &str = "_last_log_event_id";
/// Association table column: the id of the entity owning the multi-entity field.
pub const ASSOC_PARENT_ID: &str = "parent_id";
/// Association table column: the linked entity's type.
pub const ASSOC_CHILD_TYPE: &str = "child_type";
/// Association table column: the linked entity's id.
pub const ASSOC_CHILD_ID: &str = "child_id";
/// Association table column: the link's position in the list as the site returned it.
pub const ASSOC_POSITION: &str = "position";

/// The SQL dialect to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Renders a sea-query schema statement in this dialect.
    pub fn render<S: SchemaStatementBuilder>(&self, stmt: &S) -> String {
        match self {
            Backend::Sqlite => stmt.to_string(SqliteQueryBuilder),
            Backend::Postgres => stmt.to_string(PostgresQueryBuilder),
        }
    }
}

/// A quoted identifier. Names come from [`crate::schema::select`] (validated) or are constants;
/// sea-query quotes and escapes them either way.
fn ident(s: &str) -> Alias {
    Alias::new(s)
}

/// The name of the index on `column` of `table`: `ix_{table}_{column}`, shortened to ≤ 63 bytes
/// with a hash suffix when needed.
pub fn index_name(table: &str, column: &str) -> String {
    let full = format!("ix_{table}_{column}");
    if full.len() <= MAX_IDENT_LEN {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let mut keep = MAX_IDENT_LEN - hex.len() - 1;
    while !full.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}_{hex}", &full[..keep])
}

/// An index on the entity table that belongs to one field: `(name, columns)`.
fn field_indexes(
    table: &str,
    field_name: &str,
    layout: &ColumnLayout,
) -> Vec<(String, Vec<String>)> {
    match layout {
        ColumnLayout::Scalar { column, .. } if field_name == "updated_at" => {
            vec![(index_name(table, column), vec![column.clone()])]
        }
        ColumnLayout::Entity {
            type_column,
            id_column,
        } => vec![(
            index_name(table, id_column),
            vec![id_column.clone(), type_column.clone()],
        )],
        _ => vec![],
    }
}

fn scalar_column_def(column: &str, sql: SqlType, not_null: bool) -> ColumnDef {
    let mut def = ColumnDef::new(ident(column));
    match sql {
        SqlType::Text => def.text(),
        SqlType::BigInt => def.big_integer(),
        SqlType::Double => def.double(),
        SqlType::Boolean => def.boolean(),
    };
    if not_null {
        def.not_null();
        if sql == SqlType::Boolean {
            def.default(false);
        }
    } else {
        def.null();
    }
    def
}

/// Column definitions a field adds to the entity table (none for multi-entity or `id`).
fn field_column_defs(field: &CachedField) -> Vec<ColumnDef> {
    match &field.layout {
        ColumnLayout::Scalar { column, .. } if column == "id" => vec![],
        ColumnLayout::Scalar {
            column,
            sql,
            not_null,
        } => vec![scalar_column_def(column, *sql, *not_null)],
        ColumnLayout::Entity {
            type_column,
            id_column,
        } => vec![
            scalar_column_def(type_column, SqlType::Text, false),
            scalar_column_def(id_column, SqlType::BigInt, false),
        ],
        ColumnLayout::MultiEntity { .. } => vec![],
    }
}

/// `CREATE INDEX IF NOT EXISTS name ON table (cols)`, to render or refine.
fn index_on(name: &str, table: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.if_not_exists().name(name).table(ident(table));
    for c in cols {
        idx.col(ident(c));
    }
    idx
}

fn create_index(name: &str, table: &str, cols: &[String], backend: Backend) -> String {
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    backend.render(&index_on(name, table, &cols))
}

/// An index created where it is missing on every schema apply (see [`DdlPlan::ensure`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EnsuredIndex {
    pub name: String,
    pub sql: String,
}

/// PostgreSQL: `CREATE INDEX IF NOT EXISTS "ix_{table}__active_id" ON "{table}" ("id") WHERE
/// "_active" = TRUE`, the ids of the live rows. A page's inner query (`WHERE _active ORDER BY
/// id LIMIT … OFFSET …`) walks it in an index-only scan, where the primary key's scan fetched
/// every skipped row from the table to read `_active`: on 102,000 Tasks, the page at offset
/// 80,000 took 21.3 ms under `pgbench` with the primary key and 8.6 ms with this index (the
/// first page the same); a client's paged find of a large type is O(rows²) in skipped rows.
/// SQLite does not use such an index for that query (its plan stays a scan of the table in
/// rowid order), so it gets none.
pub fn live_ids_index(table: &str, backend: Backend) -> Option<EnsuredIndex> {
    if backend != Backend::Postgres {
        return None;
    }
    let name = index_name(table, "_active_id");
    let mut idx = index_on(&name, table, &["id"]);
    idx.and_where(ExprTrait::eq(Expr::col(ident(COL_ACTIVE)), true));
    Some(EnsuredIndex {
        sql: backend.render(&idx),
        name,
    })
}

fn drop_index(name: &str, table: &str, backend: Backend) -> String {
    backend.render(Index::drop().if_exists().name(name).table(ident(table)))
}

/// `CREATE TABLE IF NOT EXISTS` for a multi-entity association table, plus its reverse index.
pub fn create_association_table(assoc_table: &str, backend: Backend) -> Vec<String> {
    let mut t = Table::create();
    t.table(ident(assoc_table))
        .if_not_exists()
        .col(
            ColumnDef::new(ident(ASSOC_PARENT_ID))
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(ident(ASSOC_CHILD_TYPE)).text().not_null())
        .col(
            ColumnDef::new(ident(ASSOC_CHILD_ID))
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(ident(ASSOC_POSITION)).integer().not_null())
        .primary_key(
            Index::create()
                .col(ident(ASSOC_PARENT_ID))
                .col(ident(ASSOC_CHILD_TYPE))
                .col(ident(ASSOC_CHILD_ID)),
        );
    vec![
        backend.render(&t),
        create_index(
            &index_name(assoc_table, ASSOC_CHILD_ID),
            assoc_table,
            &[ASSOC_CHILD_ID.to_owned(), ASSOC_CHILD_TYPE.to_owned()],
            backend,
        ),
    ]
}

/// Every statement that creates a type from scratch: entity table, indexes, association tables.
pub fn create_entity_table(entity: &CachedEntity, backend: Backend) -> Vec<String> {
    let mut t = Table::create();
    t.table(ident(&entity.table))
        .if_not_exists()
        .col(
            ColumnDef::new(ident("id"))
                .big_integer()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(ident(COL_ACTIVE))
                .boolean()
                .not_null()
                .default(true),
        )
        .col(
            ColumnDef::new(ident(COL_CACHE_CREATED_AT))
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(ident(COL_CACHE_UPDATED_AT))
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(ident(COL_LAST_LOG_EVENT_ID))
                .big_integer()
                .null(),
        );
    for f in entity.fields.values() {
        for def in field_column_defs(f) {
            t.col(def);
        }
    }
    let mut out = vec![backend.render(&t)];
    for f in entity.fields.values() {
        for (name, cols) in field_indexes(&entity.table, &f.name, &f.layout) {
            out.push(create_index(&name, &entity.table, &cols, backend));
        }
    }
    for table in entity.association_tables() {
        out.extend(create_association_table(table, backend));
    }
    out
}

/// Statements that add one field to an existing entity table.
fn add_field(entity_table: &str, field: &CachedField, backend: Backend) -> Vec<String> {
    let mut out: Vec<String> = field_column_defs(field)
        .into_iter()
        .map(|mut def| {
            backend.render(
                Table::alter()
                    .table(ident(entity_table))
                    .add_column(&mut def),
            )
        })
        .collect();
    for (name, cols) in field_indexes(entity_table, &field.name, &field.layout) {
        out.push(create_index(&name, entity_table, &cols, backend));
    }
    if let ColumnLayout::MultiEntity { table } = &field.layout {
        out.extend(create_association_table(table, backend));
    }
    out
}

/// Statements that remove one field (indexes first, then columns or association table).
fn drop_field(
    entity_table: &str,
    field_name: &str,
    layout: &ColumnLayout,
    backend: Backend,
) -> Vec<String> {
    let mut out: Vec<String> = field_indexes(entity_table, field_name, layout)
        .into_iter()
        .map(|(name, _)| drop_index(&name, entity_table, backend))
        .collect();
    match layout {
        ColumnLayout::MultiEntity { table } => {
            out.push(backend.render(Table::drop().table(ident(table)).if_exists()));
        }
        other => {
            for col in other.columns() {
                if col == "id" {
                    continue;
                }
                out.push(
                    backend.render(
                        Table::alter()
                            .table(ident(entity_table))
                            .drop_column(ident(col)),
                    ),
                );
            }
        }
    }
    out
}

/// A field as recorded in the database's schema registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedField {
    pub entity_type: String,
    pub field_name: String,
    pub data_type: String,
    pub layout_signature: String,
}

/// What the database already has: type → field → applied field.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedSchema {
    pub types: BTreeMap<String, BTreeMap<String, AppliedField>>,
}

impl AppliedSchema {
    /// The state of the database after a plan for `cached` has been applied.
    pub fn from_cached(cached: &CachedSchema) -> AppliedSchema {
        let types = cached
            .types
            .values()
            .map(|e| {
                let fields = e
                    .fields
                    .values()
                    .map(|f| {
                        (
                            f.name.clone(),
                            AppliedField {
                                entity_type: e.name.clone(),
                                field_name: f.name.clone(),
                                data_type: f.data_type.clone(),
                                layout_signature: f.layout_signature(),
                            },
                        )
                    })
                    .collect();
                (e.name.clone(), fields)
            })
            .collect();
        AppliedSchema { types }
    }
}

impl AppliedField {
    /// The applied layout: parsed from the signature, or recomputed from the data type.
    fn layout(&self, entity_table: &str) -> Option<ColumnLayout> {
        ColumnLayout::from_signature(&self.layout_signature)
            .filter(|l| l.identifiers().into_iter().all(is_valid_ident))
            .or_else(|| {
                ColumnLayout::for_field(
                    entity_table,
                    &self.field_name,
                    FieldKind::from_data_type(&self.data_type),
                )
            })
    }
}

/// The statements that bring the database from `applied` to `desired`, and what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DdlPlan {
    /// SQL text, in execution order.
    pub statements: Vec<String>,
    /// Types whose tables are created by this plan.
    pub new_types: BTreeSet<String>,
    /// Existing types with fields added, dropped or retyped: must be marked incomplete.
    pub changed_types: BTreeSet<String>,
    /// `(type, field)` added to an existing type.
    pub added: Vec<(String, String)>,
    /// `(type, field)` whose data type or layout changed (dropped and recreated).
    pub retyped: Vec<(String, String)>,
    /// `(type, field)` no longer selected (dropped).
    pub dropped: Vec<(String, String)>,
    /// Indexes created after `statements` on every apply where the database lacks them: they
    /// bring databases made by an older sgcache up to date (the live-ids index,
    /// [`live_ids_index`]). The writer looks up which exist first, since PostgreSQL's
    /// `CREATE INDEX IF NOT EXISTS` waits for the table's writes even when the index exists.
    /// Not part of what makes a plan non-empty: a follower compares `statements` with the
    /// leader's applied layout.
    pub ensure: Vec<EnsuredIndex>,
}

impl DdlPlan {
    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
            && self.new_types.is_empty()
            && self.changed_types.is_empty()
            && self.added.is_empty()
            && self.retyped.is_empty()
            && self.dropped.is_empty()
    }
}

/// Plans the DDL that turns `applied` into `desired`. Types no longer desired are left alone.
pub fn plan_ddl(desired: &CachedSchema, applied: &AppliedSchema, backend: Backend) -> DdlPlan {
    let mut plan = DdlPlan::default();
    for (ty, entity) in &desired.types {
        let Some(applied_fields) = applied.types.get(ty) else {
            plan.new_types.insert(ty.clone());
            plan.statements.extend(create_entity_table(entity, backend));
            continue;
        };
        let table = entity.table.as_str();
        let mut drops = Vec::new();
        let mut adds = Vec::new();
        // Fields no longer selected.
        for (name, af) in applied_fields {
            if name == "id" || entity.fields.contains_key(name) {
                continue;
            }
            if let Some(layout) = af.layout(table) {
                drops.extend(drop_field(table, name, &layout, backend));
            }
            plan.dropped.push((ty.clone(), name.clone()));
        }
        for (name, f) in &entity.fields {
            if name == "id" {
                continue;
            }
            match applied_fields.get(name) {
                None => {
                    adds.extend(add_field(table, f, backend));
                    plan.added.push((ty.clone(), name.clone()));
                }
                Some(af)
                    if af.data_type != f.data_type
                        || af.layout_signature != f.layout_signature() =>
                {
                    if let Some(layout) = af.layout(table) {
                        drops.extend(drop_field(table, name, &layout, backend));
                    }
                    adds.extend(add_field(table, f, backend));
                    plan.retyped.push((ty.clone(), name.clone()));
                }
                Some(_) => {}
            }
        }
        let count = |v: &[(String, String)]| v.iter().filter(|(t, _)| t == ty).count();
        if count(&plan.dropped) + count(&plan.added) + count(&plan.retyped) > 0 {
            plan.changed_types.insert(ty.clone());
        }
        plan.statements.extend(drops);
        plan.statements.extend(adds);
    }
    plan.ensure = desired
        .types
        .values()
        .filter_map(|e| live_ids_index(&e.table, backend))
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::selection::{SelectionRules, select};
    use crate::schema::site::SiteSchema;

    fn small() -> CachedSchema {
        let v = serde_json::json!({"Thing": {
            "id": {"data_type": {"value": "number"}},
            "code": {"data_type": {"value": "text"}},
            "updated_at": {"data_type": {"value": "date_time"}},
            "flag": {"data_type": {"value": "checkbox"}, "properties": {"default_value": {"value": false}}},
            "ratio": {"data_type": {"value": "float"}},
            "project": {"data_type": {"value": "entity"}, "properties": {"valid_types": {"value": ["Project"]}}},
            "items": {"data_type": {"value": "multi_entity"}, "properties": {"valid_types": {"value": ["Thing"]}}},
            "image": {"data_type": {"value": "image"}},
        }, "Project": {
            "id": {"data_type": {"value": "number"}},
            "name": {"data_type": {"value": "text"}},
        }});
        let site = SiteSchema::from_json(&v, None).unwrap();
        let rules = SelectionRules {
            include: vec!["Thing".into()],
            exclude: vec![],
        };
        select(&site, &rules).unwrap().0
    }

    fn thing() -> CachedEntity {
        small().types["Thing"].clone()
    }

    /// `small()` without the thinly cached Project.
    fn only_thing() -> CachedSchema {
        without(thing(), &[])
    }

    #[test]
    fn golden_sqlite() {
        assert_eq!(
            create_entity_table(&thing(), Backend::Sqlite),
            vec![
                r#"CREATE TABLE IF NOT EXISTS "thing" ( "id" integer NOT NULL PRIMARY KEY, "_active" boolean NOT NULL DEFAULT TRUE, "_cache_created_at" text NOT NULL, "_cache_updated_at" text NOT NULL, "_last_log_event_id" integer NULL, "code" text NULL, "flag" boolean NOT NULL DEFAULT FALSE, "project__type" text NULL, "project__id" integer NULL, "ratio" double NULL, "updated_at" text NULL )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_project__id" ON "thing" ("project__id", "project__type")"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_updated_at" ON "thing" ("updated_at")"#,
                r#"CREATE TABLE IF NOT EXISTS "thing_items" ( "parent_id" integer NOT NULL, "child_type" text NOT NULL, "child_id" integer NOT NULL, "position" integer NOT NULL, PRIMARY KEY ("parent_id", "child_type", "child_id") )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_items_child_id" ON "thing_items" ("child_id", "child_type")"#,
            ]
        );
    }

    #[test]
    fn golden_postgres() {
        assert_eq!(
            create_entity_table(&thing(), Backend::Postgres),
            vec![
                r#"CREATE TABLE IF NOT EXISTS "thing" ( "id" bigint NOT NULL PRIMARY KEY, "_active" bool NOT NULL DEFAULT TRUE, "_cache_created_at" text NOT NULL, "_cache_updated_at" text NOT NULL, "_last_log_event_id" bigint NULL, "code" text NULL, "flag" bool NOT NULL DEFAULT FALSE, "project__type" text NULL, "project__id" bigint NULL, "ratio" double precision NULL, "updated_at" text NULL )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_project__id" ON "thing" ("project__id", "project__type")"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_updated_at" ON "thing" ("updated_at")"#,
                r#"CREATE TABLE IF NOT EXISTS "thing_items" ( "parent_id" bigint NOT NULL, "child_type" text NOT NULL, "child_id" bigint NOT NULL, "position" integer NOT NULL, PRIMARY KEY ("parent_id", "child_type", "child_id") )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_items_child_id" ON "thing_items" ("child_id", "child_type")"#,
            ]
        );
    }

    /// Every apply on PostgreSQL ensures each cached table's live-ids index, also when the
    /// layout is unchanged (a database made before the index existed gets it); the plan stays
    /// empty then, as a follower compares its statements. SQLite gets none.
    #[test]
    fn live_ids_index_is_ensured_on_postgres_only() {
        let schema = only_thing();
        let expected = r#"CREATE INDEX IF NOT EXISTS "ix_thing__active_id" ON "thing" ("id") WHERE "_active" = TRUE"#;
        let fresh = plan_ddl(&schema, &AppliedSchema::default(), Backend::Postgres);
        let ensured = vec![EnsuredIndex {
            name: "ix_thing__active_id".into(),
            sql: expected.into(),
        }];
        assert_eq!(fresh.ensure, ensured);
        assert!(!fresh.statements.iter().any(|s| s.contains("_active_id")));
        let applied = AppliedSchema::from_cached(&schema);
        let same = plan_ddl(&schema, &applied, Backend::Postgres);
        assert!(same.is_empty(), "{same:?}");
        assert_eq!(same.ensure, ensured);
        assert!(
            plan_ddl(&schema, &applied, Backend::Sqlite)
                .ensure
                .is_empty()
        );
        assert!(
            plan_ddl(&schema, &AppliedSchema::default(), Backend::Sqlite)
                .ensure
                .is_empty()
        );
    }

    #[test]
    fn names() {
        let t = thing();
        assert_eq!(t.table, "thing");
        assert_eq!(
            t.field_columns(),
            vec![
                "id",
                "code",
                "flag",
                "project__type",
                "project__id",
                "ratio",
                "updated_at"
            ]
        );
        assert_eq!(index_name("shot", "updated_at"), "ix_shot_updated_at");
        let long = index_name("customentity01", &format!("sg_{}__id", "x".repeat(50)));
        assert_eq!(long.len(), 63);
        assert!(is_valid_ident(&long));
        assert!(long.starts_with("ix_customentity01_sg_xxx"));
        let other = index_name("customentity01", &format!("sg_{}y__id", "x".repeat(49)));
        assert_ne!(long, other);
    }

    #[test]
    fn new_type_and_idempotence() {
        let thin = &small().types["Project"];
        assert!(thin.thin);
        assert_eq!(thin.fields.keys().collect::<Vec<_>>(), vec!["id", "name"]);
        for b in [Backend::Sqlite, Backend::Postgres] {
            let desired = only_thing();
            let plan = plan_ddl(&desired, &AppliedSchema::default(), b);
            assert_eq!(plan.new_types, BTreeSet::from(["Thing".to_string()]));
            assert!(plan.changed_types.is_empty());
            assert_eq!(plan.statements, create_entity_table(&thing(), b));
            let applied = AppliedSchema::from_cached(&desired);
            let second = plan_ddl(&desired, &applied, b);
            assert!(second.is_empty(), "{second:?}");
            // Only the idempotent statements of every apply are left.
            let ensure = second.ensure.clone();
            assert_eq!(
                second,
                DdlPlan {
                    ensure,
                    ..DdlPlan::default()
                }
            );
        }
        // The whole fixture too.
        let site = crate::schema::site::tests::fixture();
        let rules = SelectionRules {
            include: vec!["*".into()],
            exclude: vec![],
        };
        let desired = select(&site, &rules).unwrap().0;
        let plan = plan_ddl(&desired, &AppliedSchema::default(), Backend::Postgres);
        assert_eq!(plan.new_types.len(), 18);
        let again = plan_ddl(
            &desired,
            &AppliedSchema::from_cached(&desired),
            Backend::Postgres,
        );
        assert!(again.is_empty());
    }

    fn without(mut e: CachedEntity, fields: &[&str]) -> CachedSchema {
        for f in fields {
            e.fields.remove(*f);
        }
        CachedSchema {
            types: BTreeMap::from([(e.name.clone(), e)]),
        }
    }

    #[test]
    fn widening_adds_columns() {
        let narrow = without(thing(), &["flag", "project", "items"]);
        let applied = AppliedSchema::from_cached(&narrow);
        let plan = plan_ddl(&only_thing(), &applied, Backend::Sqlite);
        assert!(plan.new_types.is_empty());
        assert_eq!(plan.changed_types, BTreeSet::from(["Thing".to_string()]));
        let pairs = |v: &[&str]| -> Vec<(String, String)> {
            v.iter()
                .map(|f| ("Thing".to_string(), f.to_string()))
                .collect()
        };
        assert_eq!(plan.added, pairs(&["flag", "items", "project"]));
        assert!(plan.dropped.is_empty() && plan.retyped.is_empty());
        assert_eq!(
            plan.statements,
            vec![
                r#"ALTER TABLE "thing" ADD COLUMN "flag" boolean NOT NULL DEFAULT FALSE"#,
                r#"CREATE TABLE IF NOT EXISTS "thing_items" ( "parent_id" integer NOT NULL, "child_type" text NOT NULL, "child_id" integer NOT NULL, "position" integer NOT NULL, PRIMARY KEY ("parent_id", "child_type", "child_id") )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_items_child_id" ON "thing_items" ("child_id", "child_type")"#,
                r#"ALTER TABLE "thing" ADD COLUMN "project__type" text NULL"#,
                r#"ALTER TABLE "thing" ADD COLUMN "project__id" integer NULL"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_project__id" ON "thing" ("project__id", "project__type")"#,
            ]
        );
        let pg = plan_ddl(&only_thing(), &applied, Backend::Postgres);
        assert_eq!(
            pg.statements[0],
            r#"ALTER TABLE "thing" ADD COLUMN "flag" bool NOT NULL DEFAULT FALSE"#
        );
    }

    #[test]
    fn narrowing_drops_columns() {
        let applied = AppliedSchema::from_cached(&small());
        let narrow = without(thing(), &["ratio", "project", "items"]);
        for b in [Backend::Sqlite, Backend::Postgres] {
            let plan = plan_ddl(&narrow, &applied, b);
            assert_eq!(plan.changed_types, BTreeSet::from(["Thing".to_string()]));
            assert_eq!(plan.dropped.len(), 3);
            assert!(plan.added.is_empty() && plan.retyped.is_empty());
            assert_eq!(
                plan.statements,
                vec![
                    r#"DROP TABLE IF EXISTS "thing_items""#,
                    r#"DROP INDEX IF EXISTS "ix_thing_project__id""#,
                    r#"ALTER TABLE "thing" DROP COLUMN "project__type""#,
                    r#"ALTER TABLE "thing" DROP COLUMN "project__id""#,
                    r#"ALTER TABLE "thing" DROP COLUMN "ratio""#,
                ]
            );
            // After applying, nothing more to do.
            assert!(plan_ddl(&narrow, &AppliedSchema::from_cached(&narrow), b).is_empty());
        }
    }

    #[test]
    fn retype_drops_and_recreates() {
        let applied = AppliedSchema::from_cached(&small());
        let mut e = thing();
        let ratio = e.fields.get_mut("ratio").unwrap();
        ratio.kind = FieldKind::Number;
        ratio.data_type = "number".into();
        ratio.layout = ColumnLayout::for_field("thing", "ratio", FieldKind::Number).unwrap();
        // data_type change with the same layout (text -> list) is a retype too.
        let code = e.fields.get_mut("code").unwrap();
        code.kind = FieldKind::List;
        code.data_type = "list".into();
        let desired = without(e, &[]);
        let plan = plan_ddl(&desired, &applied, Backend::Sqlite);
        assert_eq!(plan.changed_types, BTreeSet::from(["Thing".to_string()]));
        assert_eq!(
            plan.retyped,
            vec![
                ("Thing".to_string(), "code".to_string()),
                ("Thing".to_string(), "ratio".to_string())
            ]
        );
        assert_eq!(
            plan.statements,
            vec![
                r#"ALTER TABLE "thing" DROP COLUMN "code""#,
                r#"ALTER TABLE "thing" DROP COLUMN "ratio""#,
                r#"ALTER TABLE "thing" ADD COLUMN "code" text NULL"#,
                r#"ALTER TABLE "thing" ADD COLUMN "ratio" integer NULL"#,
            ]
        );
        assert!(
            plan_ddl(
                &desired,
                &AppliedSchema::from_cached(&desired),
                Backend::Sqlite
            )
            .is_empty()
        );
    }

    #[test]
    fn checkbox_nullability_follows_the_site_default() {
        let site = |default: serde_json::Value| {
            let v = serde_json::json!({"Thing": {
                "id": {"data_type": {"value": "number"}},
                "flag": {"data_type": {"value": "checkbox"}, "properties": {"default_value": {"value": default}}},
            }});
            let site = SiteSchema::from_json(&v, None).unwrap();
            let rules = SelectionRules {
                include: vec!["Thing".into()],
                exclude: vec![],
            };
            select(&site, &rules).unwrap().0
        };
        let strict = site(serde_json::json!(true));
        let loose = site(serde_json::Value::Null);
        let sig = |c: &CachedSchema| c.types["Thing"].fields["flag"].layout_signature();
        assert_eq!(sig(&strict), "scalar:flag:boolean:not_null");
        assert_eq!(sig(&loose), "scalar:flag:boolean:null");
        assert_eq!(sig(&site(serde_json::json!(0))), "scalar:flag:boolean:null");
        // A database made when the column was NOT NULL is widened: drop and re-add (the type
        // is marked incomplete and rescanned), on both backends.
        let applied = AppliedSchema::from_cached(&strict);
        for (b, ty) in [(Backend::Sqlite, "boolean"), (Backend::Postgres, "bool")] {
            let plan = plan_ddl(&loose, &applied, b);
            assert_eq!(plan.retyped, vec![("Thing".into(), "flag".into())]);
            assert_eq!(plan.changed_types, BTreeSet::from(["Thing".to_string()]));
            assert_eq!(
                plan.statements,
                vec![
                    r#"ALTER TABLE "thing" DROP COLUMN "flag""#.to_owned(),
                    format!(r#"ALTER TABLE "thing" ADD COLUMN "flag" {ty} NULL"#),
                ]
            );
        }
    }

    #[test]
    fn retype_entity_to_multi_and_unselected_type() {
        let applied = AppliedSchema::from_cached(&small());
        let mut e = thing();
        let p = e.fields.get_mut("project").unwrap();
        p.kind = FieldKind::MultiEntity;
        p.data_type = "multi_entity".into();
        p.layout = ColumnLayout::for_field("thing", "project", FieldKind::MultiEntity).unwrap();
        let desired = without(e, &[]);
        let plan = plan_ddl(&desired, &applied, Backend::Postgres);
        assert_eq!(
            plan.statements,
            vec![
                r#"DROP INDEX IF EXISTS "ix_thing_project__id""#,
                r#"ALTER TABLE "thing" DROP COLUMN "project__type""#,
                r#"ALTER TABLE "thing" DROP COLUMN "project__id""#,
                r#"CREATE TABLE IF NOT EXISTS "thing_project" ( "parent_id" bigint NOT NULL, "child_type" text NOT NULL, "child_id" bigint NOT NULL, "position" integer NOT NULL, PRIMARY KEY ("parent_id", "child_type", "child_id") )"#,
                r#"CREATE INDEX IF NOT EXISTS "ix_thing_project_child_id" ON "thing_project" ("child_id", "child_type")"#,
            ]
        );
        // A type that is no longer selected is left alone.
        let plan = plan_ddl(&CachedSchema::default(), &applied, Backend::Sqlite);
        assert!(plan.is_empty());
        // A garbled applied signature falls back to the data type.
        let mut applied = AppliedSchema::from_cached(&small());
        applied
            .types
            .get_mut("Thing")
            .unwrap()
            .get_mut("ratio")
            .unwrap()
            .layout_signature = "??".into();
        let narrow = without(thing(), &["ratio"]);
        let plan = plan_ddl(&narrow, &applied, Backend::Sqlite);
        assert_eq!(
            plan.statements,
            vec![r#"ALTER TABLE "thing" DROP COLUMN "ratio""#]
        );
    }
}
