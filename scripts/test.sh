#!/usr/bin/env bash
# The one test command for this project (also what CI runs via .ci/run).
#
#   scripts/test.sh                     # fmt, clippy, features, nextest, schemathesis,
#                                       # doctests, docs, examples, MSRV + publish dry run
#   scripts/test.sh -E 'test(foo)'      # extra args go to `cargo nextest run`
#
# Starts a private redis-server and a throwaway PostgreSQL cluster on free
# ports (installing the Debian packages if missing), exports REDIS_URL,
# TIERCACHE_REDIS_SERVER, TEST_DATABASE_URL and DATABASE_URL, and stops them
# again on exit; installs headless Chromium for the dashboard test and nginx
# for the deploy/nginx.conf test if missing, and schemathesis (pinned, PyPI)
# into a virtualenv under the target dir. The scale-out tests start their
# own Redis Cluster and Sentinel deployments (redis-server + redis-cli).
# A reachable REDIS_URL / TEST_DATABASE_URL / DATABASE_URL
# already in the environment is used instead of a private server.
#
# TEST_SH_SERVICES_ONLY=1  start services, check them, print env, exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=lib/services.sh
source "$ROOT/scripts/lib/services.sh"

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    services_teardown || true
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

banner() { printf '\n==> %s\n' "$*" >&2; }

services_setup

banner "test environment"
printf '    REDIS_URL=%s\n    TIERCACHE_REDIS_SERVER=%s\n    TEST_DATABASE_URL=%s\n' \
    "$REDIS_URL" "$TIERCACHE_REDIS_SERVER" "$TEST_DATABASE_URL" >&2

if [[ -n ${TEST_SH_SERVICES_ONLY:-} ]]; then
    banner "TEST_SH_SERVICES_ONLY: checking services and exiting"
    redis-cli -u "$REDIS_URL" ping
    psql "$TEST_DATABASE_URL" -X -q -t -A -c 'select 1'
    exit 0
fi

# The chaos scenarios (crates/campus/tests/chaos) start PostgreSQL clusters of
# their own, even when a reachable TEST_DATABASE_URL was given.
svc_find_pg_bin || { svc_apt_install postgresql; svc_find_pg_bin; }

# The cache dashboard's and the web client's tests drive a real browser, the
# latter through chromedriver (WebDriver).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    banner "installing headless Chromium and chromedriver for the browser tests"
    svc_apt_install chromium chromium-driver
fi

# deploy/nginx.conf is run by a test (crates/campus/tests/cli/nginx.rs).
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    banner "installing nginx for the deploy/nginx.conf test"
    svc_apt_install nginx-light || svc_apt_install nginx
fi

banner "[1/9] cargo fmt --all -- --check"
cargo fmt --all -- --check

banner "[2/9] cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# An in-process-only user must get no Redis client: the `redis` feature is the only
# way in.
banner "[3/9] tierstamp without default features: builds, lints, no redis crate"
cargo clippy -p tierstamp --no-default-features -- -D warnings
if cargo tree -p tierstamp --no-default-features -e normal --prefix none | grep -q '^redis '; then
    echo "tierstamp --no-default-features still depends on redis" >&2
    exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    banner "cargo-nextest missing: cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked || true
fi
if cargo nextest --version >/dev/null 2>&1; then
    banner "[4/9] cargo nextest run --workspace --no-fail-fast $*"
    cargo nextest run --workspace --no-fail-fast "$@"
else
    banner "[4/9] cargo test --workspace (cargo-nextest unavailable)"
    if [[ $# -gt 0 ]]; then
        echo "    warning: ignoring nextest arguments: $*" >&2
    fi
    cargo test --workspace --no-fail-fast
fi

# The API against its own OpenAPI document, as a schema-driven client sees it:
# schemathesis (pinned, in a virtualenv under the target dir) drives a fresh
# `campus serve` on loopback, with a PostgreSQL database and Redis prefix of
# its own that it removes. Every finding fails the step.
banner "[5/9] schemathesis: the API against /api/schema/"
scripts/lib/schemathesis.sh

banner "[6/9] cargo test --workspace --doc"
cargo test --workspace --doc

banner "[7/9] RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps -p tierstamp -p tierstamp-axum"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p tierstamp -p tierstamp-axum
# Both READMEs carry the same quick start; tierstamp-axum compiles its copy as a
# doctest, so they must not drift apart.
quick_start() { sed -n '/^```rust,no_run$/,/^```$/p' "$1"; }
if ! diff <(quick_start crates/tierstamp/README.md) <(quick_start crates/tierstamp-axum/README.md); then
    echo "the quick starts of crates/tierstamp/README.md and crates/tierstamp-axum/README.md differ" >&2
    exit 1
fi

# Built once with the workspace's features (nextest already compiled them), then run
# directly: each checks itself, bounds its own runtime and exits; `timeout` is only
# a safety net. They use REDIS_URL / TEST_DATABASE_URL from above, each under a
# namespace or database of its own that it removes.
banner "[8/9] examples"
cargo build --workspace --examples
examples_dir="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples"
for example in axum_service no_framework custom_store postgres_notify demo; do
    printf '    -- %s\n' "$example" >&2
    timeout 180 "$examples_dir/$example"
done

banner "[9/9] MSRV, packaged files, cargo publish --dry-run"
scripts/lib/publish_check.sh

banner "all checks passed"
