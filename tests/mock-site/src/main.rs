//! `sgcache-mock-site [--port N] [--workers N] [--schema PATH] [--seed-shots N]`: run the mock in the foreground.

use serde_json::json;
use sgcache_mock_site::{MockConfig, MockSite};

fn usage() -> ! {
    eprintln!("usage: sgcache-mock-site [--port N] [--workers N] [--schema PATH] [--seed-shots N]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut config = MockConfig::default();
    let mut seed_shots = 0usize;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => config.port = value().parse().unwrap_or_else(|_| usage()),
            "--workers" => config.workers = value().parse().unwrap_or_else(|_| usage()),
            "--schema" => {
                let path = value();
                config = match MockConfig::with_schema_file(&path) {
                    Ok(c) => MockConfig {
                        port: config.port,
                        ..c
                    },
                    Err(e) => {
                        eprintln!("cannot load schema: {e}");
                        std::process::exit(1)
                    }
                }
            }
            "--seed-shots" => seed_shots = value().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let site = MockSite::start_with(config);
    if seed_shots > 0 {
        let project = site.create("Project", json!({"name": "Mock Project"}));
        let pid = project["id"].as_i64().unwrap_or(1);
        site.seed("Shot", seed_shots, |i| {
            json!({"code": format!("sh{:05}", i + 1), "project": {"type": "Project", "id": pid}})
        });
    }
    println!("{}", site.url());
    println!("scripts: sgcache/test-key (events), quiet_script/quiet-key (no events)");
    loop {
        std::thread::park();
    }
}
