//! The `campus` command line (SPEC §3): one subcommand per file under `cli/`.

pub mod cache_stats;
pub mod createuser;
pub mod migrate;
pub mod seed;
pub mod serve;
pub mod warm_cache;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "campus",
    version,
    about = "Campus: the multi-tenant academic REST API, cached with tierstamp"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API (applies pending migrations first).
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        config: Config,
    },
    /// Apply pending migrations and exit.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
    /// Generate deterministic data: organizations, departments, programs, faculty, students, users.
    Seed {
        #[command(flatten)]
        args: seed::SeedArgs,
        #[command(flatten)]
        config: Config,
    },
    /// Fill the cache ahead of traffic: list pages, details, the dashboard.
    WarmCache {
        #[command(flatten)]
        args: warm_cache::WarmArgs,
        #[command(flatten)]
        config: Config,
    },
    /// Report the cache's memory, keys, hit rate and health; `--clear` empties it.
    CacheStats {
        #[command(flatten)]
        args: cache_stats::StatsArgs,
        #[command(flatten)]
        config: Config,
    },
    /// Create a user in an organization.
    Createuser {
        #[command(flatten)]
        args: createuser::CreateUserArgs,
        #[command(flatten)]
        config: Config,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { serve, config } => serve::run(serve, config).await,
        Command::Migrate { config } => migrate::run(config).await,
        Command::Seed { args, config } => seed::run(args, config).await,
        Command::Createuser { args, config } => createuser::run(args, config).await,
        Command::WarmCache { args, config } => warm_cache::run(args, config).await,
        Command::CacheStats { args, config } => cache_stats::run(args, config).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
