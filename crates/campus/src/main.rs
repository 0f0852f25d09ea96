//! `campus`: the Campus service and its CLI.
//!
//! The HTTP API, the database layer and the CLI of SPEC §3 are the next milestone
//! (see the project's issues); until they land, this binary only reports that, and
//! the README's run command runs the tiercache example instead.

fn main() -> anyhow::Result<()> {
    eprintln!(
        "campus {}: the service is not built yet; run `cargo run --release -p tiercache --example demo` \
         to see the cache layer at work",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2)
}
