#!/usr/bin/env bash
# User-space instructions per cached request, counted by callgrind: the L2-only
# faculty list (`CACHE_L1=off`) and its floor, one plain Redis GET of the same
# size; with --l1, the faculty list from L1 and its floor, the static route of
# the same size. Unlike wrk's throughput or CPU time, an instruction count does
# not move with the machine's load, so two builds can be compared on a noisy
# machine (kernel time, cache misses and waiting are not counted: confirm with
# bench/ab.sh or scripts/bench.sh).
#
#   bench/instructions.sh                            # the release build of this checkout
#   bench/instructions.sh path/to/other/campus       # another build
#   bench/instructions.sh --l1 [path/to/campus]      # the L1 path
#
# With --l1 what is counted is the connection task (hyper's connection future,
# with everything it calls: parsing, middleware, the handler, the response),
# not the whole program: start-up is not the same in two runs (quanta
# calibrates its clock for a fixed time, some 20M instructions that vary with
# the machine's speed; counted in, they moved the L1 figure by up to 10%), and
# neither is the once-a-second background work. The L2-only figures count the
# whole program: their Redis client runs in a task of its own, and a GET and an
# MGET cost it differently (the two runs' start-ups then move them by about 1%,
# so run this on an idle machine).
#
# For each route the server runs under valgrind twice, serving 100 and then
# 3100 requests over one keep-alive connection; the difference over 3000
# requests cancels start-up, seeding and the first (missing) request. Starts
# its own redis-server on a free loopback port and a throwaway SQLite database,
# and stops everything by PID. About 2 minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

L1=off
if [ "${1:-}" = --l1 ]; then
    L1=on
    shift
fi
BIN=${1:-}
FEW=100 MANY=3100
bench_tools valgrind redis-server
BIN=$(campus_bin "$BIN")
bench_scratch campus-instructions

# Total instructions of one server run that answers $3 requests to $2, into
# $DIR/$1.ir (not printed: run in this shell, so the trap sees its PIDs).
count() {
    local run=$1 path=$2 n=$3
    local rport port
    bench_redis
    rport=$BENCH_REDIS_PORT
    bench_seed "$BIN" "$run"
    port=$(svc_free_port)
    env CACHE_L1="$L1" REDIS_URL="redis://127.0.0.1:$rport/" BIND="127.0.0.1:$port" \
        valgrind --tool=callgrind --callgrind-out-file="$DIR/$run.out" "$BIN" serve \
        >"$DIR/serve.log" 2>&1 &
    SERVER_PID=$!
    # Under valgrind the server takes a while to start.
    local i
    for i in $(seq 1 240); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.5
    done
    local token
    token=$(campus_token "http://127.0.0.1:$port" org1-admin)
    # The floor is sized like the list page (the same in every run: both count it).
    local bytes
    bytes=$(curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/faculty/?page=1" | wc -c)
    path=${path//BYTES/$bytes}
    python3 - "$port" "$path" "$n" "$token" <<'PY'
import http.client, sys
port, path, n, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
    if [ "$L1" = on ]; then
        # The first (outermost) line of the connection future, inclusive
        # (hyper-util's auto connection under `axum::serve`; under Campus's
        # own accept loop, hyper's HTTP/1 connection inlined into hyper-util's
        # graceful-shutdown wrapper). awk
        # reads on to the end: stopping early would fail the pipe (pipefail).
        callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$DIR/$run.out" 2>/dev/null |
            awk '!n && /(UpgradeableConnection<I,S,E>|GracefulConnectionFuture<C,F>) as core::future::future::Future>::poll \[/ {gsub(",", "", $1); print $1; n = 1}' \
                >"$DIR/$run.ir"
    else
        callgrind_annotate "$DIR/$run.out" 2>/dev/null |
            awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' >"$DIR/$run.ir"
    fi
    if ! [ -s "$DIR/$run.ir" ]; then
        echo "error: nothing counted in the profile of $run (with --l1: the connection future renamed? its candidates:)" >&2
        callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$DIR/$run.out" 2>/dev/null |
            grep -i 'connection.*as core::future::future::Future>::poll' | head -5 >&2 || true
        exit 1
    fi
}

what="the whole program"
[ "$L1" = on ] && what="the connection task"
echo "instructions per request (user space, callgrind, $what), CACHE_L1=$L1, $BIN"
declare -A per
floor=get
[ "$L1" = on ] && floor=static
for route in list "$floor"; do
    case $route in
        list) path="/api/faculty/?page=1" ;;
        get) path="/bench/redis-get?bytes=BYTES" ;;
        static) path="/bench/static?bytes=BYTES" ;;
    esac
    count "$route-few" "$path" "$FEW"
    count "$route-many" "$path" "$MANY"
    per[$route]=$((($(cat "$DIR/$route-many.ir") - $(cat "$DIR/$route-few.ir")) / (MANY - FEW)))
    printf "%-44s %8d\n" "$route: ${path//BYTES/(list-sized)}" "${per[$route]}"
done
python3 -c "print('floor/list: %.3f' % (${per[$floor]} / ${per[list]}))"
