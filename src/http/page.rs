//! The status page: `/status` asked for by a browser (`Accept: text/html`).
//!
//! One server-rendered screen, read at a glance: health, event lag, local-hit ratio, read
//! latency, recent pass-through reasons, verification, per-type completeness and the actors.
//! It is rendered from the same typed document `/status` serialises
//! ([`StatusDocument`]), so the two never disagree.
//! No script, inline CSS, refreshed by the browser every 5 s. Every value is escaped.
use std::fmt::Write;

use actix_web::HttpRequest;
use actix_web::http::header::ACCEPT;

use crate::http::status::{ActorsStatus, StatusDocument};

/// True when the client prefers HTML over JSON. Browsers send `text/html,...,*/*;q=0.8`;
/// curl sends `*/*` (JSON); `Accept: application/json` is JSON.
pub fn wants_html(req: &HttpRequest) -> bool {
    let Some(accept) = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut html, mut json) = (None::<f32>, None::<f32>);
    let (mut text_any, mut app_any, mut any) = (None::<f32>, None::<f32>, None::<f32>);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "text/html" | "application/xhtml+xml" => &mut html,
            "application/json" => &mut json,
            "text/*" => &mut text_any,
            "application/*" => &mut app_any,
            "*/*" => &mut any,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    let html = html.or(text_any).unwrap_or(0.0);
    let json = json.or(app_any).or(any).unwrap_or(0.0);
    html > 0.0 && html > json
}

/// HTML-escapes text (element content and double-quoted attribute values).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Short display text for an optional value (escaped); `—` when absent.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| esc(&v.to_string()))
}

/// An integer with thin-space thousands separators.
fn int(n: i64) -> String {
    u64::try_from(n).map_or_else(|_| n.to_string(), thousands)
}

fn opt_int(n: Option<u64>) -> String {
    n.map_or_else(|| "—".to_owned(), thousands)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(
        || "—".to_owned(),
        |ms| {
            if ms < 10.0 {
                format!("{ms:.1} ms")
            } else {
                format!("{ms:.0} ms")
            }
        },
    )
}

/// One row of the actors table: the figures every actor has, under its own names.
struct ActorLine<'a> {
    name: &'static str,
    handled: u64,
    errors: u64,
    mailbox: Option<i64>,
    last_activity: Option<&'a str>,
    last_error: Option<&'a str>,
}

fn actor_lines(a: &ActorsStatus) -> Vec<ActorLine<'_>> {
    fn line<'a>(name: &'static str, s: &'a crate::actors::ActorSnapshot) -> ActorLine<'a> {
        ActorLine {
            name,
            handled: s.handled,
            errors: s.errors,
            mailbox: None,
            last_activity: s.last_activity_at.as_deref(),
            last_error: s.last_error.as_deref(),
        }
    }
    vec![
        ActorLine {
            name: "request_handler",
            handled: a.request_handler.handled,
            errors: a.request_handler.errors,
            mailbox: Some(a.request_handler.in_flight),
            last_activity: a.request_handler.last_activity_at.as_deref(),
            last_error: None,
        },
        ActorLine {
            name: "db_writer",
            handled: a.db_writer.messages,
            errors: a.db_writer.errors,
            mailbox: Some(a.db_writer.mailbox_depth),
            last_activity: a.db_writer.last_commit_at.as_deref(),
            last_error: a.db_writer.last_error.as_deref(),
        },
        line("schema_loader", &a.schema_loader.actor),
        line("scanner", &a.scanner.actor),
        line("event_poller", &a.event_poller.actor),
        line("write_back", &a.write_back.actor),
        line("site_info", &a.site_info),
        line("verifier", &a.verifier.actor),
    ]
}

