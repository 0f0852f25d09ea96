#!/usr/bin/env bash
# Two builds side by side on one data set: the same path through each, in
# alternated wrk rounds (ABBA), over several pairs of server processes; prints
# each build's mean throughput and server CPU per request.
#
#   bench/ab.sh path/to/campus-a path/to/campus-b                 # the cached faculty list
#   bench/ab.sh A B '/api/students/?page=2'                       # another path
#   PAIRS=5 ROUNDS=4 DURATION=4s CACHE_L1=off bench/ab.sh A B     # more pairs, L2 only
#
# Why pairs of processes: on this 2-core machine a server process keeps its
# own speed for its lifetime (where the scheduler put its threads next to
# wrk's), and two processes of one build differed by up to 9% in a row of
# rounds. One pair of processes compared the processes as much as the builds;
# the mean over several fresh pairs compares the builds. Each pair gets its own
# redis-server on a free loopback port and a throwaway SQLite database, and
# everything is stopped by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

if [ $# -lt 2 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
A=$(campus_bin "$1")
B=$(campus_bin "$2")
PATHQ=${3:-/api/faculty/?page=1}
PAIRS=${PAIRS:-3}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-16}
L1=${CACHE_L1:-on}
bench_tools wrk redis-server
bench_scratch campus-ab
B_PID=""
stop_b() { if [ -n "$B_PID" ]; then kill "$B_PID" 2>/dev/null || true; wait "$B_PID" 2>/dev/null || true; B_PID=""; fi; }
trap 'stop_b; bench_cleanup' EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# One wrk round against the server $2 (PID $1); appends "build req/s us/req".
round() {
    local pid=$1 port=$2 build=$3 t0 t1 out n rps
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$PATHQ"
    t0=$(ticks "$pid")
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$PATHQ")
    t1=$(ticks "$pid")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    python3 -c "print('$build', $rps, ($t1 - $t0) * 1e6 / $HZ / $n)" >>"$DIR/rounds"
}

echo "A: $A"
echo "B: $B"
echo "$PATHQ, CACHE_L1=$L1, $PAIRS pairs of processes x $ROUNDS rounds each, wrk -t2 -c$CONNS -d$DURATION"
for pair in $(seq 1 "$PAIRS"); do
    bench_redis
    rport=$BENCH_REDIS_PORT
    bench_seed "$A" "campus-$pair"
    pa=$(svc_free_port)
    pb=$(svc_free_port)
    # Each build under its own key prefix: neither reads the other's entries.
    env CACHE_L1="$L1" CACHE_L1_MAX_MB=16 CACHE_KEY_PREFIX=ab-a REDIS_URL="redis://127.0.0.1:$rport/" \
        BIND="127.0.0.1:$pa" "$A" serve >"$DIR/a.log" 2>&1 &
    SERVER_PID=$!
    env CACHE_L1="$L1" CACHE_L1_MAX_MB=16 CACHE_KEY_PREFIX=ab-b REDIS_URL="redis://127.0.0.1:$rport/" \
        BIND="127.0.0.1:$pb" "$B" serve >"$DIR/b.log" 2>&1 &
    B_PID=$!
    campus_wait "http://127.0.0.1:$pa"
    campus_wait "http://127.0.0.1:$pb"
    TOKEN=$(campus_token "http://127.0.0.1:$pa" org1-admin)
    for r in $(seq 1 "$ROUNDS"); do
        if [ $(((r + pair) % 2)) = 0 ]; then
            round "$SERVER_PID" "$pa" A
            round "$B_PID" "$pb" B
        else
            round "$B_PID" "$pb" B
            round "$SERVER_PID" "$pa" A
        fi
    done
    stop_b
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
done
python3 - "$DIR/rounds" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
mean = {}
for build in ("A", "B"):
    rps = [float(r[1]) for r in rows if r[0] == build]
    us = [float(r[2]) for r in rows if r[0] == build]
    mean[build] = (statistics.mean(rps), statistics.mean(us))
    print("%s: %8.0f req/s  %6.2f us of server CPU per request  (%d rounds)"
          % (build, mean[build][0], mean[build][1], len(rps)))
print("B/A: throughput %.3f, CPU per request %.3f"
      % (mean["B"][0] / mean["A"][0], mean["B"][1] / mean["A"][1]))
PY
