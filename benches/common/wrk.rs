//! Load from a second process: `wrk` (`apt-get install -y wrk`), one thread.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A placeholder in a request body that wrk's Lua script replaces per request by a random
/// integer of a range (an id, a page number).
pub const MARK: i64 = 987_654_321;

pub struct WrkResult {
    pub p50: Duration,
    pub p99: Duration,
    pub rps: f64,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| (&s[..i], &s[i..]))?;
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Is wrk installed?
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// Runs wrk against `url` for `secs` with `conns` connections; `body` (with [`MARK`] replaced
/// by a random integer in `range`) is POSTed, or GET when `None`.
pub fn run(
    url: &str,
    body: Option<&str>,
    range: (i64, i64),
    conns: u32,
    secs: u64,
    dir: &Path,
) -> WrkResult {
    let script = dir.join(format!("wrk_{conns}.lua"));
    let lua = match body {
        None => String::new(),
        Some(body) => {
            let mark = MARK.to_string();
            let (pre, post) = body.split_once(&mark).unwrap_or((body, ""));
            let req = if body.contains(&mark) {
                format!(
                    "request = function()\n  return wrk.format(nil, nil, nil, pre .. math.random({}, {}) .. post)\nend\n",
                    range.0, range.1
                )
            } else {
                "request = function()\n  return wrk.format(nil, nil, nil, pre)\nend\n".to_owned()
            };
            format!(
                "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal pre = [==[{pre}]==]\nlocal post = [==[{post}]==]\n{req}"
            )
        }
    };
    std::fs::write(&script, lua).expect("write wrk script");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let pct = |p: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(parse_duration)
            .unwrap_or_else(|| panic!("no {p} in wrk output:\n{text}"))
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    if let Some(l) = text.lines().find(|l| l.contains("Socket errors")) {
        eprintln!("wrk: {l}");
    }
    if rps < 100.0 {
        eprintln!("wrk: few requests against {url}:\n{text}");
    }
    WrkResult {
        p50: pct("50%"),
        p99: pct("99%"),
        rps,
    }
}
