#!/usr/bin/env bash
# The message benchmarks of docs/BENCHMARKS.md ("Messages", and the socket rows of
# "Real-time") on one deployment, every scenario against a fresh server and an empty database:
#   tools/bench-messages.sh sqlite      # the embedded default: SQLite + in-process schedule
#   tools/bench-messages.sh postgres    # PostgreSQL (database dms_bench, dropped and created
#                                       # anew) + Redis database 11 (flushed with FLUSHDB)
# Needs `cargo build --release -p dms -p loadgen` first. Prints one JSON line per loadgen run
# on stdout (its "label" is deployment/scenario; a run that failed prints
# {"label": …, "failed": true, "exit": N}); progress, quiet waits and server RSS go to stderr.
#
# SCENARIOS picks which to run, in the order given (default: all of them, in this order):
#   submit          POST /messages, SUBMIT_CONNECTIONS (64) connections for DURATION (20s)
#   batch           POST /messages/batch of BATCH_SIZE (100), BATCH_CONNECTIONS (8) in flight,
#                   for DURATION: messages per second
#   idle            IDLE_COUNT (50) single messages, each due while nothing else happens
#   lateness        LATENESS_COUNT (50000) loaded first with the batch API, due at
#                   LATENESS_RATE (5000)/s from PRELOAD (30s) after the start
#   lateness-bg     the same, while a second producer submits single POST /messages at
#                   BG_RATE (1000)/s, due an hour later (its own throughput is in "background")
#   sustained       SUSTAINED_COUNT (100000) due at each rate of SUSTAINED_RATES
#                   ("10000 20000")/s from PRELOAD_LONG (60s): a fresh server for each rate
#   burst           BURST_COUNT (50000) due at one instant BURST_LEAD (45s) after the start
#   memory          (postgres only) Redis bytes per pending message, MEMORY_COUNT (20000)
#   fill-sustained  FILL_COUNT (1000000) messages due at once and delivered first (`fill`),
#                   then `sustained` on that database (compare with `sustained`)
#   pending         for each N of PENDING_COUNTS ("1000000 10000000" on postgres, "1000000" on
#                   sqlite: the 10,000,000 row is the scale-out deployment's), a fresh server:
#                   N messages due in 30 days, Redis bytes (postgres) or server RSS per pending message,
#                   PENDING_IDLE (20) idle messages' lateness beside them, and (postgres) the
#                   index's Redis keys deleted and the rebuild timed
#   ws-push         WS_PUSH_COUNT (50000) due at 2000/s to 200 users, one WebSocket each:
#                   push latency
#   ws-5000         WS_5000_COUNT (100000) due at 5000/s to 200 users: due -> received
# Every preload sends LOAD_BATCH (1000) messages per POST /messages/batch, LOAD_CONNECTIONS (16)
# requests in flight. For a smoke run, make the counts small (e.g. LATENESS_COUNT=2000).
#
# FLOW_LIMIT='{"rate": 1000000, "parallelism": 100000}' sets that tenant-wide flow-control
# limit (`PUT /flow-control/*`) on each fresh server before its load: the flow-control overhead
# (issue 16: limits set but not reached, within 10 % of none). Compare
#   SCENARIOS=sustained tools/bench-messages.sh sqlite
#   SCENARIOS=sustained FLOW_LIMIT='{"rate": 1000000, "parallelism": 100000}' tools/bench-messages.sh sqlite
#
# QUIET_WAIT=S waits before each scenario (tools/quiet-wait.sh: until other processes use
# < 25 % of a core, at most S seconds; default 0: no wait). LOGS=DIR keeps the server logs
# there (default: a new /tmp/dms-bench.XXXXXX); data lives under DATA (default: LOGS) and is
# deleted after each scenario unless KEEP_DATA=1. PORT (3200) is the server's port.
set -euo pipefail
cd "$(dirname "$0")/.."

deployment=${1:?usage: tools/bench-messages.sh sqlite|postgres}
port=${PORT:-3200}
logs=${LOGS:-$(mktemp -d /tmp/dms-bench.XXXXXX)}
data=${DATA:-$logs}
mkdir -p "$logs" "$data"

# Sizes (env overrides: a smoke run makes them small).
DURATION=${DURATION:-20s}
SUBMIT_CONNECTIONS=${SUBMIT_CONNECTIONS:-64}
BATCH_SIZE=${BATCH_SIZE:-100}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-8}
IDLE_COUNT=${IDLE_COUNT:-50}
LATENESS_RATE=${LATENESS_RATE:-5000}
LATENESS_COUNT=${LATENESS_COUNT:-50000}
PRELOAD=${PRELOAD:-30s}
BG_RATE=${BG_RATE:-1000}
SUSTAINED_RATES=${SUSTAINED_RATES:-10000 20000}
SUSTAINED_COUNT=${SUSTAINED_COUNT:-100000}
PRELOAD_LONG=${PRELOAD_LONG:-60s}
BURST_COUNT=${BURST_COUNT:-50000}
BURST_LEAD=${BURST_LEAD:-45s}
MEMORY_COUNT=${MEMORY_COUNT:-20000}
FILL_COUNT=${FILL_COUNT:-1000000}
if [ "$deployment" = postgres ]; then
    PENDING_COUNTS=${PENDING_COUNTS:-1000000 10000000}
