//! One struct per configuration section, with its defaults.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::Secret;
use crate::schema::SelectionRules;

/// A Shotgun site URL: http(s) with a host. Keeps the text it was given (shown on `/status`).
#[derive(Clone, PartialEq, Eq)]
pub struct SiteUrl {
    text: String,
    url: url::Url,
}

impl SiteUrl {
    /// Parses a site URL; the problem is one line.
    pub fn parse(text: &str) -> Result<SiteUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e}): {text:?}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("must be an http(s) URL with a host, got {text:?}"));
        }
        Ok(SiteUrl {
            text: text.to_owned(),
            url,
        })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// `""` (and no value) is "not configured"; anything else must be a site URL.
    fn deserialize_optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SiteUrl>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        if text.is_empty() {
            return Ok(None);
        }
        SiteUrl::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for SiteUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<SiteUrl, String> {
        SiteUrl::parse(s)
    }
}

impl fmt::Display for SiteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SiteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl Serialize for SiteUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShotgunConfig {
    /// The site, e.g. `https://studio.shotgrid.autodesk.com`; `None` when not configured
    /// (`url = ""` or no `url` in the file).
    #[serde(default, deserialize_with = "SiteUrl::deserialize_optional")]
    pub url: Option<SiteUrl>,
    pub script_name: String,
    pub api_key: Secret,
    /// Timeout of one request to the site.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts for one request on transport errors, 5xx and 429 (1 = no retry).
    pub max_attempts: u32,
    /// First back-off delay; doubled each retry, with jitter.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://user@host/db`.
    pub url: String,
    /// Reader pool size (the DbWriter has its own single connection).
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Largest accepted api3 request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a client's write waits for its write-back to commit before it is answered
    /// anyway (reads of the type then pass through until the write-back lands).
    #[serde(with = "humantime_serde")]
    pub write_back_wait: Duration,
    /// On SIGTERM/SIGINT: how long in-flight requests, write-backs and the DbWriter's mailbox
    /// get to finish before sgcache exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long ids missing below the newest event seen are waited for (re-reading from the
    /// lowest of them) before they are declared never to appear.
    #[serde(with = "humantime_serde")]
    pub gap_window: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How far back the first scan after start-up reaches when no checkpoint is stored.
    #[serde(with = "humantime_serde")]
    pub since: Duration,
    /// Overlap subtracted from the previous scan's start, against clock skew.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Entities per page read from the site.
    pub page_size: u32,
    /// Only cache entities of these project ids (empty = all projects).
    pub projects: Vec<i64>,
    /// How often the ids of active rows are compared with the site's, per type, to find rows
    /// retired or deleted without an event or an `updated_at` change.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
}

/// Who gets locally answered reads, and how long credential checks are remembered.
///
/// The site filters reads by the caller's permission rules, which a shared cache cannot
/// replicate: only the callers named here (trusted pipeline scripts and logins) are answered
/// from the cache; everyone else's reads pass through so the site applies its rules.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Script names whose reads may be answered locally. Empty = only `shotgun.script_name`.
    pub local_scripts: Vec<String>,
    /// HumanUser logins (user_login, or sudo_as_login) whose reads may be answered locally.
    pub local_logins: Vec<String>,
    /// How long a credential the site accepted is trusted without asking again.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a credential the site rejected is refused without asking again.
    #[serde(with = "humantime_serde")]
    pub rejection_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            local_scripts: Vec::new(),
            local_logins: Vec::new(),
            ttl: Duration::from_secs(600),
            rejection_ttl: Duration::from_secs(30),
        }
    }
}

/// Which locally answered reads the verifier re-runs against the site.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// No verification (the default).
    #[default]
    Off,
    /// A random fraction (`sample_rate`) of the locally answered reads.
    Sample,
    /// Every locally answered read.
    All,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// `off`, `sample` (a fraction `sample_rate` of local reads) or `all`.
    pub mode: VerifyMode,
    /// With `mode = "sample"`: fraction of locally answered reads re-run (0.0 - 1.0).
    pub sample_rate: f64,
    /// Cap on the verifier's requests to the site (re-runs and healing reads), per second.
    pub max_requests_per_second: f64,
    /// Reads waiting for verification; when full, new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// After a failed re-run (site down, timeout), wait this long before the next one.
    #[serde(with = "humantime_serde")]
    pub error_backoff: Duration,
    /// A difference on an entity the site changed at most this long before the cache answered
    /// still counts as "changed since" (the event log reaches the cache a moment after the
    /// site changes; the site's `updated_at` has whole seconds).
    #[serde(with = "humantime_serde")]
    pub changed_since_leeway: Duration,
    /// Mark a type with repeated mismatches incomplete, so its reads pass through until a
    /// full rescan completes.
    pub quarantine: bool,
    /// Mismatches of one type (since it was last quarantined) that trigger the quarantine.
    pub quarantine_after: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// A saved `schema_read` reply (JSON) used instead of asking the site.
    pub file: Option<PathBuf>,
    /// A saved `schema_entity_read` reply (JSON), optional with `file`.
    pub entity_file: Option<PathBuf>,
    /// Entity types and fields to cache: `Shot`, `Shot.sg_*`, `*.code`, `Task.task_assignees`.
    pub include: Vec<String>,
    /// Types or fields never cached: `Version`, `*.description`.
    pub exclude: Vec<String>,
    /// How often the site's schema is fetched again and compared.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            file: None,
            entity_file: None,
            include: Vec::new(),
            exclude: Vec::new(),
            refresh_interval: Duration::from_secs(600),
        }
    }
}

impl SchemaConfig {
    pub fn rules(&self) -> SelectionRules {
        SelectionRules {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `sgcache=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for ShotgunConfig {
    fn default() -> Self {
        ShotgunConfig {
            url: None,
            script_name: String::new(),
            api_key: Secret::default(),
            timeout: Duration::from_secs(60),
            max_attempts: 4,
            retry_backoff: Duration::from_millis(500),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://var/sgcache.sqlite".to_owned(),
            max_connections: 8,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8010".to_owned(),
            workers: 0,
            max_body_bytes: 16 * 1024 * 1024,
            write_back_wait: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            poll_interval: Duration::from_secs(2),
            gap_window: Duration::from_secs(300),
        }
    }
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            enabled: true,
            interval: Duration::from_secs(300),
            since: Duration::from_secs(3600),
            leeway: Duration::from_secs(5),
            page_size: 500,
            projects: Vec::new(),
            reconcile_interval: Duration::from_secs(3600),
        }
    }
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            mode: VerifyMode::Off,
            sample_rate: 0.01,
            max_requests_per_second: 2.0,
            queue_capacity: 100,
            error_backoff: Duration::from_secs(30),
            changed_since_leeway: Duration::from_secs(5),
            quarantine: false,
            quarantine_after: 3,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}
