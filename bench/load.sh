#!/usr/bin/env bash
# Load benchmark of the Campus service (SPEC §7, issue "Campus"): PostgreSQL +
# Redis, `wrk` on loopback, every figure measured in one run so ratios hold.
#
#   bench/load.sh                       # 10 orgs x (500 faculty, 100000 students)
#   ORGS=2 STUDENTS=10000 DURATION=5s bench/load.sh    # a quick run
#
# Starts its own Redis and PostgreSQL (scripts/lib/services.sh), seeds, then for
# each configuration starts `campus serve` on a free port, runs wrk, stops it by
# PID. Prints a Markdown table; paste it into BENCHMARKS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

ORGS=${ORGS:-10}
FACULTY=${FACULTY:-500}
STUDENTS=${STUDENTS:-100000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}

SERVER_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    services_teardown || true
    exit "$rc"
}
trap cleanup EXIT

command -v wrk >/dev/null || svc_apt_install wrk
# Always private servers: a benchmark seeds a million rows and fills a keyspace,
# which must never land in a database or Redis someone else uses.
unset REDIS_URL TEST_DATABASE_URL DATABASE_URL
services_setup
cargo build --release -q -p campus
BIN="$ROOT/target/release/campus"
export DATABASE_URL="$TEST_DATABASE_URL"
export JWT_SECRET="bench-secret-0123456789abcdef"
export CAMPUS_BENCH_ROUTES=1
export RUST_LOG=warn

echo "== seeding $ORGS orgs x ($FACULTY faculty, $STUDENTS students) on PostgreSQL" >&2
start=$(date +%s.%N)
"$BIN" seed --orgs "$ORGS" --faculty "$FACULTY" --students "$STUDENTS" --seed 1 >&2
seed_s=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")

start_server() { # env assignments for this configuration...
    local port
    port=$(svc_free_port)
    env "$@" BIND="127.0.0.1:$port" "$BIN" serve >/dev/null 2>&1 &
    SERVER_PID=$!
    BASE="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do
        curl -fs "$BASE/healthz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    TOKEN=$(curl -fs -X POST "$BASE/api/auth/token/" -H 'content-type: application/json' \
        -d '{"username":"org1-admin","password":"campus-demo"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access"])')
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

ROWS=()
run() { # label path [wrk script] [connections]
    local label=$1 path=$2 script=${3:-} conns=${4:-$CONNS}
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$BASE$path" || true # warm
    local threads=$THREADS
    [ "$conns" -lt "$threads" ] && threads=$conns
    local args=(-t"$threads" -c"$conns" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN")
    [ -n "$script" ] && args+=(-s "$script")
    local out
    out=$(wrk "${args[@]}" "$BASE$path")
    local rps p50 p99 non2xx
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    ROWS+=("| $label | \`$path\` | $conns | $rps | $p50 | $p99 | ${non2xx:-0} |")
    echo "  $label: $rps req/s, p50 $p50, p99 $p99" >&2
}

SEARCH_LUA=$(mktemp --suffix=.lua)
cat >"$SEARCH_LUA" <<'LUA'
-- A different search per request: every one misses the cache.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/students/?search=zz" .. n .. "q" .. math.random(1, 1000000000))
end
LUA

echo "== L1 on (Redis + in-process)" >&2
start_server CACHE_L1=on REDIS_URL="$REDIS_URL"
# The floors again with the cached list's own size: the kernel's copy of the
# body is part of every route's cost and must not be charged to the cache.
LIST_BYTES=$(curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/faculty/?page=1" | wc -c)
run "static 2 KB route (floor)" "/bench/static"
run "one plain Redis GET, 2 KB (floor)" "/bench/redis-get"
run "static route, list-sized (floor)" "/bench/static?bytes=$LIST_BYTES"
run "one plain Redis GET, list-sized (floor)" "/bench/redis-get?bytes=$LIST_BYTES"
run "cached faculty list, L1" "/api/faculty/?page=1"
run "cached student detail, L1" "/api/students/1/"
run "cached dashboard, L1" "/api/stats/dashboard/"
stop_server

echo "== L2 only (CACHE_L1=off)" >&2
start_server CACHE_L1=off REDIS_URL="$REDIS_URL"
run "cached faculty list, L2 only" "/api/faculty/?page=1"
stop_server

echo "== cache off" >&2
start_server CACHE_DISABLED=true REDIS_URL="$REDIS_URL"
run "faculty list, no cache" "/api/faculty/?page=1"
run "miss: dept filter, by last name" "/api/students/?department=CS&ordering=last_name"
run "miss: search (random term)" "/api/students/" "$SEARCH_LUA"
# The latency of one miss, without queueing behind 15 others on 2 cores.
run "miss: dept filter, by last name, 1 connection" "/api/students/?department=CS&ordering=last_name" "" 1
run "miss: search (random term), 1 connection" "/api/students/" "$SEARCH_LUA" 1
stop_server
rm -f "$SEARCH_LUA"

echo
echo "Cached faculty list: $LIST_BYTES bytes."
echo "Seeded $ORGS x ($FACULTY faculty, $STUDENTS students) in ${seed_s} s; wrk -t$THREADS -c$CONNS -d$DURATION, $(date -u +%Y-%m-%d)."
echo
echo "| what | path | connections | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
