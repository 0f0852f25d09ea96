//! `campus seed --orgs N --faculty N --students N [--password P] [--seed S]`.

use clap::Args;

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Organizations to create (org1 … orgN).
    #[arg(long, default_value_t = 1)]
    pub orgs: u32,
    /// Faculty members per organization.
    #[arg(long, default_value_t = 50)]
    pub faculty: u32,
    /// Students per organization.
    #[arg(long, default_value_t = 500)]
    pub students: u32,
    /// Password of the generated users.
    #[arg(long, default_value = "campus-demo")]
    pub password: String,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub async fn run(args: SeedArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    crate::db::migrate(&db).await?;
    let options = crate::seed::SeedOptions {
        orgs: args.orgs,
        faculty: args.faculty,
        students: args.students,
        password: args.password,
        seed: args.seed,
        progress: true,
    };
    let report = crate::seed::seed(&db, &options).await?;
    println!("{report}");
    Ok(())
}
