//! The Calibrator actor: learns the site's rules where the documentation is silent
//! ([`crate::query::rules`]) by asking the site a few small reads and comparing its answers
//! with what each candidate rule answers from the cache.
//!
//! For each rule, [`probes`] builds probe reads from data the cache holds (case variants of a
//! text field, rows with and without a value, a row with an empty multi-entity field, dates
//! around now); [`engine::settle`] computes every candidate's answer locally (the read compiler
//! under that candidate, against the reader pool), sends the probe that best tells the
//! remaining candidates apart to the site with sgcache's own credentials, and drops the
//! candidates that disagree. One candidate left: the rule is decided and stored through the
//! DbWriter (`sgcache_rule`), and the read compiler uses it. No suitable data, the site down,
//! or candidates the data cannot tell apart: the rule stays as it was (undecided rules keep
//! reads that depend on them passing through as `uncalibrated`).
//!
//! A run starts after priming and after schema changes (the set of complete types or the
//! cached schema changed), and every `calibration.interval`; it sends at most
//! `calibration.max_requests` requests. Runs, requests and the last error are on `/status`.
//! Rules in `calibration.pinned` are decided by the operator and never probed.
pub mod engine;
pub mod probes;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::tick::{Parts, Runs};
use super::{ActorSnapshot, ActorStats};
use crate::config::Config;
use crate::db::Pools;
use crate::db::writer::{Apply, DbWriterHandle, WriteOp};
use crate::query::rules::{Evidence, Rule, RuleState, RuleValue, Rules};
use crate::state::CacheState;
use crate::time;
use crate::upstream::UpstreamClient;
use engine::{Budget, Local, Settled, settle};

/// `[calibration]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Probe the site's rules at all (off: every rule stays as stored, undecided ones pass
    /// the reads that depend on them through).
    pub enabled: bool,
    /// Probe again this often (also after priming and schema changes).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Requests to the site per run, at most.
    pub max_requests: u32,
    /// Rules the operator vouches for (`rule = "value"`): decided from the start, never
    /// probed. For example `{ text_order = "case_insensitive", time_zone = "+01:00" }`.
    pub pinned: BTreeMap<String, String>,
}

impl CalibrationConfig {
    /// The pinned rules' values; an unknown rule or value is a configuration error.
    pub fn pinned_values(&self) -> Result<Vec<RuleValue>, String> {
        self.pinned
            .iter()
            .map(|(rule, value)| {
                let r = Rule::from_key(rule).ok_or_else(|| format!("unknown rule {rule}"))?;
                RuleValue::parse(r, value).ok_or_else(|| {
                    let known: Vec<String> = r.candidates().iter().map(|v| v.label()).collect();
                    format!("{rule} = {value:?}: expected one of {}", known.join(", "))
                })
            })
            .collect()
    }

    /// Records the pinned rules as decided in the shared view (they are not stored).
    pub fn apply_pinned(&self, cache: &CacheState) {
        cache.set_rules(self.pinned(cache.view().rules.as_ref().clone()));
    }

    /// `rules` with the configured pins decided (a pin always wins over a stored state).
    pub fn pinned(&self, mut rules: Rules) -> Rules {
        for value in self.pinned_values().unwrap_or_default() {
            let evidence = Evidence {
                probed_at: String::new(),
                requests: 0,
                detail: "pinned by calibration.pinned".into(),
            };
            rules.set(value.rule(), RuleState::Decided { value, evidence });
        }
        rules
    }
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            max_requests: 40,
            pinned: BTreeMap::new(),
        }
    }
}

/// The rules in the order they are probed: a probe may rely on the rules probed before it.
const ORDER: [Rule; 7] = [
    Rule::EmptyIn,
    Rule::NullsAscending,
    Rule::NullsDescending,
    Rule::TextOrder,
    Rule::EmptyMultiPath,
    Rule::TimeZone,
    Rule::WeekStart,
];

/// What one run found: the rules whose state changed, and the requests it sent.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub updates: Vec<(Rule, RuleState)>,
    pub requests: u32,
    /// Set when the site could not be asked (the run stopped there).
    pub unreachable: Option<String>,
}

