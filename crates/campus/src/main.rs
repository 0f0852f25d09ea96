//! `campus`: parses the command line and hands over to `campus::cli`.

use clap::Parser;

// glibc's malloc showed as a tenth of a cached request's CPU time under load,
// much of it contention on its arena locks between tokio's workers; mimalloc's
// per-thread heaps remove both.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // PostgreSQL's NOTICEs ("relation seaql_migrations already exists,
            // skipping" on every start) are not news to an operator; RUST_LOG
            // still brings them back.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = campus::cli::Cli::parse();
    match campus::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming what to fix; never a panic or a backtrace.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