else
    PENDING_COUNTS=${PENDING_COUNTS:-1000000}
fi
PENDING_IDLE=${PENDING_IDLE:-20}
WS_PUSH_COUNT=${WS_PUSH_COUNT:-50000}
WS_5000_COUNT=${WS_5000_COUNT:-100000}
WS_PRELOAD=${WS_PRELOAD:-60s}
LOAD_BATCH=${LOAD_BATCH:-1000}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-16}
QUIET_WAIT=${QUIET_WAIT:-0}
REDIS_DB=11

# 200 WebSockets need descriptors on each side (the server and loadgen inherit this).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Rate limits out of the way; tokens valid for a day (a 10,000,000-message load outlasts the
# default 15 minutes); every connection comes from loopback, and the socket scenarios log in
# 200 users with one socket each.
export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn PORT=$port \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_RATE_LIMIT_LOGIN_PER_IP=1000000 DMS_RATE_LIMIT_LOGIN_PER_USERNAME=1000000 \
    DMS_RATE_LIMIT_LOGIN_PER_USERNAME_GLOBAL=1000000 \
    DMS_ACCESS_TOKEN_TTL_SECONDS=86400 DMS_MAX_CONNECTIONS_PER_ADDRESS=0 \
    DMS_WS_MAX_PER_USER=1000 DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS=1000
case $deployment in
    sqlite) redis=() ;;
    postgres)
        # No TLS on loopback, as the peers connect (node-postgres' default). sqlx's default
        # (sslmode=prefer) negotiates TLS with this machine's PostgreSQL: about 2 % slower since
        # sqlx 0.9.1, 3.7x slower with 0.9.0 (docs/BENCHMARKS.md, "PostgreSQL and TLS").
        export DATABASE_URL=postgres://postgres@127.0.0.1:5432/dms_bench?sslmode=disable \
            REDIS_URL=redis://127.0.0.1:6379/$REDIS_DB \
            JWT_SECRET=bench-secret-bench-secret-bench-secret \
            DMS_ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
        redis=(--redis-url "$REDIS_URL")
        ;;
    *) echo "unknown deployment $deployment" >&2; exit 2 ;;
esac
prefix=${DMS_REDIS_PREFIX:-dms}

server=
name=
database_url=
stop() {
    [ -n "$server" ] || return 0
    echo "$deployment/$name: server RSS $(ps -o rss= -p "$server" 2>/dev/null || echo '?') KiB at the end" >&2
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
    if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "${data:?}/$name"; fi
}
cleanup() {
    stop
    if [ "$deployment" = postgres ] && [ "${KEEP_DATA:-0}" != 1 ]; then
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench WITH (FORCE)' || true
        redis-cli -n $REDIS_DB FLUSHDB >/dev/null || true
    fi
}
trap cleanup EXIT

# A fresh server with an empty database, for the scenario (or step) $1.
start() {
    stop
    name=$1
    mkdir -p "$data/$name"
    export DMS_DATA_DIR=$data/$name
    case $deployment in
        sqlite) database_url="sqlite://$data/$name/dms.sqlite3" ;;
        postgres)
            psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench WITH (FORCE)' \
                -c 'CREATE DATABASE dms_bench'
            redis-cli -n $REDIS_DB FLUSHDB >/dev/null
            database_url=$DATABASE_URL
            ;;
    esac
    if [ "$QUIET_WAIT" != 0 ]; then tools/quiet-wait.sh "$QUIET_WAIT"; fi
    target/release/dms serve >"$logs/$deployment-$name.log" 2>&1 &
    server=$!
    for _ in $(seq 1 150); do
        if target/release/dms healthcheck "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
            flow_limit
            return
        fi
        sleep 0.2
    done
    echo "the server did not start; see $logs/$deployment-$name.log" >&2
    exit 1
}

