//! The command line's commands: what `sgcache <command>` does once [`crate::cli`] has parsed
//! it. This module (and `main.rs`) is the only place with `anyhow` and `println!`: the
//! library reports typed errors, the commands turn them into lines for a person.
//!
//! Every command that touches the database starts from one [`Bootstrap`]: connect, migrate,
//! start a DbWriter.
mod config;
mod events;
mod explain;
mod scan;
mod schema;
mod serve;
mod verify;

use std::process::ExitCode;

use actix::Arbiter;
use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, SchemaCommand};
use crate::config::{Config, Needs};
use crate::db::Pools;
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;

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
    if let Err(err) = config.validate_for(needs(&cli.command, &config)) {
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

/// What `command` needs configured.
fn needs(command: &Command, config: &Config) -> Needs {
    match command {
        Command::Serve | Command::Scan { .. } | Command::Verify { .. } => Needs::Site,
        Command::Schema(SchemaCommand::Fetch { .. }) if config.schema.file.is_none() => Needs::Site,
        _ => Needs::Database,
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve(config).await,
        Command::Migrate => serve::migrate(&config).await,
        Command::Schema(SchemaCommand::Fetch { output }) => {
            schema::fetch(&config, output.as_deref()).await
        }
        Command::Schema(SchemaCommand::Show { json }) => schema::show(&config, json).await,
        Command::Scan {
            full,
            types,
            projects,
        } => scan::scan(&config, full, &types, &projects).await,
        Command::Events { from } => events::set_checkpoint(&config, from).await,
        Command::Verify { sample, types } => verify::verify(&config, sample, &types).await,
        Command::Explain { file } => explain::explain(&config, file.as_deref()).await,
        Command::Config(ConfigCommand::Check) => {
            config::check(&config);
            Ok(())
        }
    }
}

/// What a command that touches the database starts from: the pools of a migrated database
/// and a DbWriter on its own Arbiter. [`Bootstrap::close`] stops both.
pub struct Bootstrap {
    pub pools: Pools,
    pub writer: DbWriterHandle,
    arbiter: Arbiter,
}

impl Bootstrap {
    /// Connects, migrates, starts a DbWriter.
    pub async fn open(config: &Config) -> anyhow::Result<Bootstrap> {
        let pools = crate::db::open(&config.database).await?;
        let (writer, arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
        Ok(Bootstrap {
            pools,
            writer,
            arbiter,
        })
    }

    /// Stops the DbWriter (after the message it is handling) and closes the reader pool.
    pub async fn close(self) {
        self.arbiter.stop();
        self.pools.close_readers().await;
    }

    /// Runs `work` on this bootstrap, then closes it whatever `work` returned.
    pub async fn run<T>(
        self,
        work: impl AsyncFnOnce(&Bootstrap) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let result = work(&self).await;
        self.close().await;
        result
    }
}
