//! Calibration: for each variant of the mock site's undocumented rules, sgcache learns the
//! variant from a few probe reads and then agrees with the site on the differential corpus;
//! before that, the reads that depend on a rule pass through as `uncalibrated`.
use std::time::Duration;

use chrono::Weekday;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::actors::calibrator::engine::Local;
use sgcache::actors::calibrator::{Run, calibrate};
use sgcache::config::Secret;
use sgcache::query::rules::{
    EmptyIn, EmptyPath, NullsAt, Rule, RuleState, RuleValue, Rules, TextOrder,
};
use sgcache::state::CacheView;
use sgcache::upstream::UpstreamClient;
use sgcache_mock_site::{self as mock, MockConfig, Semantics};

use crate::query::{
    Ctx, NOW, copy_mock, differential_cases, differential_seed, run_differential, seed_mock,
};
use crate::support::{
    MockSite, databases, eventually, listener, status_of, test_config, wait_primed,
};

/// A mock site's rules and the values sgcache should learn from it.
fn variants() -> Vec<(&'static str, Semantics, Vec<RuleValue>)> {
    let other = Semantics {
        nulls_ascending: mock::NullsAt::Last,
        nulls_descending: mock::NullsAt::First,
        text_order: mock::TextOrder::CodePoint,
        week_start: Weekday::Sun,
        utc_offset_minutes: -300,
        empty_path: mock::EmptyPath::NoValue,
        empty_in: mock::EmptyIn::Ignored,
    };
    let third = Semantics {
        nulls_ascending: mock::NullsAt::Last,
        nulls_descending: mock::NullsAt::Last,
        text_order: mock::TextOrder::CaseInsensitiveThenCodePoint,
        week_start: Weekday::Sat,
        utc_offset_minutes: 540,
        empty_path: mock::EmptyPath::NullValue,
        empty_in: mock::EmptyIn::Fault,
    };
    use RuleValue as V;
    vec![
        ("default", Semantics::default(), Rules::assumed().values()),
        (
            "other",
            other,
            vec![
                V::NullsAscending(NullsAt::Last),
                V::NullsDescending(NullsAt::First),
                V::TextOrder(TextOrder::CodePoint),
                V::EmptyMultiPath(EmptyPath::NoValue),
                V::EmptyIn(EmptyIn::Ignored),
                V::TimeZone(-300),
                V::WeekStart(Weekday::Sun),
            ],
        ),
        (
            "third",
            third,
            vec![
                V::NullsAscending(NullsAt::Last),
                V::NullsDescending(NullsAt::Last),
                V::TextOrder(TextOrder::CaseInsensitiveThenCodePoint),
                V::EmptyMultiPath(EmptyPath::NullValue),
                V::EmptyIn(EmptyIn::Fault),
                V::TimeZone(540),
                V::WeekStart(Weekday::Sat),
            ],
        ),
    ]
}

/// The differential data, plus Steps created every hour over the four days before now (so
/// that day and week boundaries in every zone have data on both sides).
fn seeded_site(semantics: Semantics) -> MockSite {
    let site = MockSite::start_with(MockConfig {
        semantics,
        ..MockConfig::default()
    });
    let now = sgcache::time::parse(NOW).unwrap();
    site.freeze_clock(Some(now));
    seed_mock(&site);
    site.seed("Step", 100, |k| {
        let at = now - chrono::Duration::minutes(30 + 60 * k as i64);
        json!({"code": format!("hourly{k}"), "created_at": sgcache::time::format(at)})
    });
    site
}

