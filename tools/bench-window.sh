#!/usr/bin/env bash
# One measurement window: every DMS figure of docs/BENCHMARKS.md ("Messages" and the socket
# rows) on both deployments, then the peers' equivalent runs (../shared/peers), one run at a
# time, each after a quiet wait (until other processes use < 25 % of a core, at most
# QUIET_WAIT = 60 s; the peer scripts wait the same way before each of their runs).
#   tools/bench-window.sh [RESULTS_DIR]        # default: /tmp/dms-window-<date>
#   SMOKE=1 tools/bench-window.sh              # every run with tiny sizes: checks the setup
# Needs `cargo build --release -p dms -p loadgen`, PostgreSQL on 127.0.0.1:5432 (user postgres,
# trust auth), Redis on 127.0.0.1:6379, node and npm. Everything lands in RESULTS_DIR:
#   dms-<deployment>.jsonl    one JSON line per loadgen run (tools/bench-messages.sh)
#   dms-<deployment>.log      its progress and quiet waits; servers/ holds each server's log
#   <peer>/                   the peers' result files (--out); <peer>-<run>.log their console
#   failures.txt              every run that exited non-zero
#
# Isolation (the machine's PostgreSQL and Redis are shared with other work):
#   DMS postgres   database dms_bench (dropped and created anew per scenario), Redis db 11
#                  (FLUSHDB per scenario), keys under the prefix dms
#   BullMQ         Redis db BULLMQ_DB (12), which bench.mjs FLUSHDBs (--db)
#   pipeline       Redis db PIPELINE_DB (13), which bench.mjs FLUSHDBs (--db)
#   graphile       its own database graphile_bench, dropped and created per run; no Redis
#   socket.io/ws   no Redis, no database: a server child on an ephemeral loopback port
# A peer Redis db that holds keys other than BullMQ's (bull:*) stops the window before any run.
# The peer folders are copied to PEER_WORK (/tmp/dms-peers) and `npm ci` runs there:
# ../shared stays as it is. BullMQ's memory figure reads `used_memory` of the whole Redis
# instance: other clients' writes during that run show up in it.
#
# Environment: DEPLOYMENTS ("sqlite postgres"), PEERS ("bullmq graphile socketio pipeline"),
# PEER_RUNS (1: runs of each peer measurement), QUIET_WAIT (60), and every size variable of
# tools/bench-messages.sh (SCENARIOS picks the DMS scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
results=${1:-/tmp/dms-window-$(date +%Y%m%dT%H%M%S)}
peers_src=${PEERS_SRC:-$repo/../shared/peers}
peer_work=${PEER_WORK:-/tmp/dms-peers}
deployments=${DEPLOYMENTS:-sqlite postgres}
peers=${PEERS:-bullmq graphile socketio pipeline}
runs=${PEER_RUNS:-1}
quiet=${QUIET_WAIT:-60}
bullmq_db=${BULLMQ_DB:-12}
pipeline_db=${PIPELINE_DB:-13}
mkdir -p "$results/servers"
: >"$results/failures.txt"

if [ "${SMOKE:-0}" = 1 ]; then
    # Tiny sizes: every step runs end to end in seconds.
    export DURATION=3s IDLE_COUNT=3 LATENESS_COUNT=2000 LATENESS_RATE=1000 PRELOAD=10s BG_RATE=100 \
        SUSTAINED_RATES=2000 SUSTAINED_COUNT=4000 PRELOAD_LONG=10s BURST_COUNT=2000 BURST_LEAD=10s \
        MEMORY_COUNT=2000 FILL_COUNT=5000 PENDING_COUNTS=5000 PENDING_IDLE=3 \
        WS_PUSH_COUNT=2000 WS_5000_COUNT=5000 WS_PRELOAD=10s
    quiet=${QUIET_WAIT:-5}
    bullmq_enqueue=(enqueue --jobs 2000)
    bullmq_lateness=(--produce-s 5 --min-delay 1000 --max-delay 2000)
    bullmq_rates=(1000)
    bullmq_burst=(burst --jobs 2000)
    bullmq_memory=(memory --jobs 2000)
    graphile_enqueue=(enqueue --jobs 2000 --modes single100,bulk100)
    graphile_lateness=(--produce-s 5 --min-delay 1000 --max-delay 2000)
    graphile_rates=(500)
    graphile_burst=(burst --jobs 2000)
    socket_args=(--clients 100 --rate 2000 --seconds 3)
    pipeline_args=(--rate 500 --clients 100 --produce-s 12)
else
    bullmq_enqueue=(enqueue --jobs 50000)
    bullmq_lateness=()
    bullmq_rates=(5000 10000)
    bullmq_burst=(burst --jobs 50000)
    bullmq_memory=(memory --jobs 100000)
    graphile_enqueue=(enqueue --jobs 50000 --modes single100,bulk100)
    graphile_lateness=()
    graphile_rates=(5000 10000)
    graphile_burst=(burst --jobs 50000)
    socket_args=(--clients 1000 --rate 2000 --seconds 20)
    pipeline_args=(--rate 5000 --clients 1000)
fi

{
    echo "window started $(date -Is)"
    echo "dms commit $(git rev-parse HEAD) ($(git rev-parse --abbrev-ref HEAD))$(git diff --quiet || echo ', with uncommitted changes')"
    echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
    echo "node $(node --version 2>/dev/null), redis $(redis-cli info server | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p'), $(psql --version 2>/dev/null)"
    echo "smoke ${SMOKE:-0}; deployments: $deployments; peers: $peers; peer runs: $runs; quiet wait: $quiet s"
} | tee "$results/meta.txt" >&2

