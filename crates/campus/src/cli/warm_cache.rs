//! `campus warm-cache [--model M]… [--org ID] [--pages N]`.

use std::io::IsTerminal;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::ops::warm::{self, Plan, Progress};

#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// Only this model (departments, programs, faculty, students, users,
    /// dashboard); repeat for several. Default: all.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Only this organization, by id or code. Default: all.
    #[arg(long)]
    pub org: Option<String>,
    /// List pages per model; the details of their rows are warmed too.
    #[arg(long, default_value_t = 2)]
    pub pages: u64,
    /// Units of work (organization x model) at once: the most queries the
    /// database sees in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The `Host` clients send. List pages embed absolute next/previous links,
    /// so they are cached per host. Default: the server's own address without
    /// Redis, else `$BIND` or 127.0.0.1:8000.
    #[arg(long, env = "CAMPUS_PUBLIC_HOST")]
    pub host: Option<String>,
}

/// A progress bar on a terminal, plain lines otherwise (logs, CI).
fn reporter() -> impl Fn(Progress) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} warming [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    move |p: Progress| match &bar {
        Some(bar) => {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(format!("org {} {}", p.org, p.model));
            if p.done == p.total {
                bar.finish_and_clear();
            }
        }
        None => eprintln!(
            "warm-cache: {}/{} organization {} {}: {} keys written",
            p.done, p.total, p.org, p.model, p.written
        ),
    }
}

pub async fn run(args: WarmArgs, config: Config) -> anyhow::Result<()> {
    // Names are checked before anything connects, so a typo fails at once.
    for m in &args.models {
        warm::parse_model(m)?;
    }
    let mut plan = Plan {
        models: args.models,
        org: args.org,
        pages: args.pages,
        concurrency: args.concurrency,
        host: args.host.unwrap_or_default(),
    };
    let summary = if config.redis_url.is_some() {
        if plan.host.is_empty() {
            plan.host = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8000".into());
        }
        let db = crate::db::connect(&config.database_url).await?;
        // Tokens minted here are only ever checked by this process.
        let secret = crate::secret::secret_hex(32);
        let state = crate::server::build_state(&config, db, secret.as_bytes()).await?;
        warm::warm(&state, &plan, reporter()).await?
    } else {
        let admin = crate::ops::admin::Client::discover(&config.admin_file).await?;
        admin.warm(&plan, reporter()).await?
    };
    print!("{}", summary.render());
    if summary.errors > 0 {
        anyhow::bail!("warm-cache: {} request(s) failed", summary.errors);
    }
    Ok(())
}