fn client(site: &MockSite) -> UpstreamClient {
    UpstreamClient::new(&sgcache::config::ShotgunConfig {
        url: Some(site.url().parse().expect("the mock site URL")),
        script_name: "sgcache".into(),
        api_key: Secret::new("test-key"),
        max_attempts: 1,
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
}

/// One calibration run at NOW against `site`, applied to `rules`.
async fn run_calibration(site: &MockSite, ctx: &Ctx, rules: &mut Rules) -> Run {
    let view = CacheView {
        schema: std::sync::Arc::new(ctx.cached.clone()),
        site: ctx.site.clone(),
        complete: std::sync::Arc::new(ctx.complete.clone()),
        rules: std::sync::Arc::new(rules.clone()),
    };
    let local = Local {
        view: &view,
        pools: &ctx.pools,
        backend: ctx.pools.backend,
        now: sgcache::time::parse(NOW).unwrap(),
        projects: &[],
    };
    let run = calibrate(&local, &client(site), rules, &[], 100).await;
    for (rule, state) in &run.updates {
        rules.set(*rule, state.clone());
    }
    run
}

#[actix_web::test]
async fn each_variant_is_learned_and_then_agrees_with_the_site() {
    for (name, semantics, expected) in variants() {
        let site = seeded_site(semantics);
        for test_db in databases().await {
            let ctx = copy_mock(&site, &test_db).await;
            let backend = format!("{} ({name})", ctx.pools.backend.name());
            let seed = differential_seed(&backend);

            // Before calibration: whatever depends on a rule passes through.
            let mut rules = Rules::default();
            let d =
                run_differential(&site, &ctx, &rules, differential_cases(&ctx.site, seed)).await;
            assert!(
                d.failures.is_empty(),
                "{backend}: {}",
                d.failures.join("\n")
            );
            let uncalibrated = d.reasons.get("uncalibrated").copied().unwrap_or(0);
            assert!(uncalibrated > 300, "{backend}: {:?}", d.reasons);
            assert!(d.compared > 100, "{backend}: only {} compared", d.compared);

            let run = run_calibration(&site, &ctx, &mut rules).await;
            assert_eq!(run.unreachable, None, "{backend}");
            assert!(run.requests <= 40, "{backend}: {} requests", run.requests);
            for v in &expected {
                assert_eq!(
                    rules.value(v.rule()),
                    Some(*v),
                    "{backend}: {} is {:?}",
                    v.rule(),
                    rules.state(v.rule())
                );
            }

            let d =
                run_differential(&site, &ctx, &rules, differential_cases(&ctx.site, seed)).await;
            eprintln!(
                "{backend}: {} requests; compared {}, passed through {:?}",
                run.requests, d.compared, d.reasons
            );
            assert!(
                d.failures.is_empty(),
                "{backend}: {} mismatches (SGCACHE_TEST_SEED={seed}):\n{}",
                d.failures.len(),
                d.failures.join("\n")
            );
            assert_eq!(d.reasons.get("uncalibrated"), None, "{backend}");
            assert!(d.compared > 800, "{backend}: only {} compared", d.compared);
        }
    }
}

#[actix_web::test]
async fn an_outage_leaves_rules_undecided_and_a_later_run_decides_them() {
    let (_, semantics, expected) = variants().remove(1);
    let site = seeded_site(semantics);
    for test_db in databases().await {
        let ctx = copy_mock(&site, &test_db).await;
        let backend = ctx.pools.backend.name();
        let mut rules = Rules::default();
        site.pause();
        let run = run_calibration(&site, &ctx, &mut rules).await;
        site.resume();
        assert!(run.unreachable.is_some(), "{backend}");
        for rule in Rule::ALL {
            assert_eq!(rules.value(rule), None, "{backend}: {rule}");
        }
        let detail = match rules.state(Rule::EmptyIn) {
            RuleState::Undecided { evidence: Some(e) } => e.detail.clone(),
            other => panic!("{backend}: {other:?}"),
        };
        assert!(detail.contains("could not be asked"), "{detail}");
        // Reads stay correct: what depends on a rule passes through.
        let cases = differential_cases(&ctx.site, differential_seed(backend));
        let d = run_differential(&site, &ctx, &rules, cases).await;
        assert!(
            d.failures.is_empty(),
            "{backend}: {}",
            d.failures.join("\n")
        );
        assert!(
            d.reasons.get("uncalibrated") > Some(&300),
            "{:?}",
            d.reasons
        );

        let run = run_calibration(&site, &ctx, &mut rules).await;
        assert_eq!(run.unreachable, None);
        for v in &expected {
            assert_eq!(rules.value(v.rule()), Some(*v), "{backend}: {}", v.rule());
        }
    }
}

/// The daemon calibrates on its own after priming, stores the rules and serves sorted reads
/// locally with the site's answers.
#[actix_web::test]
async fn the_daemon_calibrates_after_priming() {
    let (_, semantics, expected) = variants().remove(1);
    let site = MockSite::start_with(MockConfig {
        semantics,
        ..MockConfig::default()
    });
    seed_mock(&site);
    for test_db in databases().await {
        let mut config = test_config(&test_db, Some(&site));
        config.calibration.enabled = true;
        config.calibration.pinned.clear();
        config
            .calibration
            .pinned
            .insert("time_zone".into(), "-05:00".into());
        config
            .calibration
            .pinned
            .insert("week_start".into(), "sunday".into());
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        let status = eventually(Duration::from_secs(60), "rules decided", || async {
            let status = status_of(&daemon).await;
            let rules = status["calibration"]["rules"].as_array()?.clone();
            rules
                .iter()
                .all(|r| r["state"] == "decided")
                .then_some(status)
        })
        .await;
        let calibration = &status["calibration"];
        assert!(calibration["runs"].as_u64() >= Some(1), "{calibration}");
        assert!(calibration["requests"].as_u64() >= Some(1), "{calibration}");
        let view = daemon.cache.view();
        for v in &expected {
            assert_eq!(view.rules.value(v.rule()), Some(*v), "{}", v.rule());
        }
        let stored = sgcache::db::rules::load_rules(&daemon.pools.reader)
            .await
            .expect("rules");
        assert_eq!(
            stored.value(Rule::TextOrder),
            Some(RuleValue::TextOrder(TextOrder::CodePoint))
        );
        // Pinned rules are not probed nor stored.
        assert_eq!(stored.value(Rule::TimeZone), None);
        let text_order = calibration["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "text_order")
            .unwrap();
        assert!(
            text_order["evidence"]["requests"].as_u64() >= Some(1),
            "{text_order}"
        );
        assert!(text_order["affects"].as_str().unwrap().contains("sorts"));

        for sorts in [
            json!([{"field_name": "code"}]),
            json!([{"field_name": "sg_cut_in", "direction": "desc"}]),
        ] {
            let args = json!({"type": "Shot", "return_fields": ["code"], "sorts": sorts});
            let mine = api_read(&daemon.url(), &args).await;
            let theirs = api_read(&site.url(), &args).await;
            assert_eq!(mine, theirs, "{sorts}");
        }
        let status = status_of(&daemon).await;
        let reasons = &status["requests"]["pass_through_reasons"];
        assert!(reasons.get("uncalibrated").is_none(), "{reasons}");
        daemon.stop().await;
    }
}

async fn api_read(url: &str, args: &Value) -> Value {
    let body = json!({"method_name": "read",
        "params": [{"script_name": "sgcache", "script_key": "test-key"}, args]});
    let mut r = awc::Client::default()
        .post(format!("{url}/api3/json"))
        .send_json(&body)
        .await
        .expect("POST");
    let v: Value = r.json().limit(8 << 20).await.expect("json");
    v["results"].clone()
}
