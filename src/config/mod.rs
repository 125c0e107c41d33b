//! Configuration: `config.toml`, then `SGCACHE_<SECTION>_<KEY>` environment variables, then
//! command-line flags. Unknown keys are errors; durations are humantime strings (`"2s"`, `"5m"`).
//!
//! Every problem is reported as one line that names the key (`scanner.interval: ...`).
//!
//! - `sections`: one struct per `[section]`, with its defaults;
//! - `load`: file, environment and flags merged into a [`Config`];
//! - `validate`: the value checks and what each command needs.
mod load;
mod sections;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use sections::*;

/// The configuration sections; an environment variable `SGCACHE_<SECTION>_<KEY>` overrides
/// `<section>.<key>`. Variables naming another prefix (e.g. `SGCACHE_TEST_PG_URL`) are ignored.
pub const SECTIONS: &[&str] = &[
    "shotgun",
    "database",
    "server",
    "auth",
    "events",
    "scanner",
    "verify",
    "calibration",
    "schema",
    "log",
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
    pub(crate) fn key(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    pub(crate) fn from_figment(err: figment::Error) -> Self {
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
    pub calibration: crate::actors::calibrator::CalibrationConfig,
    pub schema: SchemaConfig,
    pub log: LogConfig,
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
    /// The effective configuration as TOML, with secrets and database passwords masked.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        masked.database.url = mask_url_password(&masked.database.url);
        toml::to_string_pretty(&masked)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
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
    use std::path::Path;
    use std::time::Duration;

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

    /// `url = ""`, an empty variable and no `url` at all all mean "no site".
    #[test]
    fn an_empty_or_absent_site_url_is_unset() {
        for (toml, env) in [
            ("[shotgun]\nurl = \"\"\n", vec![]),
            ("", vec![]),
            (
                "[shotgun]\nurl = \"https://a.example\"\n",
                vec![("SGCACHE_SHOTGUN_URL", "")],
            ),
        ] {
            let config = load(toml, &env).expect("loads");
            assert_eq!(config.shotgun.url, None, "{toml:?} {env:?}");
        }
        let config = load("[shotgun]\nurl = \"https://a.example/sg/\"\n", &[]).expect("loads");
        let url = config.shotgun.url.expect("set");
        assert_eq!(url.as_str(), "https://a.example/sg/");
        assert_eq!(url.url().host_str(), Some("a.example"));
        assert!(
            config_check_round_trips(&url),
            "the masked TOML names the site"
        );
    }

    fn config_check_round_trips(url: &SiteUrl) -> bool {
        let mut config = Config::default();
        config.shotgun.url = Some(url.clone());
        config
            .to_masked_toml()
            .contains(&format!("url = \"{}\"", url.as_str()))
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
        assert_eq!(
            config.shotgun.url.as_ref().map(SiteUrl::as_str),
            Some("https://a.example")
        );
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
