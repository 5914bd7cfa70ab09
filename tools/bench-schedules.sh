#!/usr/bin/env bash
# Recurring schedules at scale: SCHEDULES (100,000) active schedules on one server, on each
# deployment of DEPLOYMENTS ("sqlite postgres"). Reports, as one JSON line per deployment:
#   - create_per_second: POST /schedules throughput (each computes its first occurrence);
#   - rss_kib_before / rss_kib_after: the server's memory before and after (schedules live in
#     the database; a node holds none of them in memory);
#   - next_ms_p50 / p99: GET /schedules/{id}/next?count=100 (100 occurrences computed);
#   - lateness_ms_p50 / p99 / max: delivered_at - occurrence time (its deliver_at) of every
#     occurrence delivered by the end of the window. Schedule n fires once an hour
#     (`S M * * * *`) at OFFSET (120) + n mod SPREAD (3600) seconds after the start of the run,
#     so 100,000 schedules make about 28 messages a second; the run waits until OFFSET + WINDOW
#     (60) seconds after its start.
# Usage: tools/bench-schedules.sh           (needs a built dms: release if present, else debug)
#        SCHEDULES=300 SPREAD=20 OFFSET=20 WINDOW=25 tools/bench-schedules.sh   (a quick check)
# PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379 (db 11,
# FLUSHDB'd) for the postgres deployment.
set -euo pipefail
cd "$(dirname "$0")/.."
DMS=${DMS:-${CARGO_TARGET_DIR:-target}/release/dms}
[ -x "$DMS" ] || DMS=${CARGO_TARGET_DIR:-target}/debug/dms
SCHEDULES=${SCHEDULES:-100000}
WINDOW=${WINDOW:-60}
DEPLOYMENTS=${DEPLOYMENTS:-sqlite postgres}
CONCURRENCY=${CONCURRENCY:-32}
PORT=${PORT:-18090}
REDIS_DB=${REDIS_DB:-11}
work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
    psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench_schedules WITH (FORCE)' 2>/dev/null || true
}
trap cleanup EXIT

export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=warn PORT \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_ACCESS_TOKEN_TTL_SECONDS=86400 DMS_MAX_CONNECTIONS_PER_ADDRESS=0

for deployment in $DEPLOYMENTS; do
    mkdir -p "$work/$deployment"
    export DMS_DATA_DIR=$work/$deployment
    unset DATABASE_URL REDIS_URL JWT_SECRET DMS_ENCRYPTION_KEYS
    if [ "$deployment" = postgres ]; then
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench_schedules WITH (FORCE)' \
            -c 'CREATE DATABASE dms_bench_schedules'
        redis-cli -n "$REDIS_DB" FLUSHDB >/dev/null
        export DATABASE_URL="postgres://postgres@127.0.0.1:5432/dms_bench_schedules?sslmode=disable" \
            REDIS_URL="redis://127.0.0.1:6379/$REDIS_DB" \
            JWT_SECRET=bench-secret-bench-secret-bench-secret \
            DMS_ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
    fi
    "$DMS" serve >"$work/$deployment.log" 2>&1 &
    server=$!
    for _ in $(seq 1 150); do
        "$DMS" healthcheck "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    python3 - "$deployment" "$server" <<'PY'
import http.client, json, os, statistics, sys, threading, time

deployment, pid = sys.argv[1], sys.argv[2]
port = int(os.environ["PORT"])
total = int(os.environ.get("SCHEDULES", "100000"))
window = int(os.environ.get("WINDOW", "60"))
spread = int(os.environ.get("SPREAD", "3600"))
offset = int(os.environ.get("OFFSET", "120"))
run_start = time.time()
base = int(run_start) % 3600 + offset
workers = int(os.environ.get("CONCURRENCY", "32"))

def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def call(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    reply = conn.getresponse()
    data = reply.read()
    if reply.status >= 300:
        raise SystemExit(f"{method} {path}: {reply.status} {data[:300]!r}")
    return json.loads(data) if data else None

conn = http.client.HTTPConnection("127.0.0.1", port)
token = call(conn, "POST", "/auth/login", {"username": "admin", "password": "bench-password"})["token"]
me = call(conn, "GET", "/users/me", token=token)["id"]
rss_before = rss()

ids, lock = [], threading.Lock()
def create(start):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for n in range(start, total, workers):
        second = (base + n % spread) % 3600
        cron = f"{second % 60} {second // 60} * * * *"
        body = {"cron": cron, "timezone": "Europe/Berlin",
                "message": {"recipient_id": me, "content": f"schedule {n}"}}
        made = call(c, "POST", "/schedules", body, token)
        with lock:
            ids.append(made["id"])
began = time.monotonic()
threads = [threading.Thread(target=create, args=(w,)) for w in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
created_s = time.monotonic() - began
window_start = time.time()
rss_after = rss()

next_ms = []
for schedule in ids[:: max(1, len(ids) // 200)]:
    t = time.monotonic()
    items = call(conn, "GET", f"/schedules/{schedule}/next?count=100", token=token)["items"]
    next_ms.append((time.monotonic() - t) * 1000)
    assert len(items) == 100

time.sleep(max(0, run_start + offset + window - time.time()))
def ms(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
# A fresh connection: the first one sat idle through the window, past the server's idle timeout.
conn = http.client.HTTPConnection("127.0.0.1", port)
late, cursor = [], None
while True:
    path = "/messages?box=sent&status=delivered&limit=100" + (f"&cursor={cursor}" if cursor else "")
    page = call(conn, "GET", path, token=token)
    for item in page["items"]:
        late.append(ms(item["delivered_at"]) - ms(item["deliver_at"]))
    cursor = page.get("next_cursor")
    if not cursor:
        break
late.sort()
def pct(values, p):
    return round(values[min(len(values) - 1, int(len(values) * p))], 1) if values else None
next_ms.sort()
print(json.dumps({
    "deployment": deployment, "schedules": total,
    "create_seconds": round(created_s, 1), "create_per_second": round(total / created_s),
    "rss_kib_before": rss_before, "rss_kib_after": rss_after,
    "next_ms_p50": pct(next_ms, 0.5), "next_ms_p99": pct(next_ms, 0.99),
    "window_seconds": window, "spread_seconds": spread, "occurrences_delivered": len(late),
    "lateness_ms_p50": pct(late, 0.5), "lateness_ms_p99": pct(late, 0.99),
    "lateness_ms_max": round(late[-1], 1) if late else None,
}))
PY
    kill "$server"; wait "$server" 2>/dev/null || true
    server=
done
