#!/usr/bin/env bash
# The console's benchmark of docs/BENCHMARKS.md ("The console"): each page's server time and
# weight with MESSAGES (1000000) messages in the database of the embedded default (SQLite).
#   cargo build --release -p dms -p loadgen && tools/bench-console.sh
# A fresh server on DATA (default: a new /tmp/dms-console.XXXXXX) gets MESSAGES messages from
# the admin to one recipient, due at once and all delivered (`loadgen fill`), then
# tools/bench_console.py signs in through the console's form and GETs each page REQUESTS (300)
# times after WARMUP (20): one JSON line per page on stdout (p50/p99/max in ms, HTML bytes and
# HTML + CSS + JS bytes). KEEP_DATA=1 keeps the filled data; run again with the same DATA and
# FILLED=1 to time the pages without filling again. Paths given as arguments are timed instead
# of every page (`{message}` is the newest message's id). PORT (3300) is the server's port.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PORT:-3300}
data=${DATA:-$(mktemp -d /tmp/dms-console.XXXXXX)}
messages=${MESSAGES:-1000000}
mkdir -p "$data"
# Rate limits out of the way (the timing loop is one user's 300 requests a page); tokens valid
# for a day (the fill outlasts the default 15 minutes).
export DMS_DATA_DIR=$data PORT=$port DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_RATE_LIMIT_LOGIN_PER_IP=1000000 DMS_ACCESS_TOKEN_TTL_SECONDS=86400 \
    DMS_MAX_CONNECTIONS_PER_ADDRESS=0

target/release/dms serve >"$data/server.log" 2>&1 &
server=$!
cleanup() {
    echo "server RSS $(ps -o rss= -p "$server" 2>/dev/null || echo '?') KiB at the end" >&2
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "${data:?}"; fi
}
trap cleanup EXIT
for _ in $(seq 1 150); do
    target/release/dms healthcheck "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done

if [ "${FILLED:-0}" != 1 ]; then
    echo "filling $messages messages (due at once, delivered) ..." >&2
    target/release/loadgen fill -c 16 --batch-size 1000 --count "$messages" \
        --url "http://127.0.0.1:$port" --password bench-password --label console \
        --database-url "sqlite://$data/dms.sqlite3" >&2
fi
echo "database: $(du -sh "$data/dms.sqlite3" | cut -f1)" >&2

pages=("$@")
[ ${#pages[@]} -gt 0 ] || pages=(
    /console/login \
    /console/ \
    /console/overview.json \
    /console/messages \
    "/console/messages?status=delivered" \
    "/console/messages?box=received" \
    "/console/messages/{message}" \
    /console/dead-letters \
    /console/live \
    /console/webhook \
    /console/plugins \
    /console/hooks \
    /console/users \
    /console/sessions \
    /console/groups \
    /console/schedules \
    /console/flow-control
)
DMS_URL="http://127.0.0.1:$port" DMS_ADMIN_PASSWORD=bench-password python3 tools/bench_console.py "${pages[@]}"