/// Probes every rule once against the site (at most `max_requests` requests).
pub async fn calibrate(
    local: &Local<'_>,
    client: &UpstreamClient,
    current: &Rules,
    skip: &[Rule],
    max_requests: u32,
) -> Run {
    let mut rules = current.clone();
    let mut run = Run::default();
    let mut budget = Budget {
        left: max_requests,
        sent: 0,
    };
    for rule in ORDER.into_iter().filter(|r| !skip.contains(r)) {
        let probes = probes::probes_for(local, rule).await;
        budget.sent = 0;
        let settled = if probes.is_empty() {
            Settled::NoData
        } else {
            settle(local, client, rule, &probes, &rules, &mut budget).await
        };
        run.requests += budget.sent;
        let evidence = Evidence {
            probed_at: time::format(local.now),
            requests: budget.sent,
            detail: describe(&settled),
        };
        if let Some(state) = next_state(rules.state(rule), &settled, evidence) {
            rules.set(rule, state.clone());
            run.updates.push((rule, state));
        }
        match settled {
            Settled::Unreachable(e) => {
                run.unreachable = Some(e);
                break;
            }
            Settled::OutOfBudget(_) => break,
            _ => {}
        }
    }
    run
}

/// The rule's new state after a probe, or `None` to leave it as it is. A decided rule stays
/// decided unless the probes ruled its value out.
fn next_state(current: &RuleState, settled: &Settled, evidence: Evidence) -> Option<RuleState> {
    match (settled, current.value()) {
        (Settled::Decided(value), _) => Some(RuleState::Decided {
            value: *value,
            evidence,
        }),
        (Settled::Ambiguous(left) | Settled::OutOfBudget(left), Some(v)) if !left.contains(&v) => {
            Some(RuleState::Undecided {
                evidence: Some(evidence),
            })
        }
        (_, Some(_)) => None,
        (_, None) => Some(RuleState::Undecided {
            evidence: Some(evidence),
        }),
    }
}

fn labels(values: &[RuleValue]) -> String {
    values
        .iter()
        .map(|v| v.label())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(settled: &Settled) -> String {
    match settled {
        Settled::Decided(v) => format!("the site answered the probes as {v} does"),
        Settled::Ambiguous(left) => format!(
            "the data held cannot tell these apart yet: {}",
            labels(left)
        ),
        Settled::Contradicted => "no candidate answers the probes as the site does".into(),
        Settled::NoData => "no suitable data in the cache yet".into(),
        Settled::Unreachable(e) => format!("the site could not be asked: {e}"),
        Settled::OutOfBudget(left) => format!(
            "calibration.max_requests reached; still possible: {}",
            labels(left)
        ),
    }
}

/// `/status` → `calibration`.
#[derive(Debug, Default)]
pub struct CalibratorStats {
    pub actor: ActorStats,
    pub enabled: AtomicBool,
    pub runs: AtomicU64,
    pub requests: AtomicU64,
    pub last_run_at: std::sync::Mutex<Option<String>>,
}

/// `/status` → `calibration`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CalibrationSnapshot {
    pub enabled: bool,
    pub runs: u64,
    /// Requests sent to the site by every run so far.
    pub requests: u64,
    pub last_run_at: Option<String>,
    pub actor: ActorSnapshot,
    pub rules: Vec<RuleStatus>,
}

/// One rule on `/status` and in explain answers.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStatus {
    pub rule: &'static str,
    /// `decided` or `undecided`.
    pub state: &'static str,
    pub value: Option<String>,
    pub affects: &'static str,
    /// The last probe run's: `probed_at`, `requests`, `detail`.
    pub evidence: Option<Evidence>,
}

impl RuleStatus {
    pub fn of(rules: &Rules, rule: Rule) -> RuleStatus {
        let state = rules.state(rule);
        RuleStatus {
            rule: rule.key(),
            state: state.label(),
            value: state.value().map(|v| v.label()),
            affects: rule.affects(),
            evidence: state.evidence().cloned(),
        }
    }
}

impl CalibratorStats {
    /// The figures and every rule with its state, evidence and what it affects.
    pub fn snapshot(&self, rules: &Rules) -> CalibrationSnapshot {
        CalibrationSnapshot {
            enabled: self.enabled.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            last_run_at: self
                .last_run_at
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default(),
            actor: self.actor.snapshot(),
            rules: Rule::ALL
                .iter()
                .map(|&r| RuleStatus::of(rules, r))
                .collect(),
        }
    }
}

/// When the last run started and what the cache looked like.
#[derive(PartialEq)]
struct Trigger {
    schema: usize,
    complete: Arc<BTreeSet<String>>,
}

pub struct Calibrator {
    parts: Parts,
    stats: Arc<CalibratorStats>,
    client: Option<Rc<UpstreamClient>>,
    runs: Runs,
    last: Option<(Instant, Trigger)>,
}