/// `(level, text)`: level is `ok`, `warn` or `bad`.
fn health(doc: &StatusDocument) -> (&'static str, Vec<String>) {
    let mut level = "ok";
    let mut notes = Vec::new();
    let mut raise = |to: &'static str, note: String| {
        if to == "bad" || level == "ok" {
            level = to;
        }
        notes.push(note);
    };
    if !doc.schema.loaded {
        raise(
            "bad",
            "no schema loaded yet: every read passes through".into(),
        );
    }
    if !doc.upstream.reachable {
        raise("warn", "the site is not reachable".into());
    }
    let priming = doc.schema.priming.len();
    if priming > 0 {
        raise(
            "warn",
            format!("{priming} type(s) still priming (reads of them pass through)"),
        );
    }
    for a in actor_lines(&doc.actors) {
        if let Some(err) = a.last_error {
            raise("warn", format!("{}: {err}", a.name));
        }
    }
    if notes.is_empty() {
        notes.push("serving; every cached type is complete".into());
    }
    (level, notes)
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{display:flex;align-items:center;gap:16px;padding:12px 20px;color:#fff;background:#1d2330}\
header h1{font-size:18px;margin:0}header .meta{opacity:.8;font-size:13px}\
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}\
.ok{background:#1f8a4c}.warn{background:#c77d00}.bad{background:#c0392b}.off{background:#7a8194}\
main{padding:14px 20px;display:grid;grid-template-columns:repeat(4,1fr);gap:12px}\
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
.card h2{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#6b7280;margin:0 0 6px}\
.big{font-size:28px;font-weight:600}.sub{color:#6b7280;font-size:12px}\
.wide{grid-column:span 2}.full{grid-column:span 4}\
table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eceef2}th{color:#6b7280;font-weight:500}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
ul{margin:4px 0;padding-left:18px}";

/// The whole page, from the `/status` document.
pub fn render(doc: &StatusDocument) -> String {
    let mut h = String::with_capacity(16 * 1024);
    header(&mut h, doc);
    overview(&mut h, doc);
    requests(&mut h, doc);
    verification(&mut h, doc);
    cards(&mut h, doc);
    types(&mut h, doc);
    rules(&mut h, doc);
    actors(&mut h, doc);
    let _ = write!(
        h,
        "</main><p class=\"sub\" style=\"padding:0 20px 12px\">started {} · \
         JSON: <code>curl -H 'Accept: application/json' …/status</code> · Prometheus: <code>/metrics</code></p></body></html>",
        esc(&doc.started_at),
    );
    h
}

fn header(h: &mut String, doc: &StatusDocument) {
    let level_text = |level| match level {
        "ok" => "HEALTHY",
        "warn" => "DEGRADED",
        _ => "NOT READY",
    };
    let (level, _) = health(doc);
    let reachable = doc.upstream.reachable;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>sgcache {version} — status</title><style>{STYLE}</style></head><body>\
         <header><h1>sgcache {version}</h1><span class=\"badge {level}\">{level_text}</span>\
         <span class=\"meta\">up {uptime} · {backend} · {role} · site {site} <span class=\"badge {reach_class}\">{reach}</span></span></header><main>",
        version = esc(doc.version),
        level_text = level_text(level),
        uptime = esc(&duration(doc.uptime_seconds)),
        backend = esc(doc.database.backend),
        role = esc(&role(doc)),
        site = esc(&doc.upstream.url),
        reach_class = if reachable { "ok" } else { "bad" },
        reach = if reachable {
            "reachable"
        } else {
            "unreachable"
        },
    );
}

/// `leader since …` or `follower of <leader> since …`, and the takeovers (README: Running
/// several instances).
fn role(doc: &StatusDocument) -> String {
    let c = &doc.cluster;
    let mut text = match (c.role, &c.leader) {
        ("leader", _) => "leader".to_owned(),
        (_, Some(leader)) => format!("follower of {leader}"),
        _ => "follower (no leader yet)".to_owned(),
    };
    if let Some(since) = &c.leader_since {
        text.push_str(&format!(" since {since}"));
    }
    if c.takeovers > 0 {
        text.push_str(&format!(" · {} takeovers", c.takeovers));
    }
    text
}

/// Health and event lag.
fn overview(h: &mut String, doc: &StatusDocument) {
    let (_, notes) = health(doc);
    let _ = write!(h, "<section class=\"card wide\"><h2>Health</h2><ul>");
    for note in &notes {
        let _ = write!(h, "<li>{}</li>", esc(note));
    }
    let _ = write!(h, "</ul></section>");
    let poller = &doc.actors.event_poller;
    let lag = poller.lag_seconds.map(|s| s.max(0) as u64);
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Event lag</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">{}checkpoint {} · newest seen {} · open gaps {}</div></section>",
        lag.map_or_else(|| "—".to_owned(), duration),
        if lag.is_none() {
            "no event applied yet · "
        } else {
            ""
        },
        int(poller.checkpoint),
        int(poller.newest_event_seen),
        thousands(poller.open_gaps),
    );
}

/// Local-hit ratio, read latency, pass-through reasons.
fn requests(h: &mut String, doc: &StatusDocument) {
    let req = &doc.requests;
    let (local, passed) = (req.served_locally, req.passed_through);
    let ratio = (local + passed > 0).then(|| 100.0 * local as f64 / (local + passed) as f64);
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Local-hit ratio</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">{} local · {} passed through · {} faults · {} in flight</div></section>",
        ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.1}%")),
        thousands(local),
        thousands(passed),
        thousands(req.faults),
        int(req.in_flight),
    );
    let _ = write!(
        h,
        "<section class=\"card wide\"><h2>Read latency</h2><table>\
         <tr><th>served</th><th class=\"n\">reads</th><th class=\"n\">p50</th><th class=\"n\">p95</th><th class=\"n\">p99</th></tr>"
    );
    let read = &doc.latency.read;
    for (label, l) in [
        ("locally", &read.local),
        ("passed through", &read.pass_through),
    ] {
        let _ = write!(
            h,
            "<tr><td>{label}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            thousands(l.count),
            ms(l.p50_ms),
            ms(l.p95_ms),
            ms(l.p99_ms),
        );
    }
    let _ = write!(h, "</table></section>");
    let mut reasons: Vec<(&str, u64)> = req
        .pass_through_reasons
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let _ = write!(h, "<section class=\"card\"><h2>Pass-through reasons</h2>");
    if reasons.is_empty() {
        let _ = write!(h, "<div class=\"sub\">nothing passed through yet</div>");
    } else {
        let _ = write!(h, "<table>");
        for (reason, n) in reasons.iter().take(8) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(reason),
                thousands(*n)
            );
        }
        let _ = write!(h, "</table><div class=\"sub\">since start</div>");
    }
    let _ = write!(h, "</section>");
}

