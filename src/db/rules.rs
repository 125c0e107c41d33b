//! The calibrated rules in `sgcache_rule` (see [`crate::query::rules`]): loaded at start-up,
//! written only by the DbWriter ([`super::writer::WriteOp::Rule`]).
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseTransaction, EntityTrait, Set};
use tracing::warn;

use super::StoreError;
use crate::query::rules::{Evidence, Rule, RuleState, RuleValue, Rules};

pub mod rule {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sgcache_rule")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub rule: String,
        /// The decided value's label; NULL while undecided.
        pub value: Option<String>,
        pub probed_at: Option<String>,
        pub requests: i64,
        pub detail: String,
        pub updated_at: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every rule's stored state (rules without a row, or with an unknown value, are undecided).
pub async fn load_rules<C: ConnectionTrait>(db: &C) -> Result<Rules, StoreError> {
    let mut rules = Rules::default();
    for row in rule::Entity::find().all(db).await? {
        let Some(r) = Rule::from_key(&row.rule) else {
            warn!(rule = %row.rule, "unknown rule in sgcache_rule: ignored");
            continue;
        };
        let evidence = row.probed_at.map(|probed_at| Evidence {
            probed_at,
            requests: u32::try_from(row.requests).unwrap_or(u32::MAX),
            detail: row.detail,
        });
        let value = row.value.as_deref().and_then(|v| RuleValue::parse(r, v));
        let state = match (value, evidence) {
            (Some(value), Some(evidence)) => RuleState::Decided { value, evidence },
            (_, evidence) => RuleState::Undecided { evidence },
        };
        rules.set(r, state);
    }
    Ok(rules)
}

/// Upserts one rule's state (inside the DbWriter's transaction).
pub async fn store_rule(
    tx: &DatabaseTransaction,
    r: Rule,
    state: &RuleState,
    now: &str,
) -> Result<(), StoreError> {
    let evidence = state.evidence();
    let row = rule::ActiveModel {
        rule: Set(r.key().to_owned()),
        value: Set(state.value().map(|v| v.label())),
        probed_at: Set(evidence.map(|e| e.probed_at.clone())),
        requests: Set(evidence.map_or(0, |e| i64::from(e.requests))),
        detail: Set(evidence.map(|e| e.detail.clone()).unwrap_or_default()),
        updated_at: Set(now.to_owned()),
    };
    rule::Entity::insert(row)
        .on_conflict(
            OnConflict::column(rule::Column::Rule)
                .update_columns([
                    rule::Column::Value,
                    rule::Column::ProbedAt,
                    rule::Column::Requests,
                    rule::Column::Detail,
                    rule::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(tx)
        .await?;
    Ok(())
}
