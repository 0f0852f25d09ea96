//! `campus serve [--bind ADDR] [--demo]`.

use crate::config::{Config, ServeArgs};

/// HS256 signs with a 256-bit hash: a shorter key is easier to guess offline
/// from any one token than the hash is to break (RFC 7518 §3.2 asks for a key
/// at least as long as the hash).
pub const MIN_SECRET_BYTES: usize = 32;

pub async fn run(args: ServeArgs, config: Config) -> anyhow::Result<()> {
    let secret = match (&config.jwt_secret, args.demo) {
        (Some(s), _) if s.len() >= MIN_SECRET_BYTES => s.clone().into_bytes(),
        (Some(_), _) => anyhow::bail!(
            "JWT_SECRET: must be at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32` makes one)"
        ),
        (None, true) => {
            tracing::warn!(
                "JWT_SECRET unset: demo mode uses a random secret, tokens die with the process"
            );
            crate::secret::secret_hex(32).into_bytes()
        }
        (None, false) => anyhow::bail!("JWT_SECRET: required (or run with --demo)"),
    };
    let db = crate::db::connect(&config.database_url).await?;
    crate::db::migrate(&db).await?;
    if args.demo {
        crate::seed::seed(&db, &crate::seed::demo_options()).await?;
    }
    // Migrating and seeding may take long; serving gets the statement timeout.
    let db = match config.limits.statement_timeout() {
        Some(limit) if crate::db::backend(&db) == sea_orm::DbBackend::Postgres => {
            let _ = db.close().await;
            crate::db::connect_with(&config.database_url, Some(limit)).await?
        }
        _ => db,
    };
    let state = crate::server::build_state(&config, db, &secret).await?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("BIND: cannot listen on {}: {e}", args.bind))?;
    let addr = listener.local_addr()?;
    let metrics = match args.metrics_bind {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| anyhow::anyhow!("METRICS_BIND: cannot listen on {at}: {e}"))?;
            // Before the API's line, which scripts wait for.
            println!("Metrics on http://{}/metrics", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    // Without Redis the cache lives here: the operators' commands reach it
    // through the loopback admin endpoint. With Redis, this instance's counters
    // go there for `cache-stats` to sum.
    let _admin = match &state.redis {
        None => Some(
            crate::ops::admin::start(state.clone(), &config.admin_file, addr.to_string()).await?,
        ),
        Some(redis) => {
            let namespace = format!("{}:{}", config.cache_key_prefix, config.cache_version);
            crate::ops::instances::spawn_publisher(
                state.cache.clone(),
                redis.connection(),
                crate::ops::instances::key(&namespace),
            );
            None
        }
    };
    // Both ready before the line scripts wait for: a request sent from then on
    // is handled (building the router takes a while in a debug build), and a
    // SIGTERM is a graceful shutdown.
    let api = crate::server::app_with(state.clone(), metrics.is_none());
    let shutdown = crate::server::shutdown_signal();
    println!("Campus API listening on http://{addr}/");
    println!("  Swagger UI:  http://{addr}/api/docs/");
    if args.demo {
        let demo = crate::seed::demo_options();
        println!(
            "  Demo logins: org1-admin, org1-staff, org1-faculty, org1-student (and org2-…), password {}",
            demo.password
        );
        println!(
            "  Try: curl -s -X POST http://{addr}/api/auth/token/ -H 'content-type: application/json' \\"
        );
        println!(
            "         -d '{{\"username\":\"org1-admin\",\"password\":\"{}\"}}'",
            demo.password
        );
    }
    crate::server::serve_app(listener, metrics, state, api, shutdown).await
}