fn verification(h: &mut String, doc: &StatusDocument) {
    let verifier = &doc.actors.verifier;
    let _ = write!(h, "<section class=\"card\"><h2>Verification</h2>");
    if !verifier.enabled {
        let _ = write!(
            h,
            "<span class=\"badge off\">verification off</span></section>"
        );
        return;
    }
    let mode = serde_json::to_value(verifier.mode).unwrap_or_default();
    let _ = write!(
        h,
        "<div class=\"big\">{}</div><div class=\"sub\">mismatches of {} verified reads \
         ({}) · {} healed</div>",
        thousands(verifier.mismatched),
        thousands(verifier.verified),
        esc(mode.as_str().unwrap_or_default()),
        thousands(verifier.healed),
    );
    if !verifier.recent_mismatches.is_empty() {
        let _ = write!(h, "<ul class=\"sub\">");
        for m in verifier.recent_mismatches.iter().take(3) {
            let _ = write!(
                h,
                "<li>{} {} · {} · {}</li>",
                esc(&m.entity_type),
                esc(&serde_json::to_string(&m.entity_ids).unwrap_or_default()),
                esc(&m.fields.join(", ")),
                esc(&m.at),
            );
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(h, "</section>");
}

/// Cache size, write-back, scanner, schema.
fn cards(h: &mut String, doc: &StatusDocument) {
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Cache</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">database size · {} of {} types complete · measured {}</div></section>",
        doc.cache
            .database_bytes
            .map_or_else(|| "—".to_owned(), bytes),
        thousands(doc.schema.complete_types as u64),
        thousands(doc.schema.cached_types as u64),
        opt(doc.cache.measured_at.as_deref()),
    );
    let wb = &doc.actors.write_back;
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Write-back</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">client writes cached · {} passed-through reads · {} answered before \
         their write-back (write_back_wait)</div></section>",
        thousands(wb.writes),
        thousands(wb.passed_through_reads),
        thousands(wb.wait_exceeded),
    );
    let scanner = &doc.actors.scanner;
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Scanner</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">{} full · {} incremental scans · next run {}</div></section>",
        if scanner.running { "scanning" } else { "idle" },
        thousands(scanner.full_scans),
        thousands(scanner.incremental_scans),
        opt(scanner.next_run_at.as_deref()),
    );
    let detail = doc.actors.schema_loader.detail.as_ref();
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Schema</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">source {} · loaded {}</div></section>",
        if doc.schema.loaded {
            "loaded"
        } else {
            "not loaded"
        },
        opt(detail.map(|d| d.source)),
        opt(detail.map(|d| d.loaded_at.as_str())),
    );
}