fail() { echo "$(date -Is) $*" | tee -a "$results/failures.txt" >&2; }

# --- DMS: every scenario of tools/bench-messages.sh on each deployment ----------------------
for deployment in $deployments; do
    echo "== DMS $deployment ($(date -Is))" >&2
    code=0
    LOGS=$results/servers QUIET_WAIT=$quiet tools/bench-messages.sh "$deployment" \
        > >(tee "$results/dms-$deployment.jsonl") 2> >(tee "$results/dms-$deployment.log" >&2) || code=$?
    [ "$code" = 0 ] || fail "DMS $deployment: tools/bench-messages.sh exited $code"
    if grep -q '"failed": true' "$results/dms-$deployment.jsonl" 2>/dev/null; then
        fail "DMS $deployment: some scenarios failed (see dms-$deployment.jsonl and .log)"
    fi
done

# --- Peers ---------------------------------------------------------------------------------
if [ "$bullmq_db" = "$pipeline_db" ] || [ "$bullmq_db" = 11 ] || [ "$pipeline_db" = 11 ]; then
    echo "BULLMQ_DB and PIPELINE_DB must differ from each other and from 11 (DMS's)" >&2
    exit 2
fi
# Refuses a Redis db that holds anything but BullMQ's keys: the peers flush theirs.
redis_db_is_ours() {
    local foreign
    foreign=$(redis-cli -n "$1" --scan --count 1000 | grep -v '^bull:' | head -n 1 || true)
    if [ -n "$foreign" ]; then
        echo "Redis db $1 holds keys that are not BullMQ's (for example $foreign); the peer would flush them. Pick another db." >&2
        return 1
    fi
}
for peer in $peers; do
    case $peer in
        bullmq) redis_db_is_ours "$bullmq_db" ;;
        pipeline) redis_db_is_ours "$pipeline_db" ;;
    esac
done

# A writable copy of each peer folder, installed from its lock file.
prepare() {
    local peer=$1
    rm -rf "${peer_work:?}/$peer"
    mkdir -p "$peer_work"
    tar -C "$peers_src" --exclude=node_modules --exclude=results --exclude=logs -cf - "$peer" \
        | tar -C "$peer_work" -xf -
    chmod -R u+w "$peer_work/$peer"
    (cd "$peer_work/$peer" && npm ci --no-audit --no-fund --loglevel=error) >"$results/$peer-npm-ci.log" 2>&1
}

# peer_run PEER TAG COMMAND...: one peer command in its copy, console to RESULTS/PEER-TAG.log.
peer_run() {
    local peer=$1 tag=$2 code=0
    shift 2
    echo "== $peer $tag ($(date -Is)): $*" >&2
    (cd "$peer_work/$peer" && "$@") 2>&1 | tee "$results/$peer-$tag.log" >&2 || code=$?
    [ "$code" = 0 ] || fail "$peer $tag exited $code: $*"
}

for peer in $peers; do
    if ! prepare "$peer"; then
        fail "$peer: npm ci failed (see $peer-npm-ci.log)"
        continue
    fi
    out=$results/$peer
    case $peer in
        bullmq)
            common=(--db "$bullmq_db" --runs "$runs" --quiet-wait "$quiet" --out "$out")
            peer_run bullmq enqueue node bench.mjs "${bullmq_enqueue[@]}" "${common[@]}"
            for rate in "${bullmq_rates[@]}"; do
                peer_run bullmq "lateness-$rate" node bench.mjs lateness --rate "$rate" "${bullmq_lateness[@]}" "${common[@]}"
            done
            peer_run bullmq burst node bench.mjs "${bullmq_burst[@]}" "${common[@]}"
            peer_run bullmq memory node bench.mjs "${bullmq_memory[@]}" "${common[@]}"
            redis-cli -n "$bullmq_db" FLUSHDB >/dev/null
            ;;
        graphile)
            common=(--config tuned --runs "$runs" --quiet-wait "$quiet" --out "$out")
            peer_run graphile enqueue node bench.mjs "${graphile_enqueue[@]}" "${common[@]}"
            for rate in "${graphile_rates[@]}"; do
                peer_run graphile "lateness-$rate" node bench.mjs lateness --rate "$rate" "${graphile_lateness[@]}" "${common[@]}"
            done
            peer_run graphile burst node bench.mjs "${graphile_burst[@]}" "${common[@]}"
            ;;
        socketio)
            for impl in ws socketio; do
                peer_run socketio "$impl" node load.mjs --impl "$impl" "${socket_args[@]}" --runs "$runs" --quiet-wait "$quiet" --out "$out"
            done
            ;;
        pipeline)
            peer_run pipeline run node bench.mjs "${pipeline_args[@]}" --db "$pipeline_db" --runs "$runs" --quiet-wait "$quiet" --out "$out"
            redis-cli -n "$pipeline_db" FLUSHDB >/dev/null
            ;;
        *) fail "unknown peer $peer" ;;
    esac
done

echo "window ended $(date -Is)" | tee -a "$results/meta.txt" >&2
if [ -s "$results/failures.txt" ]; then
    echo "some runs failed: $results/failures.txt" >&2
fi
echo "results: $results"
