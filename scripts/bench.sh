#!/usr/bin/env bash
# Every Campus benchmark in one run, side by side (issue "Benchmarks"):
#
#   scripts/bench.sh            # 10 orgs x (500 faculty, 10,000 students)
#   scripts/bench.sh --quick    # the same data, shorter wrk runs (< 10 min)
#   scripts/bench.sh --large    # 10 orgs x (500 faculty, 100,000 students) = 1M
#
# Builds in release mode, starts its own Redis and PostgreSQL (never the
# machine's shared ones: a benchmark fills them), seeds, and for each
# configuration starts `campus serve` on a free loopback port, runs wrk with a
# bounded duration and stops the server by PID. Writes bench/results/:
# results.md (the table, ratios measured in this run), curves.csv and PNG plots
# (throughput and p50/p99 latency against 1..256 connections).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=lib/services.sh
source "$ROOT/scripts/lib/services.sh"

MODE=full
for arg in "$@"; do
    case "$arg" in
        --quick) MODE=quick ;;
        --large) MODE=large ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "error: unknown option $arg (use --quick or --large)" >&2; exit 2 ;;
    esac
done
ORGS=${ORGS:-10}
FACULTY=${FACULTY:-500}
case "$MODE" in
    quick) STUDENTS=${STUDENTS:-10000}; DURATION=${DURATION:-4s}; CURVE_DURATION=${CURVE_DURATION:-2s} ;;
    full)  STUDENTS=${STUDENTS:-10000}; DURATION=${DURATION:-10s}; CURVE_DURATION=${CURVE_DURATION:-5s} ;;
    large) STUDENTS=${STUDENTS:-100000}; DURATION=${DURATION:-10s}; CURVE_DURATION=${CURVE_DURATION:-5s} ;;
esac
CONNS=16
# The two ratio goals are measured in paired rounds: the floor and the cached
# route take turns, PAIR_ROUNDS times, in ABBA order (floor first, then cached
# first, ...). Each AB+BA pair gives one ratio (the geometric mean of its two
# rounds' ratios, which cancels a steady drift), and the goal line reports the
# median over the pairs. On 2 cores shared with wrk and other tenants,
# throughput drifts by 10-20% within a minute; two routes measured one after
# the other once each compared the drift as much as the routes.
PAIR_ROUNDS=${PAIR_ROUNDS:-6}
if [ "$PAIR_ROUNDS" -lt 2 ] || [ $((PAIR_ROUNDS % 2)) -ne 0 ]; then
    echo "error: PAIR_ROUNDS must be even and at least 2 (got $PAIR_ROUNDS)" >&2
    exit 2
fi
case "$MODE" in
    quick) PAIR_DURATION=${PAIR_DURATION:-2s} ;;
    *) PAIR_DURATION=${PAIR_DURATION:-4s} ;;
esac
OUT="$ROOT/bench/results"
mkdir -p "$OUT"

SERVER_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
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
export CAMPUS_BENCH_ROUTES=1
export RUST_LOG=warn

now() { date +%s.%N; }
since() { python3 -c "import sys; print(round($(now) - $1, 2))"; }

echo "== seeding $ORGS orgs x ($FACULTY faculty, $STUDENTS students)" >&2
t=$(now)
"$BIN" seed --orgs "$ORGS" --faculty "$FACULTY" --students "$STUDENTS" --seed 1 >/dev/null 2>&1
SEED_S=$(since "$t")
TOTAL_STUDENTS=$((ORGS * STUDENTS))

