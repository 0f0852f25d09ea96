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
    let options = crate::app::Options {
        bind: args.bind,
        metrics_bind: args.metrics_bind,
        demo: args.demo,
        operators: true,
    };
    let app = crate::app::Application::build(&config, &secret, &options).await?;
    let addr = app.address()?;
    if let Some(at) = app.metrics_address() {
        // Before the API's line, which scripts wait for.
        println!("Metrics on http://{}/metrics", at?);
    }
    // The router is built and the sockets bound (a request sent from the line
    // below on is handled), and SIGTERM is a graceful shutdown from here on.
    let shutdown = crate::server::shutdown_signal();
    println!("Campus API listening on http://{addr}/");
    println!("  Web client:  http://{addr}/");
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
    app.run_until_stopped(shutdown).await
}
