#!/usr/bin/env bash
# The fault and load harness in its full mode (issue 6; RELIABILITY.md).
#
#   bench/chaos.sh                         # every scenario, release build
#   bench/chaos.sh -E 'test(redis_paused)' # one scenario (nextest filter)
#
# Each scenario (crates/campus/tests/chaos) starts its own PostgreSQL cluster
# and redis-server on free loopback ports, two `campus serve` processes, a
# bounded load, and its fault; one scenario runs at a time. With CHAOS_FULL=1
# the load runs longer (10 s before the fault, 15 s after) with 24 readers.
# The table rows go to bench/results/chaos.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

if ! command -v redis-server >/dev/null 2>&1; then
    svc_apt_install redis-server redis-tools
fi
svc_find_pg_bin || { svc_apt_install postgresql; svc_find_pg_bin; }
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

out="${CARGO_TARGET_DIR:-$ROOT/target}/chaos"
rm -rf "$out"
start=$(date +%s)
CHAOS_FULL=1 cargo nextest run --release -p campus --test chaos --no-fail-fast "$@" || status=$?
took=$(($(date +%s) - start))

mkdir -p bench/results
{
    echo "# Chaos runs (CHAOS_FULL=1, release)"
    echo
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' with uncommitted changes'); ${took} s in all."
    echo
    echo "| scenario | load | fault | 5xx | stale reads | lagging reads inside their window | lost writes | p99 during the fault | notes | reproduce |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    cat "$out"/*.md 2>/dev/null || true
} >bench/results/chaos.md
echo "wrote bench/results/chaos.md (${took} s)" >&2
exit "${status:-0}"