/// Per-type completeness.
fn types(h: &mut String, doc: &StatusDocument) {
    let scanner = &doc.actors.scanner;
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Types</h2><table><tr><th>type</th><th>state</th>\
         <th class=\"n\">active rows</th><th class=\"n\">retired rows</th><th>last scan</th></tr>"
    );
    for (name, t) in &doc.cache.types {
        let scanning = scanner.current.as_ref().filter(|c| &c.entity_type == name);
        let failing = scanner.failing_types.get(name);
        let (class, state) = match scanning {
            _ if t.complete => ("ok", "complete".to_owned()),
            None if failing.is_some() => ("bad", "failing".to_owned()),
            Some(current) => {
                let done = current.scanned;
                let state = match current.total {
                    Some(total) if total > 0 => {
                        format!("priming {}%", (100 * done / total).min(100))
                    }
                    _ => format!("priming ({done})"),
                };
                ("warn", state)
            }
            None => ("warn", "priming".to_owned()),
        };
        let last_scan = match failing {
            Some(f) => format!(
                "failed {} time(s): {} · retry {}",
                f.failures,
                esc(&f.last_error),
                opt(f.retry_at.as_deref())
            ),
            None => last_scan(scanner, name),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td><span class=\"badge {class}\">{}</span></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(name),
            esc(&state),
            opt_int(t.active),
            opt_int(t.retired),
            last_scan,
        );
    }
    let _ = write!(h, "</table></section>");
    uncached_fields(h, doc);
}

/// The last finished scan of a type, in one line.
fn last_scan(scanner: &crate::actors::scanner::ScannerSnapshot, name: &str) -> String {
    scanner.types.get(name).map_or_else(
        || "—".to_owned(),
        |last| {
            format!(
                "{} · {} entities · {:.1} s",
                esc(last.kind),
                thousands(last.entities),
                last.seconds
            )
        },
    )
}

/// Fields left uncached because the site sent values the cache cannot store.
fn uncached_fields(h: &mut String, doc: &StatusDocument) {
    if doc.schema.uncached_fields.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Fields left uncached</h2><table><tr><th>type</th>\
         <th>field</th><th>reason</th><th>since</th></tr>"
    );
    for f in &doc.schema.uncached_fields {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.entity_type),
            esc(&f.field),
            esc(&f.reason),
            esc(&f.since),
        );
    }
    let _ = write!(h, "</table></section>");
}

/// The site's calibrated rules: state, value, evidence, what they affect.
fn rules(h: &mut String, doc: &StatusDocument) {
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Site rules</h2><table><tr><th>rule</th><th>state</th>\
         <th>value</th><th>evidence</th><th>affects</th></tr>"
    );
    for r in &doc.calibration.rules {
        let class = if r.value.is_some() { "ok" } else { "warn" };
        let evidence = r.evidence.as_ref().map_or_else(
            || "—".to_owned(),
            |e| format!("{} · {} requests · {}", e.probed_at, e.requests, e.detail),
        );
        let _ = write!(
            h,
            "<tr><td>{}</td><td><span class=\"badge {class}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.rule),
            esc(r.state),
            opt(r.value.as_deref()),
            esc(&evidence),
            esc(r.affects),
        );
    }
    let _ = write!(h, "</table></section>");
}

fn actors(h: &mut String, doc: &StatusDocument) {
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Actors</h2><table><tr><th>actor</th><th class=\"n\">handled</th>\
         <th class=\"n\">errors</th><th class=\"n\">mailbox</th><th>last activity</th><th>last error</th></tr>"
    );
    for a in actor_lines(&doc.actors) {
        if a.name == "verifier" && !doc.actors.verifier.enabled {
            continue;
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(a.name),
            thousands(a.handled),
            thousands(a.errors),
            a.mailbox.map_or_else(|| "—".to_owned(), int),
            opt(a.last_activity),
            opt(a.last_error),
        );
    }
    let _ = write!(h, "</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn negotiation_prefers_json_unless_html_is_asked_for() {
        let req = |accept: Option<&str>| {
            let mut r = TestRequest::default();
            if let Some(a) = accept {
                r = r.insert_header((ACCEPT, a));
            }
            wants_html(&r.to_http_request())
        };
        assert!(!req(None));
        assert!(!req(Some("*/*")));
        assert!(!req(Some("application/json")));
        assert!(req(Some("text/html")));
        assert!(req(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!req(Some("application/json, text/html;q=0.5")));
    }

    #[test]
    fn everything_is_escaped() {
        let mut doc = StatusDocument {
            version: "<script>",
            ..StatusDocument::default()
        };
        doc.upstream.url = "https://x/\"><img src=x onerror=alert(1)>".into();
        doc.requests.pass_through_reasons.insert("<b>why</b>", 3);
        doc.cache.types.insert(
            "<T>".into(),
            crate::http::status::CacheTypeStatus {
                active: Some(1),
                retired: Some(0),
                complete: false,
            },
        );
        doc.actors.db_writer.last_error = Some("<oops>".into());
        let html = render(&doc);
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>why"));
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;oops&gt;"));
        assert!(html.contains("&lt;T&gt;") && html.contains("verification off"));
        assert!(html.contains("NOT READY"), "no schema loaded: not ready");
    }
}
