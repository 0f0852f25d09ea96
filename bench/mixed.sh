#!/usr/bin/env bash
# The mixed workload (issue 22): readers over 10 organizations (student and
# faculty details, list pages, log-uniform over rows: bench/mixed.lua) while
# writers PATCH random students at a fixed rate in every organization
# (bench/writer.py). Per build and write rate: read req/s, p99, and the hit
# ratio of each kind of read.
#
#   bench/mixed.sh                          # this checkout's release build
#   bench/mixed.sh path/to/campus-a [B]     # builds side by side, one data set
#   RATES="0 1" DURATION=10s bench/mixed.sh # knobs (defaults: 0 0.1 1 10, 10s)
#   PEER_DIR=$PEER/django-campus bench/mixed.sh
#                                           # and the original, after the builds
#
# With PEER_DIR (the original's folder with its venv, set up as
# ../shared/peer/README.md says), the original is measured on the same private
# services after the Campus builds: its own database in the private cluster
# (migrated and seeded with the same sizes), Redis database 5 of the private
# server, gunicorn with PEER_WORKERS (5) sync workers; stopped by PID.
#
# Starts its own PostgreSQL cluster and redis-server (never the machine's
# shared ones), seeds ORGS x (FACULTY, STUDENTS) once, and for each build
# starts `campus serve` on a free loopback port with a key prefix of its own,
# warms it with a read-only run, then measures each rate; everything stops by
# PID. Prints a markdown table; the raw wrk and writer outputs stay in $OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=("$(campus_bin "")")
ORGS=${ORGS:-10}
# The seed's sizes; FACULTY and STUDENTS are then the id ranges bench/mixed.lua reads.
SEED_FACULTY=${FACULTY:-500}
SEED_STUDENTS=${STUDENTS:-10000}
RATES=${RATES:-0 0.1 1 10}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-10s}
CONNS=${CONNS:-32}
# 1: before its warm-up, each build's cache is filled with every student and
# faculty detail and list page (`campus warm-cache`), so that hit ratios
# measure what writes cost a warm cache, not the first reads of the
# log-uniform tail (most of which even a 90 s warm-up never reaches). Results
# with it are not comparable with runs made without it (before 2026-12-07).
PREWARM=${PREWARM:-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/campus-mixed.XXXXXX")}

PEER_WORKERS=${PEER_WORKERS:-5}
SERVER_PID=""
WRITER_PID=""
cleanup() {
    local rc=$?
    for pid in "$WRITER_PID" "$SERVER_PID"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    done
    services_teardown || true
    exit "$rc"
}
trap cleanup EXIT
command -v wrk >/dev/null || svc_apt_install wrk
unset REDIS_URL TEST_DATABASE_URL DATABASE_URL
services_setup
export DATABASE_URL="$TEST_DATABASE_URL"
export JWT_SECRET="bench-secret-0123456789abcdef0123456"
export RUST_LOG=warn

echo "== seeding $ORGS orgs x ($SEED_FACULTY faculty, $SEED_STUDENTS students)" >&2
"${BINS[0]}" migrate >/dev/null 2>&1
"${BINS[0]}" seed --orgs "$ORGS" --faculty "$SEED_FACULTY" --students "$SEED_STUDENTS" --seed 1 >/dev/null 2>&1

# "lo-hi" of the ids of $2 (students, faculty) visible to token $1; fails
# unless they are contiguous (the draw maps ranks to ids).
id_range() {
    local first last count
    first=$(curl -fs -H "Authorization: Bearer $1" "$BASE/api/$2/?ordering=id&page_size=1")
    last=$(curl -fs -H "Authorization: Bearer $1" "$BASE/api/$2/?ordering=-id&page_size=1")
    python3 - "$first" "$last" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
lo, hi = a["results"][0]["id"], b["results"][0]["id"]
if hi - lo + 1 != a["count"]:
    sys.exit(f"ids of one organization are not contiguous: {lo}..{hi}, {a['count']} rows")
print(f"{lo}-{hi}")
PY
}

# Measures the server at $2 (label $1, raw outputs named after $3): logs in to
# every organization, warms it with a read-only run, then runs the readers with
# each rate of writers.
measure() {
    local label=$1 tag=$3 rate secs tokens=() students=() faculty=()
    BASE=$2
    for org in $(seq 1 "$ORGS"); do
        t=$(campus_token "$BASE" "org$org-admin")
        tokens+=("$t")
        students+=("$(id_range "$t" students)")
        faculty+=("$(id_range "$t" faculty)")
    done
    export TOKENS STUDENTS FACULTY
    TOKENS=$(IFS=,; echo "${tokens[*]}")
    STUDENTS=$(IFS=,; echo "${students[*]}")
    FACULTY=$(IFS=,; echo "${faculty[*]}")
    wrk -t2 -c"$CONNS" -d"$WARMUP" -s bench/mixed.lua "$BASE/" >"$OUT/warmup-$tag.txt"
    for rate in $RATES; do
        secs=${DURATION%s}
        python3 bench/writer.py "$BASE" "$rate" "$secs" "$TOKENS" "$STUDENTS" >"$OUT/writer-$tag-$rate.json" &
        WRITER_PID=$!
        wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/mixed.lua "$BASE/" >"$OUT/wrk-$tag-$rate.txt"
        wait "$WRITER_PID"
        WRITER_PID=""
        python3 - "$label" "$rate" "$OUT/wrk-$tag-$rate.txt" "$OUT/writer-$tag-$rate.json" <<'PY'
import json, re, sys
label, rate, wrk, writer = sys.argv[1:5]
text = open(wrk).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
kinds = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^kind (\w+) (\d+) (\d+)$", text, re.M)}
pct = lambda k: f"{100 * kinds[k][0] / kinds[k][1]:.2f}%" if kinds.get(k, (0, 0))[1] else "n/a"
w = json.load(open(writer))
print(f"| {label} | {rate} | {rps:,.0f} | {ms:.2f} | {pct('student')} | {pct('faculty')} | {pct('list')} | {w['acked']} ({w['failed']} failed) |")
PY
    done
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

echo "| build | writes/s per org | read req/s | p99 ms | student detail hits | faculty detail hits | list hits | writes acked |"
echo "|---|---|---|---|---|---|---|---|"
for i in "${!BINS[@]}"; do
    bin=${BINS[$i]}
    # Each build starts from an empty private Redis (the previous build's keys
    # and memory gone) and a vacuumed database (its writes leave dead rows;
    # their new values stay: the data has the same shape, not the same values).
    redis-cli -u "$REDIS_URL" FLUSHALL >/dev/null
    psql -q "$TEST_DATABASE_URL" -c "VACUUM ANALYZE" >/dev/null
    port=$(svc_free_port)
    env REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="mixed$i" BIND="127.0.0.1:$port" \
        "$bin" serve >"$OUT/server-$i.log" 2>&1 &
    SERVER_PID=$!
    campus_wait "http://127.0.0.1:$port"
    if [ "$PREWARM" = 1 ]; then
        env REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="mixed$i" \
            "$bin" warm-cache --model students --model faculty --pages 100000 \
            --host "127.0.0.1:$port" >"$OUT/prewarm-$i.log" 2>&1
    fi
    measure "$(basename "$(dirname "$bin")")/$(basename "$bin")" "http://127.0.0.1:$port" "$i"
    stop_server
done

if [ -n "${PEER_DIR:-}" ]; then
    PEER_DIR=$(cd "$PEER_DIR" && pwd)
    [ -x "$PEER_DIR/.venv/bin/gunicorn" ] || svc_die "no $PEER_DIR/.venv/bin/gunicorn: set the original up as ../shared/peer/README.md says"
    echo "== the original: seeding $ORGS orgs x ($SEED_FACULTY faculty, $SEED_STUDENTS students)" >&2
    psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE peer_mixed" >/dev/null
    peer_env=(DATABASE_URL="${TEST_DATABASE_URL%/*}/peer_mixed" REDIS_URL="${REDIS_URL%/*}/5"
        CACHE_KEY_PREFIX=peermixed CACHE_VERSION=v1 DJANGO_DEBUG=0 CACHE_LOG_LEVEL=WARNING)
    (cd "$PEER_DIR" && env "${peer_env[@]}" .venv/bin/python manage.py migrate -v 0 &&
        env "${peer_env[@]}" .venv/bin/python manage.py seed --orgs "$ORGS" --faculty "$SEED_FACULTY" \
            --students "$SEED_STUDENTS" --seed 1 >/dev/null)
    port=$(svc_free_port)
    (cd "$PEER_DIR" && exec env "${peer_env[@]}" .venv/bin/gunicorn -w "$PEER_WORKERS" -b "127.0.0.1:$port" \
        --error-logfile "$OUT/peer.log" campus_peer.wsgi:application) >"$OUT/peer.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || svc_die "the original did not start: $(tail -n 5 "$OUT/peer.log")"
        sleep 0.1
    done
    measure "original (gunicorn -w $PEER_WORKERS)" "http://127.0.0.1:$port" peer
    stop_server
fi
echo "raw outputs: $OUT" >&2
