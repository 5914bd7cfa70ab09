#!/usr/bin/env bash
# The fan-out benchmark of docs/BENCHMARKS.md ("Fan-out to a group") on one deployment, against
# a fresh server and an empty database:
#   tools/bench-fan-out.sh sqlite      # the embedded default: SQLite + in-process schedule
#   tools/bench-fan-out.sh postgres    # PostgreSQL (database dms_bench_fan_out, dropped and created
#                                      # anew) + Redis database 12 (REDIS_DB; flushed with FLUSHDB)
# Needs `cargo build --release -p dms` first (BIN=target/debug/dms for a smoke run). Makes
# MEMBERS (10000) users straight in the database (argon2 for each through the API would take
# minutes; they never log in), puts them in one group (POST /groups/{id}/members, 5,000 ids a
# request), then times one POST /messages {group_id} (accept: the 201) and polls
# GET /fan-outs/{id} until every message is delivered. Prints one JSON line on stdout:
# {"label": "sqlite/fan-out", "members": N, "accept_ms": …, "all_delivered_ms": …} (the second
# from the submit's start). For a smoke run: MEMBERS=200 BIN=target/debug/dms.
set -euo pipefail
cd "$(dirname "$0")/.."

deployment=${1:?usage: tools/bench-fan-out.sh sqlite|postgres}
port=${PORT:-3210}
bin=${BIN:-target/release/dms}
members=${MEMBERS:-10000}
data=$(mktemp -d /tmp/dms-bench-fan-out.XXXXXX)
REDIS_DB=${REDIS_DB:-12}

export DMS_ADMIN_PASSWORD=bench-password RUST_LOG=${RUST_LOG:-warn} PORT=$port DMS_DATA_DIR=$data \
    DMS_RATE_LIMIT_API_PER_SECOND=1000000 DMS_RATE_LIMIT_API_BURST=1000000 \
    DMS_GROUP_MAX_MEMBERS=$((members > 10000 ? members : 10000))
case $deployment in
    sqlite) database_url="sqlite://$data/dms.sqlite3" ;;
    postgres)
        export DATABASE_URL=postgres://postgres@127.0.0.1:5432/dms_bench_fan_out?sslmode=disable \
            REDIS_URL=redis://127.0.0.1:6379/$REDIS_DB \
            JWT_SECRET=bench-secret-bench-secret-bench-secret \
            DMS_ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
        database_url=$DATABASE_URL
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench_fan_out WITH (FORCE)' \
            -c 'CREATE DATABASE dms_bench_fan_out'
        redis-cli -n $REDIS_DB FLUSHDB >/dev/null
        ;;
    *) echo "unknown deployment $deployment" >&2; exit 2 ;;
esac

server=
cleanup() {
    # With RUST_LOG=warn,dms::use_cases::messages::fan_out=debug: where the accept's time went.
    grep -h "Fan-out accepted" "$data/server.log" >&2 || true
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "${data:?}"
    if [ "$deployment" = postgres ]; then
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS dms_bench_fan_out WITH (FORCE)' || true
        redis-cli -n $REDIS_DB FLUSHDB >/dev/null || true
    fi
}
trap cleanup EXIT

"$bin" serve >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
    "$bin" healthcheck "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done
"$bin" healthcheck "http://127.0.0.1:$port/health" >/dev/null \
    || { echo "the server did not start; see $data/server.log" >&2; cat "$data/server.log" >&2; exit 1; }

python3 - "$deployment" "$database_url" "$port" "$members" <<'PY'
import json, subprocess, sys, time, urllib.request, uuid

deployment, database_url, port, members = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
api = f"http://127.0.0.1:{port}"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

def call(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as response:
        return response.status, json.loads(response.read() or b"null")

def user_id():
    # A UUIDv7-like 128-bit value (time first) in the ids' Crockford base32 form.
    value = (int(time.time() * 1000) << 80) | (uuid.uuid4().int & ((1 << 80) - 1))
    text = "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))
    return "usr_" + text

_, login = call("POST", "/auth/login", {"username": "admin", "password": "bench-password"})
token, tenant = login["token"], login["user"]["tenant_id"]
ids = [user_id() for _ in range(members)]
rows = [(id_, tenant, f"bulk-{n}") for n, id_ in enumerate(ids)]
insert = ("INSERT INTO users (id, tenant_id, username, display_name, role, password_hash, "
          "created_at_ms, username_key, username_skeleton) VALUES ")
if deployment == "sqlite":
    import sqlite3
    db = sqlite3.connect(database_url.removeprefix("sqlite://"), timeout=30)
    db.executemany(insert + "(?, ?, ?, NULL, 'member', 'x', 0, ?, ?)",
                   [(i, t, n, n, n) for i, t, n in rows])
    db.commit()
    db.close()
else:
    sql = insert + ", ".join(f"('{i}', '{t}', '{n}', NULL, 'member', 'x', 0, '{n}', '{n}')"
                             for i, t, n in rows)
    # On stdin: 10,000 rows are more than one argument may hold.
    subprocess.run(["psql", "-q", database_url.split("?")[0]], input=sql + ";", text=True,
                   check=True)

_, group = call("POST", "/groups", {"name": "everyone"}, token)
for start in range(0, members, 5000):
    call("POST", f"/groups/{group['id']}/members", {"user_ids": ids[start:start + 5000]}, token)

started = time.monotonic()
status, answer = call("POST", "/messages", {"group_id": group["id"], "content": "all hands"}, token)
accepted = time.monotonic()
assert status == 201 and answer["count"] == members, answer
while True:
    _, summary = call("GET", f"/fan-outs/{answer['fan_out_id']}", token=token)
    if summary["statuses"].get("delivered", 0) == members:
        break
    if time.monotonic() - started > 600:
        raise SystemExit(f"not all delivered after 600 s: {summary}")
    time.sleep(0.05)
done = time.monotonic()
print(json.dumps({
    "label": f"{deployment}/fan-out",
    "members": members,
    "accept_ms": round((accepted - started) * 1000, 1),
    "all_delivered_ms": round((done - started) * 1000, 1),
}))
PY
