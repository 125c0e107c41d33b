//! `sgcache config check`.
use crate::config::Config;

/// Prints the configuration, secrets masked (validation already passed).
pub fn check(config: &Config) {
    print!("{}", config.to_masked_toml());
    eprintln!("configuration OK");
}
