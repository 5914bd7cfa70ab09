#!/usr/bin/env bash
# The real-time benchmarks of docs/BENCHMARKS.md ("Real-time"), on the embedded default
# (SQLite + in-process schedule), each scenario against a fresh server on port 3201:
#   tools/bench-realtime.sh
# Needs `cargo build --release -p dms -p loadgen` first. Prints one JSON line per scenario.
# SCENARIOS="idle push late1000 late1000-preload late5000" (the default) picks which to run,
# each against a fresh server.
#
# ws-lateness submits at --rate with each message due 2 s later (submission and delivery
# share the server, like a producer feeding BullMQ); with --preload it loads everything
# first with POST /messages/batch and the due times follow at --rate, which measures delivery
# and push alone. Single submits take about 1,300 messages/s on 2 cores, so 2,000/s and
# 5,000/s are preloaded. tools/bench-messages.sh runs the push and 5,000/s scenarios too, on
# either deployment (ws-push, ws-5000).
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 WebSockets need 10,000 descriptors on each side (the server and loadgen inherit this).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

port=${PORT:-3201}
work=$(mktemp -d /tmp/dms-bench-realtime.XXXXXX)
# Tokens live a day: the server closes a socket (4001) when its token expires. Every socket
# comes from loopback and 100 of them from each user: lift the per-address and per-user caps.
export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn PORT=$port \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_RATE_LIMIT_LOGIN_PER_IP=1000000 DMS_RATE_LIMIT_LOGIN_PER_USERNAME=1000000 \
    DMS_ACCESS_TOKEN_TTL_SECONDS=86400 DMS_MAX_CONNECTIONS_PER_ADDRESS=0 \
    DMS_WS_MAX_PER_USER=1000 DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS=1000

# Every scenario gets a fresh server and database: delivery slows as the database grows, so
# a shared one would make each figure depend on the runs before it.
server=
stop() {
    [ -n "$server" ] || return 0
    echo "$1: server RSS $(ps -o rss= -p "$server") KiB at the end" >&2
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null || true
    server=
}
trap 'stop exit' EXIT
start() {
    DMS_DATA_DIR=$work/$1 target/release/dms serve >"$work/$1.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        target/release/dms healthcheck "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return
        sleep 0.2
    done
    echo "the server did not start; see $work/$1.log" >&2
    exit 1
}

run() { target/release/loadgen "$@" --url "http://127.0.0.1:$port" --password bench-password --label sqlite; }

for scenario in ${SCENARIOS:-idle push late1000 late1000-preload late5000}; do
    start "$scenario"
    case $scenario in
        # 10,000 sockets over 100 users, 100 handshakes in flight; RSS from /proc/$server.
        idle) run ws-idle --connections 10000 --users 100 --server-pid "$server" ;;
        # 200 users, one socket each; every message to a random one of them.
        push) run ws-lateness -c 64 --rate 2000 --count 50000 --preload 60s --server-pid "$server" ;;
        late1000) run ws-lateness -c 64 --rate 1000 --count 30000 --server-pid "$server" ;;
        late1000-preload) run ws-lateness -c 64 --rate 1000 --count 30000 --preload 40s --server-pid "$server" ;;
        late5000) run ws-lateness -c 64 --rate 5000 --count 100000 --preload 120s --server-pid "$server" ;;
        # Not in the default set: 10 s instead of 20 s of messages at 5,000/s.
        late5000-short) run ws-lateness -c 64 --rate 5000 --count 50000 --preload 60s --server-pid "$server" ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    stop "$scenario"
done
echo "server logs: $work/*.log" >&2