start_server() { # env assignments for this configuration...
    local port
    port=$(svc_free_port)
    env "$@" BIND="127.0.0.1:$port" "$BIN" serve >/dev/null 2>&1 &
    SERVER_PID=$!
    BASE="http://127.0.0.1:$port"
    campus_wait "$BASE"
    TOKEN=$(campus_token "$BASE" org1-admin)
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

to_ms() { # wrk latency (123.00us / 1.23ms / 1.20s) -> milliseconds
    python3 -c "
import sys; v=sys.argv[1]
for unit, f in (('us', 0.001), ('ms', 1.0), ('s', 1000.0)):
    if v.endswith(unit): print(round(float(v[:-len(unit)]) * f, 3)); break
else: print('')" "$1"
}

# wrk [connections] [duration] path [script] -> sets RPS P50 P99 NON2XX
wrk_run() {
    local conns=$1 duration=$2 path=$3 script=${4:-}
    local threads=2
    [ "$conns" -lt 2 ] && threads=1
    local args=(-t"$threads" -c"$conns" -d"$duration" --latency -H "Authorization: Bearer $TOKEN")
    [ -n "$script" ] && args+=(-s "$script")
    local out
    out=$(wrk "${args[@]}" "$BASE$path")
    RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    P50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    P99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    NON2XX=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    NON2XX=${NON2XX:-0}
}

ROWS=()
declare -A RATE
row() { # key label path conns [script]
    local key=$1 label=$2 path=$3 conns=$4 script=${5:-}
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$BASE$path" || true # warm
    wrk_run "$conns" "$DURATION" "$path" "$script"
    RATE[$key]=$RPS
    ROWS+=("| $label | \`$path\` | $conns | $RPS | $P50 | $P99 | $NON2XX |")
    echo "  $label: $RPS req/s, p50 $P50 ms, p99 $P99 ms" >&2
}

declare -A PAIRED PAIR_DETAIL
# Of the arguments that are numbers (wrk prints no latency when a run failed): n/a if none.
median() { python3 -c "import statistics, sys; v = [float(a) for a in sys.argv[1:] if a]; print(round(statistics.median(v), 3) if v else 'n/a')" "$@"; }
mean() { python3 -c "import statistics, sys; v = [float(a) for a in sys.argv[1:] if a]; print(round(statistics.fmean(v), 2) if v else 'n/a')" "$@"; }
paired() { # floor-key floor-label floor-path key label path
    local fkey=$1 flabel=$2 fpath=$3 key=$4 label=$5 path=$6 i turn
    local -a frps=() fp50=() fp99=() fbad=() rps=() p50=() p99=() bad=() ratios=()
    for turn in "$fpath" "$path"; do curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$BASE$turn" || true; done
    for i in $(seq 1 "$PAIR_ROUNDS"); do
        local order=(floor cached)
        [ $((i % 2)) -eq 0 ] && order=(cached floor)
        for turn in "${order[@]}"; do
            if [ "$turn" = floor ]; then
                wrk_run "$CONNS" "$PAIR_DURATION" "$fpath"
                frps+=("$RPS"); fp50+=("$P50"); fp99+=("$P99"); fbad+=("$NON2XX")
            else
                wrk_run "$CONNS" "$PAIR_DURATION" "$path"
                rps+=("$RPS"); p50+=("$P50"); p99+=("$P99"); bad+=("$NON2XX")
            fi
        done
        ratios+=("$(python3 -c "print(round(${rps[-1]} / ${frps[-1]}, 3))")")
    done
    local pairs=()
    for ((i = 0; i < PAIR_ROUNDS; i += 2)); do
        pairs+=("$(python3 -c "print(round((${ratios[i]} * ${ratios[i + 1]}) ** 0.5, 3))")")
    done
    RATE[$fkey]=$(mean "${frps[@]}")
    RATE[$key]=$(mean "${rps[@]}")
    PAIRED[$key]=$(median "${pairs[@]}")
    PAIR_DETAIL[$key]="rounds ${ratios[*]}; pairs ${pairs[*]}"
    local sum_bad sum_fbad
    sum_fbad=$(python3 -c "print(sum(int(a) for a in '${fbad[*]}'.split()))")
    sum_bad=$(python3 -c "print(sum(int(a) for a in '${bad[*]}'.split()))")
    ROWS+=("| $flabel | \`$fpath\` | $CONNS | ${RATE[$fkey]} | $(median "${fp50[@]}") | $(median "${fp99[@]}") | $sum_fbad |")
    ROWS+=("| $label | \`$path\` | $CONNS | ${RATE[$key]} | $(median "${p50[@]}") | $(median "${p99[@]}") | $sum_bad |")
    echo "  $label against $flabel: ${PAIR_DETAIL[$key]} (median of the pairs ${PAIRED[$key]})" >&2
}

CURVE_CONNS=(1 2 4 8 16 32 64 128 256)
echo "route,connections,rps,p50_ms,p99_ms" >"$OUT/curves.csv"
curve() { # route-name path
    local name=$1 path=$2 c
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$BASE$path" || true
    for c in "${CURVE_CONNS[@]}"; do
        wrk_run "$c" "$CURVE_DURATION" "$path"
        echo "$name,$c,$RPS,$P50,$P99" >>"$OUT/curves.csv"
    done
    echo "  curve $name: done" >&2
}

metric() { # sum of a Prometheus series' samples whose line matches $1
    curl -fs "$BASE/metrics" | awk -v pat="$1" 'index($0, pat) == 1 {s += $NF} END {print s + 0}'
}

SEARCH_LUA=$(mktemp --suffix=.lua)
WRITE_LUA=$(mktemp --suffix=.lua)
DETAIL_LUA=$(mktemp --suffix=.lua)
trap 'rm -f "$SEARCH_LUA" "$WRITE_LUA" "$DETAIL_LUA"; cleanup' EXIT
cat >"$SEARCH_LUA" <<'LUA'
-- A different search per request: every one misses the cache.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/students/?search=zz" .. n .. "q" .. math.random(1, 1000000000))
end
LUA
cat >"$WRITE_LUA" <<'LUA'
-- Renames one department back and forth: each write commits, then invalidates
-- the departments and everything that embeds them, before its 2xx.
-- (A headers table given to wrk.format replaces -H's headers: set it here.)
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"name":"Computer Science ' .. (n % 2) .. '"}'
  return wrk.format("PATCH", DEPT_PATH, nil, body)
end
LUA
cat >"$DETAIL_LUA" <<'LUA'
-- Distinct list pages (page size and page drawn at random): enough entries to
-- fill the L1 past its bound, so the RSS shows that the bound holds.
request = function()
  local size = math.random(20, 100)
  return wrk.format("GET", "/api/students/?page_size=" .. size .. "&page=" .. math.random(1, 50))
end
LUA

echo "== L1 on (Redis + in-process)" >&2
L1_MB=16
start_server CACHE_L1=on CACHE_L1_MAX_MB=$L1_MB REDIS_URL="$REDIS_URL"
LIST_BYTES=$(curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/faculty/?page=1" | wc -c)
paired static "static route, list-sized (floor)" "/bench/static?bytes=$LIST_BYTES" \
    l1list "cached faculty list, L1" "/api/faculty/?page=1"
row static2k "static 2 KB route (floor)" "/bench/static" $CONNS
row l1detail "cached student detail, L1" "/api/students/1/" $CONNS
row l1stats "cached dashboard, L1" "/api/stats/dashboard/" $CONNS
curve static "/bench/static?bytes=$LIST_BYTES"
curve l1 "/api/faculty/?page=1"

# 1000 concurrent cold requests for one key: loads counted by the loader
# histogram, so exactly one database query is the goal.
loads_before=$(metric 'tiercache_loader_seconds_count{kind="list",model="student"')
wrk_run 1000 2s "/api/students/?page=3&ordering=email"
loads_after=$(metric 'tiercache_loader_seconds_count{kind="list",model="student"')
STAMPEDE_LOADS=$(python3 -c "print(int($loads_after - $loads_before))")
echo "  stampede: 1000 connections, $RPS req/s, $STAMPEDE_LOADS load(s)" >&2

# Writes: each commits and invalidates before its response.
DEPT_ID=$(curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/departments/?search=CS" | python3 -c 'import sys,json;print(json.load(sys.stdin)["results"][0]["id"])')
sed -i "s|DEPT_PATH|\"/api/departments/$DEPT_ID/\"|" "$WRITE_LUA"
row writes "writes: rename a department (PATCH)" "/api/departments/$DEPT_ID/" 4 "$WRITE_LUA"

# Memory: the RSS with a warm but small L1, then after filling it past its bound.
RSS_BASE_MB=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status")
wrk -t2 -c16 -d"$DURATION" -s "$DETAIL_LUA" -H "Authorization: Bearer $TOKEN" "$BASE/" >/dev/null
RSS_MB=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status")
echo "  RSS: $RSS_BASE_MB MB before, $RSS_MB MB after filling the L1 ($L1_MB MB bound)" >&2
stop_server

echo "== warm-cache" >&2
t=$(now)
REDIS_URL="$REDIS_URL" "$BIN" warm-cache --pages 2 >/dev/null 2>&1 || true
WARM_S=$(since "$t")

echo "== L2 only (CACHE_L1=off)" >&2
start_server CACHE_L1=off REDIS_URL="$REDIS_URL"
paired redisget "one plain Redis GET, list-sized (floor)" "/bench/redis-get?bytes=$LIST_BYTES" \
    l2list "cached faculty list, L2 only" "/api/faculty/?page=1"
row l2detail "cached student detail, L2 only" "/api/students/1/" $CONNS
curve l2 "/api/faculty/?page=1"
stop_server

echo "== cache off" >&2
start_server CACHE_DISABLED=true REDIS_URL="$REDIS_URL"
row off "faculty list, no cache" "/api/faculty/?page=1" $CONNS
row offstats "dashboard, no cache" "/api/stats/dashboard/" $CONNS
row cold500 "cold 500-row list (students)" "/api/students/?page_size=500" $CONNS
row dept "miss: dept filter, by last name" "/api/students/?department=CS&ordering=last_name" 1
row search "miss: search (random term)" "/api/students/" 1 "$SEARCH_LUA"
row search16 "miss: search (random term), 16 connections" "/api/students/" $CONNS "$SEARCH_LUA"
curve off "/api/faculty/?page=1"
stop_server

INVALIDATION=""
if [ "$MODE" != quick ]; then
    echo "== invalidation at 10k / 100k / 1M keys (criterion, its own redis-server)" >&2
    INVALIDATION=$(cargo bench -q -p tierstamp --bench cache -- invalidate 2>/dev/null |
        grep -E "^redis-side cost" | sed -E 's/usec=[^,]*,//' || true)
fi

# The mixed workload: readers while writers change rows (bench/mixed.sh, its
# own PostgreSQL and Redis, the same data sizes).
echo "== mixed workload (bench/mixed.sh)" >&2
case "$MODE" in
    quick) MIXED_RATES="0 1" MIXED_DURATION=5s ;;
    *) MIXED_RATES="0 0.1 1 10" MIXED_DURATION=10s ;;
esac
MIXED=$(env -u REDIS_URL -u DATABASE_URL -u TEST_DATABASE_URL ORGS="$ORGS" FACULTY="$FACULTY" \
    STUDENTS="$STUDENTS" RATES="$MIXED_RATES" DURATION="$MIXED_DURATION" \
    bench/mixed.sh "$BIN" || echo "mixed workload failed (its raw outputs: see stderr)")

ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Its own output does not make a checkout dirty.
DIRTY=$(git status --porcelain -- . ':!bench/results' 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
{
    echo "Run of $(date -u +%Y-%m-%d) on commit \`$COMMIT\`$DIRTY, \`scripts/bench.sh${1:+ $*}\` ($MODE):"
    echo "$ORGS orgs x ($FACULTY faculty, $STUDENTS students) = $TOTAL_STUDENTS students, seeded in **${SEED_S} s**;"
    echo "wrk -t2 on loopback, $DURATION per row; the cached faculty list is $LIST_BYTES bytes."
    echo "The two ratio goals' routes and floors ran in turns ($PAIR_ROUNDS rounds of $PAIR_DURATION each, ABBA):"
    echo "their rows give the mean req/s and the median latencies over the rounds."
    echo
    echo "| what | path | connections | req/s | p50 ms | p99 ms | non-2xx |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| goal | measured in this run |"
    echo "|---|---|"
    echo "| cached list with L1 ≥ 0.8x the static route | **${PAIRED[l1list]}x** the list-sized floor (median over $((PAIR_ROUNDS / 2)) ABBA pairs; ${PAIR_DETAIL[l1list]}); $(ratio "${RATE[l1list]}" "${RATE[static2k]}") the 2 KB floor (rates) |"
    echo "| L2-only ≥ 0.8x the plain Redis GET route | **${PAIRED[l2list]}x** the same-size GET (median over $((PAIR_ROUNDS / 2)) ABBA pairs; ${PAIR_DETAIL[l2list]}) |"
    echo "| miss p50 ≤ 15 ms (dept filter, by last name, $TOTAL_STUDENTS students) | see the 1-connection row |"
    echo "| one database query per stampede (1000 concurrent cold requests) | $STAMPEDE_LOADS load(s) |"
    echo "| seed time | ${SEED_S} s for $TOTAL_STUDENTS students |"
    echo "| warm-cache (2 pages per model and org, details, dashboards) | ${WARM_S} s |"
    echo "| RSS of one instance: warm, then after filling its L1 past its bound (CACHE_L1_MAX_MB=$L1_MB) | $RSS_BASE_MB MB, then $RSS_MB MB |"
    echo
    echo "Mixed workload (\`bench/mixed.sh\`): wrk -c32 readers over the $ORGS organizations"
    echo "(60% student details, 20% faculty details, 20% list pages, rows log-uniform) while"
    echo "writers PATCH random students at the given rate in every organization, $MIXED_DURATION each:"
    echo
    echo "$MIXED"
    echo
    if [ -n "$INVALIDATION" ]; then
        echo "Invalidation, Redis-side time per call (\`INFO commandstats\`, the bump script),"
        echo "from \`cargo bench -p tierstamp --bench cache -- invalidate\` in this run:"
        echo
        echo '```'
        echo "$INVALIDATION"
        echo '```'
    else
        echo "Invalidation cost at 10k / 100k / 1M cached keys: not run in --quick mode"
        echo "(\`cargo bench -p tierstamp --bench cache -- invalidate\`)."
    fi
} >"$OUT/results.md"

echo "== plots" >&2
VENV="$ROOT/target/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { svc_apt_install python3-venv && python3 -m venv "$VENV"; }
    "$VENV/bin/pip" install -q matplotlib
fi
"$VENV/bin/python" "$ROOT/bench/plot.py" "$OUT/curves.csv" "$OUT"
cat "$OUT/results.md"
echo >&2
echo "wrote $OUT/results.md, curves.csv, throughput.png, latency.png" >&2
