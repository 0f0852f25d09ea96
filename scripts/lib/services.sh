# shellcheck shell=bash
# Throwaway Redis and PostgreSQL servers for the test suite.
#
# Source this file, call `services_setup`, and make sure `services_teardown`
# runs on exit (scripts/test.sh installs an EXIT trap for that). The setup
# exports:
#   REDIS_URL               redis://127.0.0.1:PORT/ (private server unless a
#                           reachable REDIS_URL was already set)
#   TIERCACHE_REDIS_SERVER  path of redis-server (fault tests spawn their own)
#   TEST_DATABASE_URL       postgres://postgres@127.0.0.1:PORT/postgres
#   DATABASE_URL            same as TEST_DATABASE_URL
#
# Shared services on this machine (e.g. 6379 / 5432) are never used unless
# explicitly passed in through REDIS_URL / TEST_DATABASE_URL / DATABASE_URL,
# and are never stopped or modified.

# State of what *we* started; teardown only touches these.
SVC_REDIS_PID=""
SVC_REDIS_DIR=""
SVC_PG_DIR=""
SVC_PG_STARTED=""
SVC_PG_BIN=""
_SVC_APT_UPDATED=""

svc_log() { printf '    %s\n' "$*" >&2; }
svc_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command with root privileges (sudo only if needed and available).
svc_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        svc_die "need root to run '$*' (not root and no sudo); install it manually"
    fi
}

svc_apt_install() {
    command -v apt-get >/dev/null 2>&1 || svc_die "apt-get not found; please install: $*"
    svc_log "installing Debian packages: $*"
    if [[ -z $_SVC_APT_UPDATED ]]; then
        svc_as_root apt-get update -qq
        _SVC_APT_UPDATED=1
    fi
    svc_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash only).
svc_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a currently free port, starting from a random point in 15000-29999
# (below the Linux ephemeral range).
svc_free_port() {
    local start=$((15000 + RANDOM % 15000)) i p
    for ((i = 0; i < 500; i++)); do
        p=$((15000 + (start - 15000 + i) % 15000))
        if ! svc_port_busy "$p"; then
            echo "$p"
            return 0
        fi
    done
    svc_die "no free TCP port found"
}

# ---------------------------------------------------------------- Redis ----

svc_redis_ping_url() {
    [[ "$(timeout 5 redis-cli -u "$1" ping 2>/dev/null)" == "PONG" ]]
}

svc_start_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        svc_apt_install redis-server redis-tools
    fi
    command -v redis-server >/dev/null 2>&1 || svc_die "redis-server still not on PATH after install"
    TIERCACHE_REDIS_SERVER="$(command -v redis-server)"
    export TIERCACHE_REDIS_SERVER

    if [[ -n ${REDIS_URL:-} ]]; then
        if svc_redis_ping_url "$REDIS_URL"; then
            svc_log "redis: using REDIS_URL from environment: $REDIS_URL"
            export REDIS_URL
            return 0
        fi
        svc_log "redis: REDIS_URL=$REDIS_URL does not answer PING; starting a private server"
    fi

    SVC_REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tierstamp-redis.XXXXXX")"
    local attempt port i
    for attempt in 1 2 3 4 5; do
        port="$(svc_free_port)"
        redis-server --port "$port" --bind 127.0.0.1 \
            --save "" --appendonly no --daemonize no \
            --dir "$SVC_REDIS_DIR" --logfile "$SVC_REDIS_DIR/redis.log" \
            </dev/null >/dev/null 2>&1 &
        SVC_REDIS_PID=$!
        for ((i = 0; i < 100; i++)); do
            if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; then
                export REDIS_URL="redis://127.0.0.1:$port/"
                svc_log "redis: private redis-server pid $SVC_REDIS_PID at $REDIS_URL (log: $SVC_REDIS_DIR/redis.log)"
                return 0
            fi
            kill -0 "$SVC_REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        # Died (port race?) or never answered: clean up and retry elsewhere.
        svc_stop_redis_process
        svc_log "redis: attempt $attempt on port $port failed; log tail:"
        tail -n 5 "$SVC_REDIS_DIR/redis.log" 2>/dev/null | sed 's/^/      /' >&2 || true
    done
    svc_die "could not start a private redis-server"
}

