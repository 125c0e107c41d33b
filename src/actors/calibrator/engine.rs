//! Deciding one rule: every candidate value answers each probe read locally (the read
//! compiler under that candidate, against the cache); the site answers the probe that best
//! tells the remaining candidates apart; candidates that disagree with the site are dropped.
use std::collections::BTreeSet;

use crate::db::Pools;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::api3::read::ReadRequest;
use crate::db::reader::page::execute;
use crate::query::Decision;
use crate::query::paths::Schemas;
use crate::query::plan::explain_read_at;
use crate::query::rules::{EmptyIn, Rule, RuleValue, Rules};
use crate::schema::{Backend, CachedEntity};
use crate::state::CacheView;
use crate::upstream::{UpstreamClient, UpstreamError};

/// What a read answers, as far as a probe compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The page's ids in order, and `entity_count`.
    Rows(Vec<i64>, i64),
    /// The site rejects the read.
    Fault,
}

impl Answer {
    fn of(results: &Json) -> Option<Answer> {
        let ids = results
            .get("entities")?
            .as_array()?
            .iter()
            .map(|e| e.get("id").and_then(Json::as_i64))
            .collect::<Option<Vec<_>>>()?;
        let count = results
            .get("paging_info")
            .and_then(|p| p.get("entity_count"))
            .and_then(Json::as_i64)
            .unwrap_or(-1);
        Some(Answer::Rows(ids, count))
    }
}

/// The cache's side: the shared view, the pools and the clock the site reads with.
pub struct Local<'a> {
    pub view: &'a CacheView,
    pub pools: &'a Pools,
    pub backend: Backend,
    pub now: DateTime<Utc>,
    /// `scanner.projects`: probes on types with a `project` field are restricted to them.
    pub projects: &'a [i64],
}

impl Local<'_> {
    /// `conditions` plus, when the cache holds only some projects and `entity` has a
    /// `project` field, `project in [...]`.
    pub fn restrict(&self, entity: &CachedEntity, mut conditions: Vec<Json>) -> Json {
        if !self.projects.is_empty() && entity.fields.contains_key("project") {
            let links: Vec<Json> = self
                .projects
                .iter()
                .map(|id| serde_json::json!({"type": "Project", "id": id}))
                .collect();
            conditions
                .push(serde_json::json!({"path": "project", "relation": "in", "values": links}));
        }
        serde_json::json!({"logical_operator": "and", "conditions": conditions})
    }

    /// The results of a read answered from the cache under `rules`; `None` if it would be
    /// passed through (or fails).
    pub async fn read(&self, args: &Json, rules: &Rules) -> Option<Json> {
        match self.plan(args, rules)? {
            Decision::Local(compiled) => execute(&compiled, self.pools).await.ok(),
            Decision::PassThrough(_) => None,
        }
    }

    fn plan(&self, args: &Json, rules: &Rules) -> Option<Decision> {
        let req = ReadRequest::parse(args).ok()?;
        let schemas = Schemas {
            cached: &self.view.schema,
            site: &self.view.site,
            complete: &self.view.complete,
        };
        explain_read_at(&req, schemas, rules, self.backend, self.projects, self.now)
            .ok()
            .map(|p| p.decision)
    }

    /// What the cache would answer to `args` if the site followed `candidate`.
    async fn answer(&self, args: &Json, rules: &Rules, candidate: RuleValue) -> Option<Answer> {
        let rules = rules.with(candidate);
        match self.plan(args, &rules)? {
            Decision::Local(compiled) => Answer::of(&execute(&compiled, self.pools).await.ok()?),
            // The cache leaves an empty list to the site only when the site rejects it.
            Decision::PassThrough(_) if candidate == RuleValue::EmptyIn(EmptyIn::Fault) => {
                Some(Answer::Fault)
            }
            Decision::PassThrough(_) => None,
        }
    }
}

/// The site's answer to a probe; `Err` when the site could not be asked.
pub async fn ask_site(client: &UpstreamClient, args: &Json) -> Result<Answer, UpstreamError> {
    match client.call("read", Some(args.clone())).await {
        Ok(results) => Answer::of(&results)
            .ok_or_else(|| UpstreamError::Decode("a read reply without entity ids".into())),
        Err(UpstreamError::Fault { .. }) => Ok(Answer::Fault),
        Err(e) => Err(e),
    }
}

