//! The command line's definitions: `sgcache serve | migrate | schema fetch|show | config check
//! | scan | events | verify` and the global flags. What each command does is in
//! [`crate::commands`].
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{
    BindOverride, CliOverrides, LogFormat, LogOverride, ShotgunOverrides, UrlOverride,
};

/// A caching proxy for the Shotgun (ShotGrid / Flow Production Tracking) JSON API.
///
/// Point shotgun_api3 clients' base_url at sgcache; it answers reads of the entity types it
/// caches from its own database and passes everything else to the site.
/// Configuration comes from config.toml, then SGCACHE_<SECTION>_<KEY> environment variables
/// (e.g. SGCACHE_SHOTGUN_API_KEY), then these flags.
#[derive(Debug, Parser)]
#[command(name = "sgcache", version, about, long_about)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.toml",
        env = "SGCACHE_CONFIG"
    )]
    pub config: PathBuf,
    /// The Shotgun site URL (overrides shotgun.url).
    #[arg(long, global = true, value_name = "URL")]
    pub shotgun_url: Option<String>,
    /// The database URL, sqlite://PATH or postgres://USER@HOST/DB (overrides database.url).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The address to listen on, HOST:PORT (overrides server.bind).
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter such as info or sgcache=debug (overrides log.level).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the caching proxy daemon.
    Serve,
    /// Create or upgrade sgcache's own tables, then exit.
    Migrate,
    /// Fetch or inspect the site schema and what is cached of it.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Scan entity types from the site into the cache, in the foreground: incomplete types get
    /// a full scan (resuming from a stored cursor), complete types an incremental scan.
    Scan {
        /// Full scans: complete types are marked incomplete and scanned from scratch.
        #[arg(long)]
        full: bool,
        /// Only these types, comma-separated (default: every cached type).
        #[arg(long, value_delimiter = ',', value_name = "TYPES")]
        types: Vec<String>,
        /// Only these project ids, comma-separated (overrides scanner.projects).
        #[arg(long, value_delimiter = ',', value_name = "IDS")]
        projects: Vec<i64>,
    },
    /// Set the event-log checkpoint so the daemon replays events from ID (inclusive) at its
    /// next start. Run it while the daemon is stopped.
    Events {
        /// The first event id to (re)apply.
        #[arg(long, value_name = "ID")]
        from: i64,
    },
    /// Compare N random cached rows of each type, every cached field, with the site's values
    /// and print a report (per type: checked, matched, mismatched with field names). Exits
    /// non-zero when anything mismatched. Does not change the cache.
    Verify {
        /// Rows per type.
        #[arg(long, value_name = "N", default_value_t = 100)]
        sample: u64,
        /// Only these types, comma-separated (default: every cached type).
        #[arg(long, value_delimiter = ',', value_name = "TYPES")]
        types: Vec<String>,
    },
    /// Explain what sgcache would do with a request: the body POST /api3/json takes (JSON),
    /// from FILE or standard input. Prints the decision (local, pass_through or fault), the
    /// reason, the calibrated rules it relied on and, for a local read, the SQL.
    Explain {
        /// The request body (default or "-": standard input).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Fetch the schema from the site (or [schema] file), create/alter the cache tables, and
    /// store it in the schema registry.
    Fetch {
        /// Also save the site's schema_read reply to this file (for [schema] file).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show which types and fields are cached, and which are skipped and why.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, secrets masked.
    Check,
}

impl Cli {
    /// The flags that override configuration keys.
    pub fn overrides(&self) -> CliOverrides {
        CliOverrides {
            shotgun: self
                .shotgun_url
                .clone()
                .map(|url| ShotgunOverrides { url: Some(url) }),
            database: self.database_url.clone().map(|url| UrlOverride { url }),
            server: self.bind.clone().map(|bind| BindOverride { bind }),
            log: (self.log_format.is_some() || self.log_level.is_some()).then(|| LogOverride {
                format: self.log_format,
                level: self.log_level.clone(),
            }),
        }
    }
}
