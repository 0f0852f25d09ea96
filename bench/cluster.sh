#!/usr/bin/env bash
# Sharding figure (issue 7): the cached faculty list's throughput on a Redis
# Cluster (3 masters, no replicas) against a single Redis, in one run.
#
#   bench/cluster.sh            # 8 s per wrk run
#   DURATION=20s bench/cluster.sh
#
# Builds campus in release mode, starts a private PostgreSQL and Redis (never
# the machine's shared ones) and a private 3-master Cluster on free loopback
# ports, seeds 10 orgs, and for each store runs `campus serve` with the L1 off
# (every hit is a Redis read: what the store costs) and on, while wrk rotates
# the tokens of the 10 organizations over `/api/faculty/?page=1` (10 keys with
# 10 hash tags, so the Cluster spreads them over its masters). Everything is
# stopped by PID. Writes bench/results/cluster.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

DURATION=${DURATION:-8s}
CONNS=${CONNS:-16}
OUT="$ROOT/bench/results"
mkdir -p "$OUT"

SERVER_PID=""
CLUSTER_PIDS=()
CLUSTER_DIR=""
cleanup() {
    local rc=$? pid
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    for pid in "${CLUSTER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [[ -n $CLUSTER_DIR && -d $CLUSTER_DIR ]]; then rm -rf -- "$CLUSTER_DIR"; fi
    services_teardown || true
    exit "$rc"
}
trap cleanup EXIT

command -v wrk >/dev/null || svc_apt_install wrk
unset REDIS_URL TEST_DATABASE_URL DATABASE_URL
services_setup
echo "== building (release)" >&2
cargo build --release -q -p campus
BIN="$ROOT/target/release/campus"
export DATABASE_URL="$TEST_DATABASE_URL"
export JWT_SECRET="bench-secret-0123456789abcdef0123456"
export RUST_LOG=warn
SINGLE_URL="$REDIS_URL"
unset REDIS_URL

echo "== seeding 10 orgs x (500 faculty, 1,000 students)" >&2
"$BIN" seed --orgs 10 --faculty 500 --students 1000 --seed 1 >/dev/null 2>&1

echo "== starting a 3-master Redis Cluster" >&2
CLUSTER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/campus-cluster.XXXXXX")"
NODES=()
for _ in 1 2 3; do
    port=$(svc_free_port)
    bus=$(svc_free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-port "$bus" \
        --dir "$CLUSTER_DIR" --logfile "$CLUSTER_DIR/$port.log" </dev/null >/dev/null 2>&1 &
    CLUSTER_PIDS+=($!)
    NODES+=("127.0.0.1:$port")
done
for n in "${NODES[@]}"; do
    for _ in $(seq 1 100); do
        [[ "$(redis-cli -h 127.0.0.1 -p "${n#*:}" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.05
    done
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 1 200); do
    redis-cli -p "${NODES[0]#*:}" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.05
done
CLUSTER_URLS=$(printf 'redis://%s/,' "${NODES[@]}")
CLUSTER_URLS=${CLUSTER_URLS%,}

start_server() { # env assignments...
    local port
    port=$(svc_free_port)
    env "$@" BIND="127.0.0.1:$port" "$BIN" serve >/dev/null 2>&1 &
    SERVER_PID=$!
    BASE="http://127.0.0.1:$port"
    campus_wait "$BASE"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# A wrk script rotating the 10 organizations' tokens.
tokens_lua() {
    local lua="$CLUSTER_DIR/tokens.lua" i token
    {
        echo "local tokens = {"
        for i in $(seq 1 10); do
            token=$(campus_token "$BASE" "org$i-admin")
            echo "  \"$token\","
            # Warm this org's entry.
            curl -fs -o /dev/null -H "Authorization: Bearer $token" "$BASE/api/faculty/?page=1"
        done
        echo "}"
        echo 'local n = 0'
        echo 'request = function()'
        echo '  n = n + 1'
        echo '  return wrk.format("GET", "/api/faculty/?page=1", {["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]})'
        echo 'end'
    } >"$lua"
    echo "$lua"
}

to_ms() {
    python3 -c "
import sys; v=sys.argv[1]
for unit, f in (('us', 0.001), ('ms', 1.0), ('s', 1000.0)):
    if v.endswith(unit): print(round(float(v[:-len(unit)]) * f, 3)); break
else: print('')" "$1"
}

ROWS=()
run() { # label env...
    local label=$1 lua out rps p50 p99 non2xx
    shift
    start_server "$@"
    lua=$(tokens_lua)
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$lua" "$BASE/")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    ROWS+=("| $label | $CONNS | $rps | $p50 | $p99 | ${non2xx:-0} |")
    echo "  $label: $rps req/s, p50 $p50 ms, p99 $p99 ms" >&2
    stop_server
}

echo "== wrk -t2 -c$CONNS -d$DURATION, 10 orgs' tokens in rotation" >&2
run "single Redis, L1 off" REDIS_URL="$SINGLE_URL" CACHE_KEY_PREFIX=benchsingle CACHE_L1=off
run "Cluster (3 masters), L1 off" REDIS_MODE=cluster REDIS_URL="$CLUSTER_URLS" CACHE_KEY_PREFIX=benchcluster CACHE_L1=off
run "single Redis, L1 on" REDIS_URL="$SINGLE_URL" CACHE_KEY_PREFIX=benchsingle CACHE_L1=on
run "Cluster (3 masters), L1 on" REDIS_MODE=cluster REDIS_URL="$CLUSTER_URLS" CACHE_KEY_PREFIX=benchcluster CACHE_L1=on

{
    echo "Cached \`/api/faculty/?page=1\`, 10 organizations' tokens in rotation, wrk -t2 on loopback, $DURATION per row ($(nproc) cores, $(date -u +%Y-%m-%d))."
    echo
    echo "| store | connections | req/s | p50 ms | p99 ms | non-2xx |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/cluster.md"
