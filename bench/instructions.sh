#!/usr/bin/env bash
# User-space instructions per cached request, counted by callgrind: the L2-only
# faculty list (`CACHE_L1=off`) and its floor, one plain Redis GET of the same
# size. Unlike wrk's throughput or CPU time, an instruction count does not move
# with the machine's load, so two builds can be compared on a noisy machine
# (kernel time, cache misses and waiting are not counted: confirm with
# scripts/bench.sh). Run it on an idle machine: the server's once-a-second work
# (heartbeat, channel pings) is counted too, and a slowed run counts more of it.
#
#   bench/instructions.sh                       # the release build of this checkout
#   bench/instructions.sh path/to/other/campus  # another build
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

BIN=${1:-}
FEW=100 MANY=3100
command -v valgrind >/dev/null || svc_apt_install valgrind
command -v redis-server >/dev/null || svc_apt_install redis-server redis-tools
BIN=$(campus_bin "$BIN")
bench_scratch campus-instructions

# Total instructions of one server run that answers $3 requests to $2, into
# $DIR/$1.ir (not printed: run in this shell, so the trap sees its PIDs).
count() {
    local run=$1 path=$2 n=$3
    local rport port
    rport=$(svc_free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
        >"$DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    export DATABASE_URL="sqlite://$DIR/$run.db?mode=rwc" JWT_SECRET=bench-secret-0123456789abcdef
    export CAMPUS_BENCH_ROUTES=1 RUST_LOG=warn
    "$BIN" seed --orgs 2 --faculty 500 --students 1000 --seed 1 >/dev/null 2>&1
    port=$(svc_free_port)
    env CACHE_L1=off REDIS_URL="redis://127.0.0.1:$rport/" BIND="127.0.0.1:$port" \
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
    callgrind_annotate "$DIR/$run.out" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' >"$DIR/$run.ir"
}

echo "instructions per request (user space, callgrind), $BIN"
declare -A per
for route in list get; do
    case $route in
        list) path="/api/faculty/?page=1" ;;
        get) path="/bench/redis-get?bytes=BYTES" ;;
    esac
    count "$route-few" "$path" "$FEW"
    count "$route-many" "$path" "$MANY"
    per[$route]=$((($(cat "$DIR/$route-many.ir") - $(cat "$DIR/$route-few.ir")) / (MANY - FEW)))
    printf "%-44s %8d\n" "$route: ${path//BYTES/(list-sized)}" "${per[$route]}"
done
python3 -c "print('floor/list: %.3f' % (${per[get]} / ${per[list]}))"
