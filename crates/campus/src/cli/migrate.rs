//! `campus migrate`.

use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    let applied = crate::db::migrate(&db).await?;
    println!("{applied} migration(s) applied");
    Ok(())
}
