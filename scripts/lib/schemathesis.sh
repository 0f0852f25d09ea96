#!/usr/bin/env bash
# Property-based fuzzing of the API against its own document (called by
# scripts/test.sh): schemathesis reads /api/schema/ and sends requests made
# from it, positive and negative, to a `campus serve` of its own; any response
# the document does not predict (a status, a body, a header), any 5xx, any
# valid request refused or invalid one accepted, fails the step.
#
# Needs TEST_DATABASE_URL (a PostgreSQL server: a database of its own is made
# on it and dropped) and REDIS_URL (keys under a prefix of its own, removed),
# and the debug `campus` binary (built here if missing). Environment:
#   FUZZ_EXAMPLES  test cases per operation and phase (default 25)
#   FUZZ_SEED      schemathesis' seed (default fixed: a run is repeatable)
#   FUZZ_TIMEOUT   seconds for the whole schemathesis run (default 180)
#   FUZZ_CAMPUS    a campus binary to fuzz (default: the debug build, built here)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=services.sh
source "$ROOT/scripts/lib/services.sh"

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${FUZZ_EXAMPLES:-25}
SEED=${FUZZ_SEED:-20}
RUN_TIMEOUT=${FUZZ_TIMEOUT:-180}
: "${TEST_DATABASE_URL:?needs a PostgreSQL URL (scripts/test.sh provides one)}"
: "${REDIS_URL:?needs a Redis URL (scripts/test.sh provides one)}"

target="${CARGO_TARGET_DIR:-$ROOT/target}"
venv="$target/schemathesis-venv"
if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null || true)" != *" $SCHEMATHESIS_VERSION" ]]; then
    svc_log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    # Debian's python3 creates virtualenvs only with python3-venv (ensurepip).
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        svc_apt_install python3 python3-venv
    fi
    rm -rf -- "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
campus="${FUZZ_CAMPUS:-}"
if [[ -z $campus ]]; then
    cargo build -q -p campus --bin campus
    campus="$target/debug/campus"
fi

run_id="fuzz_$$_$RANDOM"
db_url="${TEST_DATABASE_URL%/*}/$run_id"
prefix="campus-$run_id"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/campus-fuzz.XXXXXX")"
server_pid=""

cleanup() {
    local rc=$?
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    # Every key of this run, tierstamp's identity marker ({prefix:…}) included.
    redis-cli -u "$REDIS_URL" --scan --pattern "*$prefix*" |
        xargs -r -n 100 redis-cli -u "$REDIS_URL" unlink >/dev/null || true
    psql "$TEST_DATABASE_URL" -X -q -c "DROP DATABASE IF EXISTS \"$run_id\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    if ((rc != 0)) && [[ -f $scratch/server.log ]]; then
        svc_log "server log (tail):"
        tail -n 20 "$scratch/server.log" | sed 's/^/      /' >&2
    fi
    rm -rf -- "$scratch"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$TEST_DATABASE_URL" -X -q -c "CREATE DATABASE \"$run_id\"" >/dev/null
port="$(svc_free_port)"
base="http://127.0.0.1:$port"
# The login throttles and the hash pool's queue would answer most of the
# fuzzer's logins 429/503 (both documented; the fuzzer checks that), and the
# rest of its requests would then test the throttle alone: generous limits let
# them reach the handlers.
DATABASE_URL="$db_url" REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="$prefix" \
    JWT_SECRET="fuzz-$run_id-0123456789abcdef0123456789" RUST_LOG=warn \
    LOGIN_THROTTLE_USERNAME=100000/minute LOGIN_THROTTLE_ADDRESS=100000/minute \
    LOGIN_HASH_QUEUE=100000 CAMPUS_ADMIN_FILE="$scratch/admin.json" \
    "$campus" serve --demo --bind "127.0.0.1:$port" >"$scratch/server.log" 2>&1 &
server_pid=$!
campus_wait "$base"
curl -fs "$base/healthz" >/dev/null || { svc_log "campus did not start"; exit 1; }
# An organization admin: every operation, writes to users included, is
# reachable past authorization.
token="$(campus_token "$base" org1-admin)"

# `--checks all`, with one check replaced: positive_data_acceptance by
# positive_data_acceptance_but_state (schemathesis_hooks.py), which is the same
# check except for the 400s a valid write gets because of other rows (a
# duplicate of a field the document marks unique, the id of a missing related
# row, the last admin), which no schema can predict. `--max-examples` bounds
# each phase per operation; `timeout` bounds the whole run should it hang.
svc_log "schemathesis $SCHEMATHESIS_VERSION: seed $SEED, $EXAMPLES examples per operation, against $base"
# Run from the scratch directory: schemathesis keeps a cache in ./.schemathesis.
cd "$scratch"
SCHEMATHESIS_HOOKS="$ROOT/scripts/lib/schemathesis_hooks.py" \
    timeout "$RUN_TIMEOUT" "$venv/bin/schemathesis" run "$base/api/schema/" \
    --url "$base" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --workers 2 \
    --request-timeout 10 \
    --no-color \
    --generation-database none \
    --report-dir "$scratch/report" \
    -H "Authorization: Bearer $token"
