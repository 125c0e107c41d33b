//! Checks: values that are wrong whatever the command ([`Config::validate_values`], run by
//! every load), and what a command needs configured ([`Config::validate_for`]).
use std::net::SocketAddr;

use super::{Config, ConfigError, Needs};

impl Config {
    /// Value checks that do not depend on what the command needs.
    pub(super) fn validate_values(&self) -> Result<(), ConfigError> {
        self.validate_connections()?;
        self.validate_intervals()?;
        self.validate_verify()?;
        self.validate_schema_files()
    }

    /// `[shotgun]`, `[database]` and `[server]`.
    fn validate_connections(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Periods and page sizes of the background work.
    fn validate_intervals(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    fn validate_verify(&self) -> Result<(), ConfigError> {
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
        if let Err(problem) = self.calibration.pinned_values() {
            return Err(ConfigError::key("calibration.pinned", problem));
        }
        Ok(())
    }

    fn validate_schema_files(&self) -> Result<(), ConfigError> {
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
            if self.shotgun.url.is_none() {
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
}
