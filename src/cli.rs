//! The command line: `sgcache serve | migrate | schema fetch|show | config check | scan | events | verify`.
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::actors::schema_loader::{apply_schema, fetch_schema, stored_schema};
use crate::config::{
    BindOverride, CliOverrides, Config, LogFormat, LogOverride, Needs, ShotgunOverrides,
    UrlOverride,
};
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;
use crate::upstream::UpstreamClient;

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
    fn overrides(&self) -> CliOverrides {
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

/// Parses the command line and runs it. Errors are one line on stderr and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit = cli.config.as_os_str() != "config.toml";
    let config = match Config::load(&cli.config, explicit, &cli.overrides()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("sgcache: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log.format, &config.log.level);
    let needs = match &cli.command {
        Command::Serve | Command::Scan { .. } | Command::Verify { .. } => Needs::Site,
        Command::Schema(SchemaCommand::Fetch { .. }) if config.schema.file.is_none() => Needs::Site,
        _ => Needs::Database,
    };
    if let Err(err) = config.validate_for(needs) {
        eprintln!("sgcache: configuration error: {err}");
        return ExitCode::from(2);
    }
    let result = actix_web::rt::System::new().block_on(run(cli.command, config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sgcache: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let listener = TcpListener::bind(&config.server.bind)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.bind))?;
            let daemon = crate::Daemon::start(config, listener).await?;
            daemon.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate => {
            let pools = crate::db::connect(&config.database).await?;
            crate::db::migrate(&pools).await?;
            println!(
                "migrated {}",
                crate::config::mask_url_password(&config.database.url)
            );
            Ok(())
        }
        Command::Schema(SchemaCommand::Fetch { output }) => {
            let pools = crate::db::connect(&config.database).await?;
            crate::db::migrate(&pools).await?;
            let upstream = UpstreamClient::configured(&config.shotgun);
            let src = fetch_schema(&config, upstream.as_ref()).await?;
            if let Some(path) = output {
                std::fs::write(&path, serde_json::to_vec_pretty(&src.schema_read)?)?;
                println!("saved schema_read to {}", path.display());
            }
            let cache = CacheState::new();
            let (writer, arbiter) =
                DbWriterHandle::start(pools.writer.clone(), pools.backend, cache);
            let applied = apply_schema(&src, &config, &pools, &writer).await;
            arbiter.stop();
            let applied = applied?;
            println!(
                "schema from {}: {} cached types, {} DDL statements, {} fields skipped; needs a full scan: {}",
                src.source,
                applied.cached.types.len(),
                applied.statements,
                applied.report.skipped.len(),
                if applied.invalidated.is_empty() {
                    "none".to_owned()
                } else {
                    applied.invalidated.join(", ")
                }
            );
            Ok(())
        }
        Command::Schema(SchemaCommand::Show { json }) => {
            let src = if config.schema.file.is_some() {
                fetch_schema(&config, None).await?
            } else {
                let pools = crate::db::connect(&config.database).await?;
                crate::db::migrate(&pools).await?;
                stored_schema(&pools).await?.ok_or_else(|| {
                    anyhow::anyhow!("no schema stored yet: run `sgcache schema fetch` first")
                })?
            };
            let site = src.parse()?;
            let (cached, report) = crate::schema::select(&site, &config.schema.rules())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"cached": cached, "report": report})
                    )?
                );
            } else {
                print!("{}", describe(&cached, &report));
            }
            Ok(())
        }
        Command::Scan {
            full,
            types,
            projects,
        } => {
            crate::actors::scanner::run_scan_command(&config, full, &types, &projects).await?;
            Ok(())
        }
        Command::Events { from } => {
            let previous =
                crate::actors::event_poller::set_checkpoint_command(&config, from).await?;
            println!(
                "event checkpoint set to {} (was {}): the daemon replays from event {from}",
                (from - 1).max(0),
                previous.map_or("none".to_owned(), |p| p.to_string())
            );
            Ok(())
        }
        Command::Verify { sample, types } => {
            let reports =
                crate::actors::verifier::run_verify_command(&config, sample, &types).await?;
            let mismatched: u64 = reports.iter().map(|r| r.mismatched).sum();
            if mismatched > 0 {
                anyhow::bail!("{mismatched} cached rows differ from the site");
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_masked_toml());
            eprintln!("configuration OK");
            Ok(())
        }
    }
}

/// The text form of `schema show`.
fn describe(
    cached: &crate::schema::CachedSchema,
    report: &crate::schema::SelectionReport,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for entity in cached.types.values() {
        let _ = writeln!(
            out,
            "{} -> table {} (link name from {})",
            entity.name,
            entity.table,
            entity.display_field.as_deref().unwrap_or("-")
        );
        for field in entity.fields.values() {
            let _ = writeln!(
                out,
                "  {:<32} {:<14} {}",
                field.name,
                field.data_type,
                field.layout.columns().join(", ")
            );
        }
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(out, "not cached (reads that need these pass through):");
        for skipped in &report.skipped {
            let _ = writeln!(
                out,
                "  {}.{}: {}",
                skipped.entity_type, skipped.field, skipped.reason
            );
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
