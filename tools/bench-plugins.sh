#!/usr/bin/env bash
# The tenant-plugin benchmarks of docs/BENCHMARKS.md, on the embedded default (SQLite):
#   tools/bench-plugins.sh
# Needs `cargo build --release -p dms -p loadgen` first. Prints one JSON line per run:
#   1. submit throughput and lateness with the built-in plugins;
#   2. three tenant plugins uploaded (each upload compiles its component) and bound to the
#      validators, delay-policy and inbox hooks; the first submit that uses them;
#   3. submit throughput and lateness again, decided by the tenant plugins;
#   4. the hooks back to the built-ins, and the built-in round again (A-B-A, so the order and
#      the growing database do not decide the comparison);
#   5. a restart, and the first submit after it (hooks read from the database, plugins loaded
#      from the disk compile cache);
#   6. with PYTHON_PLUGIN=path.wasm (plugins/examples/python-validator/build.sh), the time to
#      upload (and compile) that component.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PORT:-3201}
work=$(mktemp -d /tmp/dms-bench-plugins.XXXXXX)
export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn PORT=$port DMS_DATA_DIR=$work/data \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_PLUGIN_MAX_UPLOAD_MB=32
database_url="sqlite://$work/data/dms.sqlite3"

server=
start() {
    target/release/dms serve >>"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        target/release/dms healthcheck "http://127.0.0.1:$port/health" 2>/dev/null && return
        sleep 0.2
    done
    echo "the server did not start; see $work/server.log" >&2
    exit 1
}
stop() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; }
trap stop EXIT

run() { target/release/loadgen "$@" --url "http://127.0.0.1:$port" --password bench-password; }
measure() {
    run submit -c 64 -d "${DURATION:-20s}" --label "$1"
    run lateness -c 64 --rate "${RATE:-2000}" --count "${COUNT:-20000}" --preload "${PRELOAD:-45s}" \
        --database-url "$database_url" --label "$1"
}

start
measure builtin
run bind-plugins --label tenant
measure tenant
run unbind-plugins --label builtin-again
measure builtin-again
run bind-plugins --label tenant >/dev/null
stop
start
run first-submit --label after-restart
if [ -n "${PYTHON_PLUGIN:-}" ]; then
    token=$(curl -s "http://127.0.0.1:$port/auth/login" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    curl -s -o /dev/null -w '{"scenario":"python-upload","bytes":%{size_upload},"status":%{http_code},"upload_seconds":%{time_total}}\n' \
        "http://127.0.0.1:$port/plugins?name=python-validator" -H "authorization: Bearer $token" \
        -H 'content-type: application/wasm' --data-binary @"$PYTHON_PLUGIN"
fi
