//! The status page: `/status` asked for by a browser (`Accept: text/html`).
//!
//! One server-rendered screen, read at a glance: health, event lag, local-hit ratio, read
//! latency, recent pass-through reasons, verification, per-type completeness and the actors.
//! It is built from the same JSON document `/status` returns, so the two never disagree.
//! No script, inline CSS, refreshed by the browser every 5 s. Every value is escaped.
use std::fmt::Write;

use actix_web::HttpRequest;
use actix_web::http::header::ACCEPT;
use serde_json::Value as Json;

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

/// A JSON value as short display text (escaped).
fn show(v: &Json) -> String {
    match v {
        Json::Null => "—".to_owned(),
        Json::String(s) => esc(s),
        Json::Bool(b) => (if *b { "yes" } else { "no" }).to_owned(),
        Json::Number(n) => match n.as_u64() {
            Some(u) => thousands(u),
            None => esc(&n.to_string()),
        },
        other => esc(&other.to_string()),
    }
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

fn ms(v: &Json) -> String {
    v.as_f64().map_or_else(
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

/// `(level, text)`: level is `ok`, `warn` or `bad`.
fn health(doc: &Json) -> (&'static str, Vec<String>) {
    let mut level = "ok";
    let mut notes = Vec::new();
    let mut raise = |to: &'static str, note: String, level: &mut &'static str| {
        if to == "bad" || *level == "ok" {
            *level = to;
        }
        notes.push(note);
    };
    if doc["schema"]["loaded"] != true {
        raise(
            "bad",
            "no schema loaded yet: every read passes through".into(),
            &mut level,
        );
    }
    if doc["upstream"]["reachable"] != true {
        raise("warn", "the site is not reachable".into(), &mut level);
    }
    let priming = doc["schema"]["priming"].as_array().map_or(0, Vec::len);
    if priming > 0 {
        raise(
            "warn",
            format!("{priming} type(s) still priming (reads of them pass through)"),
            &mut level,
        );
    }
    if let Some(actors) = doc["actors"].as_object() {
        for (name, a) in actors {
            if let Some(err) = a["last_error"].as_str() {
                raise("warn", format!("{name}: {err}"), &mut level);
            }
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
pub fn render(doc: &Json) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let (level, notes) = health(doc);
    let level_text = match level {
        "ok" => "HEALTHY",
        "warn" => "DEGRADED",
        _ => "NOT READY",
    };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>sgcache {version} — status</title><style>{STYLE}</style></head><body>\
         <header><h1>sgcache {version}</h1><span class=\"badge {level}\">{level_text}</span>\
         <span class=\"meta\">up {uptime} · {backend} · site {site} <span class=\"badge {reach_class}\">{reach}</span></span></header><main>",
        version = show(&doc["version"]),
        uptime = esc(&duration(doc["uptime_seconds"].as_u64().unwrap_or(0))),
        backend = show(&doc["database"]["backend"]),
        site = show(&doc["upstream"]["url"]),
        reach_class = if doc["upstream"]["reachable"] == true {
            "ok"
        } else {
            "bad"
        },
        reach = if doc["upstream"]["reachable"] == true {
            "reachable"
        } else {
            "unreachable"
        },
    );

    // Health.
    let _ = write!(h, "<section class=\"card wide\"><h2>Health</h2><ul>");
    for note in &notes {
        let _ = write!(h, "<li>{}</li>", esc(note));
    }
    let _ = write!(h, "</ul></section>");

    // Event lag.
    let poller = &doc["actors"]["event_poller"];
    let lag = poller["lag_seconds"].as_u64();
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
        show(&poller["checkpoint"]),
        show(&poller["newest_event_seen"]),
        show(&poller["open_gaps"]),
    );

    // Local-hit ratio.
    let req = &doc["requests"];
    let local = req["served_locally"].as_u64().unwrap_or(0);
    let passed = req["passed_through"].as_u64().unwrap_or(0);
    let ratio = (local + passed > 0).then(|| 100.0 * local as f64 / (local + passed) as f64);
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Local-hit ratio</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">{} local · {} passed through · {} faults · {} in flight</div></section>",
        ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.1}%")),
        thousands(local),
        thousands(passed),
        show(&req["faults"]),
        show(&req["in_flight"]),
    );

    // Latency.
    let _ = write!(
        h,
        "<section class=\"card wide\"><h2>Read latency</h2><table>\
         <tr><th>served</th><th class=\"n\">reads</th><th class=\"n\">p50</th><th class=\"n\">p95</th><th class=\"n\">p99</th></tr>"
    );
    for (label, key) in [("locally", "local"), ("passed through", "pass_through")] {
        let l = &doc["latency"]["read"][key];
        let _ = write!(
            h,
            "<tr><td>{label}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            show(&l["count"]),
            ms(&l["p50_ms"]),
            ms(&l["p95_ms"]),
            ms(&l["p99_ms"]),
        );
    }
    let _ = write!(h, "</table></section>");

    // Pass-through reasons.
    let mut reasons: Vec<(String, u64)> = req["pass_through_reasons"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
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

    // Verification.
    let verifier = &doc["actors"]["verifier"];
    let _ = write!(h, "<section class=\"card\"><h2>Verification</h2>");
    if verifier["enabled"] == true {
        // The verifier's `/status` figures (`actors::verifier::VerifierStats::snapshot`).
        let _ = write!(
            h,
            "<div class=\"big\">{}</div><div class=\"sub\">mismatches of {} verified reads \
             ({}) · {} healed</div>",
            show(&verifier["mismatched"]),
            show(&verifier["verified"]),
            show(&verifier["mode"]),
            show(&verifier["healed"]),
        );
        if let Some(recent) = verifier["recent_mismatches"]
            .as_array()
            .filter(|r| !r.is_empty())
        {
            let _ = write!(h, "<ul class=\"sub\">");
            for m in recent.iter().take(3) {
                let fields = m["fields"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(Json::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let _ = write!(
                    h,
                    "<li>{} {} · {} · {}</li>",
                    show(&m["entity_type"]),
                    show(&m["entity_ids"]),
                    esc(&fields),
                    show(&m["at"]),
                );
            }
            let _ = write!(h, "</ul>");
        }
    } else {
        let _ = write!(h, "<span class=\"badge off\">verification off</span>");
    }
    let _ = write!(h, "</section>");

    // Cache size, write-back, scanner, schema.
    let cache = &doc["cache"];
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Cache</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">database size · {} of {} types complete · measured {}</div></section>",
        cache["database_bytes"]
            .as_u64()
            .map_or_else(|| "—".to_owned(), bytes),
        show(&doc["schema"]["complete_types"]),
        show(&doc["schema"]["cached_types"]),
        show(&cache["measured_at"]),
    );
    let wb = &doc["actors"]["write_back"];
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Write-back</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">client writes cached · {} passed-through reads · {} answered before \
         their write-back (write_back_wait)</div></section>",
        show(&wb["writes"]),
        show(&wb["passed_through_reads"]),
        show(&wb["wait_exceeded"]),
    );
    let scanner = &doc["actors"]["scanner"];
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Scanner</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">{} full · {} incremental scans · next run {}</div></section>",
        if scanner["running"] == true {
            "scanning"
        } else {
            "idle"
        },
        show(&scanner["full_scans"]),
        show(&scanner["incremental_scans"]),
        show(&scanner["next_run_at"]),
    );
    let loader = &doc["actors"]["schema_loader"];
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Schema</h2><div class=\"big\">{}</div>\
         <div class=\"sub\">source {} · loaded {}</div></section>",
        if doc["schema"]["loaded"] == true {
            "loaded"
        } else {
            "not loaded"
        },
        show(&loader["source"]),
        show(&loader["loaded_at"]),
    );

    // Per-type completeness.
    let scanning = &doc["actors"]["scanner"]["current"];
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Types</h2><table><tr><th>type</th><th>state</th>\
         <th class=\"n\">active rows</th><th class=\"n\">retired rows</th><th>last scan</th></tr>"
    );
    if let Some(types) = cache["types"].as_object() {
        for (name, t) in types {
            let (class, state) = if t["complete"] == true {
                ("ok", "complete".to_owned())
            } else if scanning["entity_type"].as_str() == Some(name.as_str()) {
                let total = scanning["total"].as_u64();
                let done = scanning["scanned"].as_u64().unwrap_or(0);
                (
                    "warn",
                    match total {
                        Some(total) if total > 0 => {
                            format!("priming {}%", (100 * done / total).min(100))
                        }
                        _ => format!("priming ({done})"),
                    },
                )
            } else {
                ("warn", "priming".to_owned())
            };
            let last = &doc["actors"]["scanner"]["types"][name];
            let last_scan = if last.is_object() {
                format!(
                    "{} · {} entities · {:.1} s",
                    show(&last["kind"]),
                    show(&last["entities"]),
                    last["seconds"].as_f64().unwrap_or(0.0)
                )
            } else {
                "—".to_owned()
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td><span class=\"badge {class}\">{}</span></td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                esc(name),
                esc(&state),
                show(&t["active"]),
                show(&t["retired"]),
                last_scan,
            );
        }
    }
    let _ = write!(h, "</table></section>");

    // Actors.
    let _ = write!(
        h,
        "<section class=\"card full\"><h2>Actors</h2><table><tr><th>actor</th><th class=\"n\">handled</th>\
         <th class=\"n\">errors</th><th class=\"n\">mailbox</th><th>last activity</th><th>last error</th></tr>"
    );
    if let Some(actors) = doc["actors"].as_object() {
        for (name, a) in actors {
            if name == "verifier" && a["enabled"] != true {
                continue;
            }
            let handled = a
                .get("handled")
                .or_else(|| a.get("messages"))
                .unwrap_or(&Json::Null);
            let mailbox = a
                .get("mailbox_depth")
                .or_else(|| a.get("in_flight"))
                .unwrap_or(&Json::Null);
            let last = a
                .get("last_activity_at")
                .or_else(|| a.get("last_commit_at"))
                .unwrap_or(&Json::Null);
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                show(handled),
                show(&a["errors"]),
                show(mailbox),
                show(last),
                show(&a["last_error"]),
            );
        }
    }
    let _ = write!(
        h,
        "</table></section></main><p class=\"sub\" style=\"padding:0 20px 12px\">started {} · \
         JSON: <code>curl -H 'Accept: application/json' …/status</code> · Prometheus: <code>/metrics</code></p></body></html>",
        show(&doc["started_at"]),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use serde_json::json;

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
        let doc = json!({
            "version": "<script>",
            "upstream": {"url": "https://x/\"><img src=x onerror=alert(1)>", "reachable": false},
            "requests": {"pass_through_reasons": {"<b>why</b>": 3}},
            "cache": {"types": {"<T>": {"complete": false, "active": 1, "retired": 0}}},
            "actors": {"db_writer": {"last_error": "<oops>"}},
        });
        let html = render(&doc);
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>why"));
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;oops&gt;"));
        assert!(html.contains("verification off"));
    }
}