/// How a rule's probes ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Decided(RuleValue),
    /// Several candidates remain: the data held cannot tell them apart (yet).
    Ambiguous(Vec<RuleValue>),
    /// No candidate agrees with the site.
    Contradicted,
    /// No probe could be built from the data held.
    NoData,
    /// The site could not be asked.
    Unreachable(String),
    /// The request budget ran out first.
    OutOfBudget(Vec<RuleValue>),
}

/// Requests left for this run, and requests sent for the current rule.
pub struct Budget {
    pub left: u32,
    pub sent: u32,
}

/// Narrows `rule`'s candidates with `probes` until one is left.
pub async fn settle(
    local: &Local<'_>,
    client: &UpstreamClient,
    rule: Rule,
    probes: &[Json],
    rules: &Rules,
    budget: &mut Budget,
) -> Settled {
    let candidates = rule.candidates();
    // answers[p][c]: what candidate c answers to probe p.
    let mut answers = Vec::with_capacity(probes.len());
    for probe in probes {
        let mut row = Vec::with_capacity(candidates.len());
        for c in &candidates {
            row.push(local.answer(probe, rules, *c).await);
        }
        answers.push(row);
    }
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    let mut asked = BTreeSet::new();
    let left = |alive: &[usize]| alive.iter().map(|&c| candidates[c]).collect::<Vec<_>>();
    if answers.iter().all(|row| row.iter().all(Option::is_none)) {
        return Settled::NoData;
    }
    while alive.len() > 1 {
        let Some(p) = best_probe(&answers, &alive, &asked) else {
            return Settled::Ambiguous(left(&alive));
        };
        if budget.left == 0 {
            return Settled::OutOfBudget(left(&alive));
        }
        budget.left -= 1;
        budget.sent += 1;
        asked.insert(p);
        let site = match ask_site(client, &probes[p]).await {
            Ok(a) => a,
            Err(e) => return Settled::Unreachable(e.to_string()),
        };
        alive.retain(|&c| answers[p][c].as_ref() == Some(&site));
    }
    match alive.first() {
        Some(&c) => Settled::Decided(candidates[c]),
        None => Settled::Contradicted,
    }
}

/// The probe not asked yet whose answers split the living candidates into the most groups
/// (every living candidate must have an answer); `None` if no probe splits them.
fn best_probe(
    answers: &[Vec<Option<Answer>>],
    alive: &[usize],
    asked: &BTreeSet<usize>,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (p, row) in answers.iter().enumerate() {
        if asked.contains(&p) || alive.iter().any(|&c| row[c].is_none()) {
            continue;
        }
        let mut groups: Vec<&Answer> = Vec::new();
        for &c in alive {
            if let Some(a) = &row[c]
                && !groups.contains(&a)
            {
                groups.push(a);
            }
        }
        if groups.len() > 1 && best.is_none_or(|(_, g)| groups.len() > g) {
            best = Some((p, groups.len()));
        }
    }
    best.map(|(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[i64]) -> Option<Answer> {
        Some(Answer::Rows(ids.to_vec(), ids.len() as i64))
    }

    #[test]
    fn picks_the_most_telling_probe() {
        let answers = vec![
            vec![rows(&[1]), rows(&[1]), rows(&[2])],
            vec![rows(&[1]), rows(&[2]), rows(&[3])],
            vec![rows(&[1]), None, rows(&[3])],
        ];
        let none = BTreeSet::new();
        assert_eq!(best_probe(&answers, &[0, 1, 2], &none), Some(1));
        assert_eq!(best_probe(&answers, &[0, 2], &none), Some(0));
        assert_eq!(best_probe(&answers, &[0, 1], &BTreeSet::from([1])), None);
        assert_eq!(
            Answer::of(
                &serde_json::json!({"entities": [{"id": 3}], "paging_info": {"entity_count": 9}})
            ),
            Some(Answer::Rows(vec![3], 9))
        );
    }
}
