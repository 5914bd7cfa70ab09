#!/usr/bin/env bash
# The message-pipeline benchmarks of docs/BENCHMARKS.md, on one deployment:
#   tools/bench-messages.sh sqlite      # the embedded default
#   tools/bench-messages.sh postgres    # PostgreSQL + Redis (Redis database 11, which it flushes)
# Needs `cargo build --release -p dms -p loadgen` first. Prints one JSON line per scenario.
# SCENARIOS="submit idle lateness sustained burst memory" (the default) picks which to run.
set -euo pipefail
cd "$(dirname "$0")/.."

deployment=${1:?usage: tools/bench-messages.sh sqlite|postgres}
port=${PORT:-3200}
work=$(mktemp -d /tmp/dms-bench.XXXXXX)
export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn PORT=$port DMS_DATA_DIR=$work/data \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000
case $deployment in
    sqlite)
        database_url="sqlite://$work/data/dms.sqlite3"
        redis=()
        ;;
    postgres)
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench' -c 'CREATE DATABASE dms_bench'
        redis-cli -n 11 FLUSHDB >/dev/null
        database_url="postgres://postgres@127.0.0.1:5432/dms_bench"
        export DATABASE_URL=$database_url REDIS_URL=redis://127.0.0.1:6379/11 \
            JWT_SECRET=bench-secret-bench-secret-bench-secret \
            DMS_ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
        redis=(--redis-url redis://127.0.0.1:6379/11)
        ;;
    *) echo "unknown deployment $deployment" >&2; exit 2 ;;
esac

target/release/dms serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    target/release/dms healthcheck "http://127.0.0.1:$port/health" 2>/dev/null && break
    sleep 0.2
done

run() { target/release/loadgen "$@" --url "http://127.0.0.1:$port" --password bench-password --label "$deployment"; }
delivery=(--database-url "$database_url" "${redis[@]}")

for scenario in ${SCENARIOS:-submit idle lateness sustained burst memory}; do
    case $scenario in
        submit) run submit -c 64 -d 20s ;;
        idle) run idle -c 1 --count 50 "${delivery[@]}" ;;
        lateness) run lateness -c 64 --rate 5000 --count 50000 --preload "${PRELOAD:-90s}" "${delivery[@]}" ;;
        sustained) run lateness -c 64 --rate 20000 --count 100000 --preload "${PRELOAD_LONG:-150s}" "${delivery[@]}" ;;
        burst) run burst -c 64 --count 50000 "${delivery[@]}" ;;
        memory) [ "$deployment" = postgres ] && run memory -c 64 --count 20000 "${delivery[@]}" ;;
    esac
done
echo "server RSS: $(ps -o rss= -p $server) KiB" >&2
