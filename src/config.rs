//! Configuration: `config.toml`, then `SGCACHE_<SECTION>_<KEY>` environment variables, then
//! command-line flags. Unknown keys are errors; durations are humantime strings (`"2s"`, `"5m"`).
//!
//! Every problem is reported as one line that names the key (`scanner.interval: ...`).
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::schema::SelectionRules;

/// The configuration sections; an environment variable `SGCACHE_<SECTION>_<KEY>` overrides
/// `<section>.<key>`. Variables naming another prefix (e.g. `SGCACHE_TEST_PG_URL`) are ignored.
pub const SECTIONS: &[&str] = &[
    "shotgun", "database", "server", "auth", "events", "scanner", "verify", "schema", "log",
];

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SGCACHE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{key}: {problem}")]
    Key { key: String, problem: String },
}

impl ConfigError {
    fn key(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    fn from_figment(err: figment::Error) -> Self {
        // figment reports nested errors one by one; the first names the key precisely enough.
        let err = err
            .into_iter()
            .next()
            .unwrap_or_else(|| figment::Error::from("invalid configuration".to_owned()));
        let key = err.path.join(".");
        let mut problem = err.kind.to_string();
        if let Some(figment::Source::File(path)) =
            err.metadata.as_ref().and_then(|m| m.source.as_ref())
        {
            problem = format!("{problem} (in {})", path.display());
        }
        if key.is_empty() {
            ConfigError::Invalid(problem)
        } else {
            ConfigError::Key { key, problem }
        }
    }
}

/// A secret (script key, password). `Debug`, `Display` and `Serialize` never show it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"********\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "********" })
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub shotgun: ShotgunConfig,
    pub database: DatabaseConfig,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub events: EventsConfig,
    pub scanner: ScannerConfig,
    pub verify: VerifyConfig,
    pub schema: SchemaConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShotgunConfig {
    /// The site, e.g. `https://studio.shotgrid.autodesk.com`. Empty means "not configured".
    pub url: String,
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
            url: String::new(),
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

/// Overrides given on the command line (highest precedence). Unset flags override nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shotgun: Option<ShotgunOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<UrlOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<BindOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverride>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ShotgunOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
#[derive(Clone, Debug, Default, Serialize)]
pub struct UrlOverride {
    pub url: String,
}
#[derive(Clone, Debug, Default, Serialize)]
pub struct BindOverride {
    pub bind: String,
}
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// Which checks `validate` runs: the daemon and `schema fetch` need the site's credentials,
/// `migrate` and `schema show` do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Database,
    Site,
}

impl Config {
    /// Loads `path` (a missing file is an error unless it is the default `config.toml`), then
    /// the environment, then `overrides`.
    pub fn load(
        path: &Path,
        path_is_explicit: bool,
        overrides: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        Self::load_from(path, path_is_explicit, overrides, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_from(
        path: &Path,
        path_is_explicit: bool,
        overrides: &CliOverrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        if path_is_explicit && !path.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.exists() {
            figment = figment.merge(Toml::file(path));
        }
        for (key, value) in env {
            let Some(key) = env_key(&key) else { continue };
            // A dotted key nests the value under its section.
            figment = figment.merge(Serialized::default(&key, parse_env_value(&value)));
        }
        figment = figment.merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate_values()?;
        Ok(config)
    }

    /// Value checks that do not depend on what the command needs.
    fn validate_values(&self) -> Result<(), ConfigError> {
        if !self.shotgun.url.is_empty() {
            let url = url::Url::parse(&self.shotgun.url).map_err(|e| {
                ConfigError::key(
                    "shotgun.url",
                    format!("not a URL ({e}): {:?}", self.shotgun.url),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::key(
                    "shotgun.url",
                    format!(
                        "must be an http(s) URL with a host, got {:?}",
                        self.shotgun.url
                    ),
                ));
            }
        }
        if self.shotgun.max_attempts == 0 {
            return Err(ConfigError::key(
                "shotgun.max_attempts",
                "must be at least 1",
            ));
        }
        if self.shotgun.timeout.is_zero() {
            return Err(ConfigError::key(
                "shotgun.timeout",
                "must be greater than 0",
            ));
        }
        crate::schema::Backend::from_url(&self.database.url)
            .map_err(|problem| ConfigError::key("database.url", problem))?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::key(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        self.server.bind.parse::<SocketAddr>().map_err(|e| {
            ConfigError::key(
                "server.bind",
                format!("{e}: {:?} (expected HOST:PORT)", self.server.bind),
            )
        })?;
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.events.poll_interval.is_zero() {
            return Err(ConfigError::key(
                "events.poll_interval",
                "must be greater than 0",
            ));
        }
        if self.schema.refresh_interval.is_zero() {
            return Err(ConfigError::key(
                "schema.refresh_interval",
                "must be greater than 0",
            ));
        }
        if self.scanner.interval.is_zero() {
            return Err(ConfigError::key(
                "scanner.interval",
                "must be greater than 0",
            ));
        }
        if self.scanner.reconcile_interval.is_zero() {
            return Err(ConfigError::key(
                "scanner.reconcile_interval",
                "must be greater than 0",
            ));
        }
        if !(1..=5000).contains(&self.scanner.page_size) {
            return Err(ConfigError::key(
                "scanner.page_size",
                "must be between 1 and 5000",
            ));
        }
        if !(0.0..=1.0).contains(&self.verify.sample_rate) {
            return Err(ConfigError::key(
                "verify.sample_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        let rate = self.verify.max_requests_per_second;
        if rate.is_nan() || rate <= 0.0 {
            return Err(ConfigError::key(
                "verify.max_requests_per_second",
                "must be greater than 0",
            ));
        }
        if self.verify.queue_capacity < 1 {
            return Err(ConfigError::key(
                "verify.queue_capacity",
                "must be at least 1",
            ));
        }
        if self.verify.quarantine_after < 1 {
            return Err(ConfigError::key(
                "verify.quarantine_after",
                "must be at least 1",
            ));
        }
        if self.schema.entity_file.is_some() && self.schema.file.is_none() {
            return Err(ConfigError::key("schema.entity_file", "needs schema.file"));
        }
        for (key, path) in [
            ("schema.file", &self.schema.file),
            ("schema.entity_file", &self.schema.entity_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(ConfigError::key(
                    key,
                    format!("no such file: {}", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Checks that what a command needs is configured.
    pub fn validate_for(&self, needs: Needs) -> Result<(), ConfigError> {
        if needs == Needs::Site {
            if self.shotgun.url.is_empty() {
                return Err(ConfigError::key(
                    "shotgun.url",
                    "missing: set it in config.toml or SGCACHE_SHOTGUN_URL",
                ));
            }
            if self.shotgun.script_name.is_empty() {
                return Err(ConfigError::key(
                    "shotgun.script_name",
                    "missing credentials: set it in config.toml or SGCACHE_SHOTGUN_SCRIPT_NAME",
                ));
            }
            if self.shotgun.api_key.is_empty() {
                return Err(ConfigError::key(
                    "shotgun.api_key",
                    "missing credentials: set it in config.toml or SGCACHE_SHOTGUN_API_KEY",
                ));
            }
            if self.schema.include.is_empty() {
                return Err(ConfigError::key(
                    "schema.include",
                    "empty: nothing would be cached; name at least one entity type",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, with secrets and database passwords masked.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        masked.database.url = mask_url_password(&masked.database.url);
        toml::to_string_pretty(&masked)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// `SGCACHE_SHOTGUN_API_KEY` → `shotgun.api_key`; `None` for variables of no known section.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    let (section, key) = rest.split_once('_')?;
    (SECTIONS.contains(&section) && !key.is_empty()).then(|| format!("{section}.{key}"))
}

/// Environment values are TOML values when they parse as one (`true`, `5`, `["Shot"]`), else strings.
fn parse_env_value(raw: &str) -> figment::value::Value {
    let as_toml = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&as_toml) {
        Ok(mut table) if !raw.trim().is_empty() => match table.remove("v") {
            Some(v) => figment::value::Value::serialize(v).unwrap_or_else(|_| raw.into()),
            None => raw.into(),
        },
        _ => raw.into(),
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:********@host/db`.
pub fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("********"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(toml.as_bytes()).expect("write");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(file.path(), true, &CliOverrides::default(), env)
    }

    #[test]
    fn the_shipped_config_toml_is_valid_and_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let config = Config::load_from(&path, true, &CliOverrides::default(), Vec::new())
            .expect("config.toml loads");
        let defaults = Config::default();
        assert_eq!(config.server.bind, defaults.server.bind);
        assert_eq!(config.database.url, defaults.database.url);
        assert_eq!(config.events.poll_interval, defaults.events.poll_interval);
        assert_eq!(config.scanner.interval, Duration::from_secs(300));
        assert!(!config.schema.include.is_empty());
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_both() {
        let config = load(
            "[shotgun]\nurl = \"https://a.example\"\nscript_name = \"file\"\n[scanner]\ninterval = \"1m\"\n",
            &[
                ("SGCACHE_SHOTGUN_SCRIPT_NAME", "env_script"),
                ("SGCACHE_SHOTGUN_API_KEY", "s3cret"),
                ("SGCACHE_SCANNER_INTERVAL", "90s"),
                ("SGCACHE_SCHEMA_INCLUDE", "[\"Shot\", \"Task\"]"),
                ("SGCACHE_EVENTS_ENABLED", "false"),
                ("SGCACHE_TEST_PG_URL", "postgres://ignored"),
                ("OTHER_VAR", "x"),
            ],
        )
        .expect("loads");
        assert_eq!(config.shotgun.url, "https://a.example");
        assert_eq!(config.shotgun.script_name, "env_script");
        assert_eq!(config.shotgun.api_key.expose(), "s3cret");
        assert_eq!(config.scanner.interval, Duration::from_secs(90));
        assert_eq!(config.schema.include, ["Shot", "Task"]);
        assert!(!config.events.enabled);

        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"[server]\nbind = \"127.0.0.1:1\"\n")
            .expect("write");
        let flags = CliOverrides {
            server: Some(BindOverride {
                bind: "127.0.0.1:2".into(),
            }),
            ..Default::default()
        };
        let env = vec![("SGCACHE_SERVER_BIND".to_owned(), "127.0.0.1:3".to_owned())];
        let config = Config::load_from(file.path(), true, &flags, env).expect("loads");
        assert_eq!(config.server.bind, "127.0.0.1:2");
    }

    /// (config.toml text, environment, the key the error must name)
    type ConfigCase = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    #[test]
    fn every_error_is_one_line_naming_the_key() {
        let cases: &[ConfigCase] = &[
            ("[scanner]\ninterval = \"soon\"\n", &[], "scanner.interval"),
            ("[scanner]\nintervall = \"5m\"\n", &[], "intervall"),
            ("[shotgun]\nurl = \"not a url\"\n", &[], "shotgun.url"),
            (
                "[shotgun]\nurl = \"ftp://site.example\"\n",
                &[],
                "shotgun.url",
            ),
            (
                "",
                &[("SGCACHE_EVENTS_POLL_INTERVAL", "0s")],
                "events.poll_interval",
            ),
            ("[database]\nurl = \"mysql://x\"\n", &[], "database.url"),
            ("[server]\nbind = \"localhost\"\n", &[], "server.bind"),
            ("[verify]\nsample_rate = 2.0\n", &[], "verify.sample_rate"),
            ("[verify]\nmode = \"sometimes\"\n", &[], "verify.mode"),
            (
                "[verify]\nqueue_capacity = 0\n",
                &[],
                "verify.queue_capacity",
            ),
            ("[bogus]\nx = 1\n", &[], "bogus"),
            ("", &[("SGCACHE_SHOTGUN_APIKEY", "x")], "apikey"),
        ];
        for (toml, env, key) in cases {
            let err = load(toml, env).expect_err(toml).to_string();
            assert!(
                err.contains(key),
                "{toml:?} {env:?}: {err:?} should name {key}"
            );
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn missing_credentials_are_reported_for_commands_that_need_the_site() {
        let config = load("[shotgun]\nurl = \"https://site.example\"\n", &[]).expect("loads");
        assert!(config.validate_for(Needs::Database).is_ok());
        let err = config
            .validate_for(Needs::Site)
            .expect_err("no script")
            .to_string();
        assert!(err.starts_with("shotgun.script_name"), "{err}");
        let config = load(
            "[shotgun]\nurl = \"https://s.example\"\nscript_name = \"s\"\n",
            &[],
        )
        .expect("loads");
        let err = config
            .validate_for(Needs::Site)
            .expect_err("no key")
            .to_string();
        assert!(err.starts_with("shotgun.api_key"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let mut config = Config::default();
        config.shotgun.api_key = Secret::new("hunter2");
        config.database.url = "postgres://u:pw@db/sg".into();
        let shown = config.to_masked_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
