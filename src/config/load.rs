//! Loading: defaults, then `config.toml`, then `SGCACHE_<SECTION>_<KEY>` variables, then flags.
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use super::{CliOverrides, Config, ConfigError, ENV_PREFIX, SECTIONS};

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