impl Calibrator {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<CalibratorStats>,
    ) -> Calibrator {
        stats.enabled.store(true, Ordering::Relaxed);
        Calibrator {
            parts: Parts::new(config, pools, writer, cache),
            stats,
            client: None,
            runs: Runs::default(),
            last: None,
        }
    }

    /// Is a run due: something new was primed, the schema changed, or the interval passed?
    fn due(&self, trigger: &Trigger) -> bool {
        match &self.last {
            None => true,
            Some((at, last)) => {
                last != trigger || at.elapsed() >= self.parts.config.calibration.interval
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.runs.skip(&self.stats.actor, true) {
            return;
        }
        let Some(client) = self.client.clone() else {
            return;
        };
        let view = self.parts.cache.view();
        let trigger = Trigger {
            schema: Arc::as_ptr(&view.schema) as usize,
            complete: view.complete.clone(),
        };
        if view.complete.is_empty() || !self.due(&trigger) {
            return;
        }
        self.last = Some((Instant::now(), trigger));
        self.runs.start();
        let (pools, backend) = (self.parts.pools.clone(), self.parts.pools.backend);
        let (writer, stats) = (self.parts.writer.clone(), self.stats.clone());
        let max = self.parts.config.calibration.max_requests;
        let projects = self.parts.config.scanner.projects.clone();
        let pinned: Vec<Rule> = (self.parts.config.calibration.pinned_values())
            .unwrap_or_default()
            .iter()
            .map(|v| v.rule())
            .collect();
        let fut = async move {
            let now = chrono::Utc::now();
            let local = Local {
                view: &view,
                pools: &pools,
                backend,
                now,
                projects: &projects,
            };
            let run = calibrate(&local, &client, &view.rules, &pinned, max).await;
            record(&stats, &run, now);
            let ops: Vec<WriteOp> = run
                .updates
                .into_iter()
                .map(|(rule, state)| WriteOp::Rule { rule, state })
                .collect();
            if !ops.is_empty()
                && let Err(e) = writer
                    .apply(Apply {
                        ops,
                        checkpoint: None,
                    })
                    .await
            {
                warn!(error = %e, "calibration: storing the rules failed");
                stats.actor.error(e);
            }
        };
        ctx.spawn(fut.into_actor(self).map(|(), act, _| act.runs.end()));
    }
}

fn record(stats: &CalibratorStats, run: &Run, now: chrono::DateTime<chrono::Utc>) {
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats
        .requests
        .fetch_add(u64::from(run.requests), Ordering::Relaxed);
    if let Ok(mut at) = stats.last_run_at.lock() {
        *at = Some(time::format(now));
    }
    let decided: Vec<String> = run
        .updates
        .iter()
        .filter_map(|(r, s)| s.value().map(|v| format!("{r}={v}")))
        .collect();
    match &run.unreachable {
        Some(e) => {
            warn!(error = %e, requests = run.requests, "calibration stopped: site unreachable");
            stats.actor.error(e);
        }
        None => {
            info!(requests = run.requests, decided = ?decided, "calibration run finished");
            stats.actor.handled();
        }
    }
}

impl Actor for Calibrator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.client = self.parts.site_client();
        let interval = self.parts.config.calibration.interval;
        let poll = interval.min(Duration::from_secs(1));
        ctx.run_interval(poll, |act, ctx| act.tick(ctx));
    }
}

impl Handler<super::Stop> for Calibrator {
    type Result = ();

    fn handle(&mut self, _msg: super::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::rules::NullsAt;

    fn evidence() -> Evidence {
        Evidence {
            probed_at: "2024-03-06T12:00:00Z".into(),
            requests: 1,
            detail: String::new(),
        }
    }

    #[test]
    fn a_decided_rule_survives_an_inconclusive_run() {
        let first = RuleValue::NullsAscending(NullsAt::First);
        let last = RuleValue::NullsAscending(NullsAt::Last);
        let decided = RuleState::Decided {
            value: first,
            evidence: evidence(),
        };
        let undecided = RuleState::Undecided { evidence: None };
        for s in [
            Settled::NoData,
            Settled::Contradicted,
            Settled::Unreachable("down".into()),
            Settled::Ambiguous(vec![first, last]),
        ] {
            assert_eq!(next_state(&decided, &s, evidence()), None, "{s:?}");
            assert_eq!(
                next_state(&undecided, &s, evidence()).map(|s| s.label()),
                Some("undecided")
            );
        }
        assert_eq!(
            next_state(&decided, &Settled::OutOfBudget(vec![last]), evidence()).map(|s| s.label()),
            Some("undecided")
        );
        assert_eq!(
            next_state(&undecided, &Settled::Decided(last), evidence()).and_then(|s| s.value()),
            Some(last)
        );
    }
}
