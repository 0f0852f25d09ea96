#!/usr/bin/env bash
# Server CPU per request (utime + stime of the `campus serve` process over a
# wrk run, divided by the requests served), for the static floor and the cached
# faculty list, alternated ROUNDS times. Throughput on 2 cores shared with wrk
# moves by several percent from run to run; CPU per request is the steadier
# measure of what the cached path itself costs, and the one to compare two
# builds with:
#
#   bench/cpu.sh                          # the release build of this checkout
#   bench/cpu.sh path/to/other/campus     # another build, same harness
#   CACHE_L1=off bench/cpu.sh             # the L2-only path (adds the Redis GET floor)
#
# Starts its own redis-server on a free loopback port and a throwaway SQLite
# database (the data path does not matter to a hit), seeds 2 orgs, and stops
# everything by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

BIN=${1:-}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-16}
L1=${CACHE_L1:-on}
bench_tools wrk redis-server
BIN=$(campus_bin "$BIN")
bench_scratch campus-cpu

bench_redis
RPORT=$BENCH_REDIS_PORT
bench_seed "$BIN" campus

PORT=$(svc_free_port)
BASE="http://127.0.0.1:$PORT"
env CACHE_L1="$L1" CACHE_L1_MAX_MB=16 REDIS_URL="redis://127.0.0.1:$RPORT/" BIND="127.0.0.1:$PORT" \
    "$BIN" serve >"$DIR/serve.log" 2>&1 &
SERVER_PID=$!
campus_wait "$BASE"
TOKEN=$(campus_token "$BASE" org1-admin)
BYTES=$(curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/faculty/?page=1" | wc -c)
PATHS=("/bench/static?bytes=$BYTES" "/api/faculty/?page=1")
[ "$L1" = off ] && PATHS+=("/bench/redis-get?bytes=$BYTES")

ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
HZ=$(getconf CLK_TCK)
echo "CACHE_L1=$L1, wrk -t2 -c$CONNS -d$DURATION, $BIN"
for _ in $(seq 1 "$ROUNDS"); do
    for p in "${PATHS[@]}"; do
        curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$BASE$p"
        t0=$(ticks)
        out=$(wrk -t2 -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer $TOKEN" "$BASE$p")
        t1=$(ticks)
        n=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        python3 -c "print('%-32s %10s req/s %6.1f us of server CPU per request' % ('$p', '$rps', ($t1 - $t0) * 1e6 / $HZ / $n))"
    done
done