# With FLOW_LIMIT, the admin's tenant-wide flow-control limit (`*`), as the admin.
flow_limit() {
    [ -n "${FLOW_LIMIT:-}" ] || return 0
    local token
    token=$(curl -sf "http://127.0.0.1:$port/auth/login" -H 'content-type: application/json' \
        -d '{"username": "admin", "password": "bench-password"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    curl -sf -X PUT "http://127.0.0.1:$port/flow-control/%2A" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' -d "$FLOW_LIMIT" >&2
    echo " (flow limit set)" >&2
}

# One loadgen run; a failure is reported as a JSON line and the next run goes on.
run() {
    local label=$deployment/$name code=0
    target/release/loadgen "$@" --url "http://127.0.0.1:$port" --password bench-password \
        --label "$label" || code=$?
    if [ "$code" != 0 ]; then
        echo "{\"label\": \"$label\", \"scenario\": \"$1\", \"failed\": true, \"exit\": $code}"
    fi
}
delivery() { echo --database-url "$database_url" "${redis[@]}"; }
load=(-c "$LOAD_CONNECTIONS" --batch-size "$LOAD_BATCH")

# Warns when the disk that holds the database may be too small for `count` messages (about
# 3 KB each with their history and indexes, a generous guess).
check_disk() {
    local count=$1 where=$data
    [ "$deployment" = postgres ] && where=$(psql -At -h 127.0.0.1 -U postgres -c 'SHOW data_directory' 2>/dev/null || echo "$data")
    local free_kb
    free_kb=$(df -Pk "$where" 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [ -n "$free_kb" ] && (( free_kb < count * 3 )); then
        echo "warning: $where has $((free_kb / 1024 / 1024)) GiB free; $count messages may need about $((count * 3 / 1024 / 1024)) GiB" >&2
    fi
}

# (PostgreSQL) One JSON line of DMS's tables after a run: updates, how many were HOT (no index
# entries written), dead tuples left for vacuum (the machine runs with autovacuum=off) and size.
table_stats() {
    psql -At -h 127.0.0.1 -U postgres -d dms_bench -c "
        SELECT json_build_object('label', '$deployment/$name', 'scenario', 'table-stats',
            'autovacuum', current_setting('autovacuum'),
            'tables', json_object_agg(relname, json_build_object(
                'live', n_live_tup, 'updated', n_tup_upd, 'hot_updated', n_tup_hot_upd,
                'dead', n_dead_tup, 'bytes', pg_total_relation_size(relid))))
        FROM pg_stat_user_tables
        WHERE relname IN ('messages', 'message_states', 'message_events', 'message_counts',
                          'feed_events', 'feed_heads', 'idempotency_keys')" || true
}

sustained() {
    # shellcheck disable=SC2046
    run lateness "${load[@]}" --rate "$1" --count "$SUSTAINED_COUNT" --preload "$PRELOAD_LONG" $(delivery)
}

for scenario in ${SCENARIOS:-submit batch idle lateness lateness-bg sustained burst memory fill-sustained pending ws-push ws-5000}; do
    # shellcheck disable=SC2046
    case $scenario in
        submit) start submit; run submit -c "$SUBMIT_CONNECTIONS" -d "$DURATION" ;;
        batch) start batch; run batch --size "$BATCH_SIZE" -c "$BATCH_CONNECTIONS" -d "$DURATION" ;;
        idle) start idle; run idle --count "$IDLE_COUNT" $(delivery) ;;
        lateness)
            start lateness
            run lateness "${load[@]}" --rate "$LATENESS_RATE" --count "$LATENESS_COUNT" --preload "$PRELOAD" $(delivery)
            ;;
        lateness-bg)
            start lateness-bg
            run lateness "${load[@]}" --rate "$LATENESS_RATE" --count "$LATENESS_COUNT" --preload "$PRELOAD" \
                --background-rate "$BG_RATE" --background-connections 64 $(delivery)
            ;;
        sustained) for rate in $SUSTAINED_RATES; do start "sustained-$rate"; sustained "$rate"; done ;;
        burst) start burst; run burst "${load[@]}" --count "$BURST_COUNT" --preload "$BURST_LEAD" $(delivery) ;;
        memory)
            if [ "$deployment" = postgres ]; then
                start memory; run memory "${load[@]}" --count "$MEMORY_COUNT" $(delivery)
            fi
            ;;
        fill-sustained)
            check_disk "$FILL_COUNT"
            start fill-sustained
            run fill "${load[@]}" --count "$FILL_COUNT" $(delivery)
            for rate in $SUSTAINED_RATES; do sustained "$rate"; done
            if [ "$deployment" = postgres ]; then table_stats; fi
            ;;
        pending)
            for count in $PENDING_COUNTS; do
                check_disk "$count"
                start "pending-$count"
                if [ "$deployment" = postgres ]; then
                    run pending "${load[@]}" --count "$count" --idle-count "$PENDING_IDLE" --server-pid "$server" \
                        --redis-loss --redis-prefix "$prefix" $(delivery)
                else
                    run pending "${load[@]}" --count "$count" --idle-count "$PENDING_IDLE" --server-pid "$server" $(delivery)
                fi
            done
            ;;
        ws-push)
            start ws-push
            run ws-lateness "${load[@]}" --rate 2000 --count "$WS_PUSH_COUNT" --preload "$WS_PRELOAD" --server-pid "$server"
            ;;
        ws-5000)
            start ws-5000
            run ws-lateness "${load[@]}" --rate 5000 --count "$WS_5000_COUNT" --preload "$WS_PRELOAD" --server-pid "$server"
            ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    stop
done
echo "server logs: $logs/$deployment-*.log" >&2