svc_stop_redis_process() {
    local pid=$SVC_REDIS_PID i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    SVC_REDIS_PID=""
}

# ----------------------------------------------------------- PostgreSQL ----

# Locate the server binaries (initdb, pg_ctl) and put them first on PATH.
svc_find_pg_bin() {
    local d
    SVC_PG_BIN=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
            SVC_PG_BIN=$d
            break
        fi
    done
    if [[ -z $SVC_PG_BIN ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        SVC_PG_BIN="$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    if [[ -n $SVC_PG_BIN ]]; then
        case ":$PATH:" in *":$SVC_PG_BIN:"*) ;; *) PATH="$SVC_PG_BIN:$PATH" ;; esac
        export PATH
        return 0
    fi
    return 1
}

# Run a command as the owner of the throwaway cluster. initdb/postgres refuse
# to run as root, so as root we use the `postgres` OS user.
svc_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
        fi
    else
        "$@"
    fi
}

svc_pg_ready_url() {
    command -v pg_isready >/dev/null 2>&1 || return 1
    pg_isready -q -t 5 -d "$1" >/dev/null 2>&1
}

svc_start_postgres() {
    svc_find_pg_bin || true

    local url=""
    for url in "${TEST_DATABASE_URL:-}" "${DATABASE_URL:-}"; do
        [[ -n $url ]] || continue
        if ! command -v pg_isready >/dev/null 2>&1; then
            svc_apt_install postgresql-client
        fi
        if svc_pg_ready_url "$url"; then
            export TEST_DATABASE_URL="$url" DATABASE_URL="$url"
            svc_log "postgres: using database URL from environment: $url"
            return 0
        fi
        svc_log "postgres: $url is not reachable; starting a private cluster"
    done

    if [[ -z $SVC_PG_BIN ]]; then
        svc_apt_install postgresql
        svc_find_pg_bin || svc_die "initdb/pg_ctl not found after installing postgresql"
    fi

    if [[ $EUID -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 || svc_die "running as root but OS user 'postgres' does not exist"
        # /tmp (not $TMPDIR): the postgres user must be able to reach it, and
        # the unix socket path must stay short.
        SVC_PG_DIR="$(mktemp -d /tmp/tierstamp-pg.XXXXXX)"
        chown postgres:postgres "$SVC_PG_DIR"
    else
        SVC_PG_DIR="$(mktemp -d /tmp/tierstamp-pg.XXXXXX)"
    fi

    if ! svc_as_pg "$SVC_PG_BIN/initdb" -D "$SVC_PG_DIR/data" -U postgres --auth=trust \
        -E UTF8 --locale=C --no-sync >"$SVC_PG_DIR/initdb.log" 2>&1; then
        sed 's/^/      /' "$SVC_PG_DIR/initdb.log" >&2 || true
        svc_die "initdb failed"
    fi

    local attempt port
    for attempt in 1 2 3 4 5; do
        port="$(svc_free_port)"
        if svc_as_pg "$SVC_PG_BIN/pg_ctl" -D "$SVC_PG_DIR/data" -l "$SVC_PG_DIR/postgres.log" -w -t 60 \
            -o "-p $port -k $SVC_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null 2>&1; then
            SVC_PG_STARTED=1
            export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export DATABASE_URL="$TEST_DATABASE_URL"
            local pid
            pid="$(head -n 1 "$SVC_PG_DIR/data/postmaster.pid" 2>/dev/null || echo '?')"
            svc_log "postgres: private cluster pid $pid at $TEST_DATABASE_URL (data: $SVC_PG_DIR/data, log: $SVC_PG_DIR/postgres.log)"
            return 0
        fi
        svc_log "postgres: attempt $attempt on port $port failed; log tail:"
        tail -n 5 "$SVC_PG_DIR/postgres.log" 2>/dev/null | sed 's/^/      /' >&2 || true
        # pg_ctl may have timed out with a postmaster still coming up.
        svc_stop_postgres_cluster
    done
    svc_die "could not start a private PostgreSQL cluster"
}

svc_stop_postgres_cluster() {
    local dir=$SVC_PG_DIR pid i
    [[ -n $dir && -d $dir/data ]] || return 0
    if [[ -f $dir/data/postmaster.pid ]]; then
        svc_as_pg "$SVC_PG_BIN/pg_ctl" -D "$dir/data" stop -m fast -w -t 30 >/dev/null 2>&1 || true
        # Fallback if pg_ctl could not stop it: signal the postmaster directly.
        if [[ -f $dir/data/postmaster.pid ]]; then
            pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
            if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                kill -QUIT "$pid" 2>/dev/null || true
                for ((i = 0; i < 50; i++)); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    SVC_PG_STARTED=""
}

# ------------------------------------------------------------ entry points --

services_setup() {
    echo "==> starting test services" >&2
    svc_start_redis
    svc_start_postgres
}

# Stop exactly what services_setup started and remove its temp dirs.
# Safe to call several times and after a half-finished setup.
services_teardown() {
    svc_stop_redis_process
    if [[ -n $SVC_REDIS_DIR && $SVC_REDIS_DIR == */tierstamp-redis.* && -d $SVC_REDIS_DIR ]]; then
        rm -rf -- "$SVC_REDIS_DIR"
    fi
    SVC_REDIS_DIR=""

    svc_stop_postgres_cluster
    if [[ -n $SVC_PG_DIR && $SVC_PG_DIR == /tmp/tierstamp-pg.* && -d $SVC_PG_DIR ]]; then
        rm -rf -- "$SVC_PG_DIR"
    fi
    SVC_PG_DIR=""
}

# ------------------------------------------------------ a running campus ----
# The benchmarks start `campus serve` themselves; these wait for it and log in.

# Wait (up to 10 s) until the campus at $1 answers /healthz.
campus_wait() {
    local _
    for _ in $(seq 1 200); do
        curl -fs "$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
}

# Print an access token for user $2 (a demo login, password campus-demo) of the
# campus at $1.
campus_token() {
    curl -fs -X POST "$1/api/auth/token/" -H 'content-type: application/json' \
        -d "{\"username\":\"$2\",\"password\":\"campus-demo\"}" |
        python3 -c 'import sys,json;print(json.load(sys.stdin)["access"])'
}

# The campus binary a benchmark measures: $1 if given, else this checkout's
# release build (built first). Needs ROOT, the checkout.
campus_bin() {
    if [ -n "${1:-}" ]; then
        printf '%s\n' "$1"
        return
    fi
    cargo build --release -q -p campus >&2
    printf '%s\n' "$ROOT/target/release/campus"
}

# A benchmark's scratch directory, in DIR. On exit, the redis-server and the
# campus whose PIDs the benchmark left in REDIS_PID and SERVER_PID are stopped
# and the directory is removed.
bench_scratch() {
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    REDIS_PID="" SERVER_PID=""
    trap bench_cleanup EXIT
}

bench_cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    rm -rf "$DIR"
}

# Installs the commands a benchmark needs (wrk, valgrind, redis-server) that
# are missing.
bench_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null && continue
        case $tool in
            redis-server) svc_apt_install redis-server redis-tools ;;
            *) svc_apt_install "$tool" ;;
        esac
    done
}

# Starts a throwaway redis-server (no persistence) on a free loopback port in
# $DIR, stopped by bench_cleanup: sets REDIS_PID and BENCH_REDIS_PORT.
bench_redis() {
    BENCH_REDIS_PORT=$(svc_free_port)
    redis-server --port "$BENCH_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$DIR" >"$DIR/redis.log" 2>&1 &
    REDIS_PID=$!
}

# Seeds a throwaway SQLite database $DIR/$2.db with the campus binary $1 (2
# orgs: a cached hit does not depend on the data's size) and exports what a
# benchmark server runs with.
bench_seed() {
    export DATABASE_URL="sqlite://$DIR/$2.db?mode=rwc" JWT_SECRET=bench-secret-0123456789abcdef0123456
    export CAMPUS_BENCH_ROUTES=1 RUST_LOG=warn
    "$1" seed --orgs 2 --faculty 500 --students 1000 --seed 1 >/dev/null 2>&1
}
