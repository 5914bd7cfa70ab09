#!/usr/bin/env bash
# Times the queue report (`dms queue status`, and every /metrics scrape) on a million messages,
# on SQLite and PostgreSQL: the two queries of Store::queue_counts, taken from host/src/store/sql.rs,
# run three times each through sqlite3 and psql. Two of every seven messages are pending.
# Usage: tools/bench-queue-report.sh   (needs a built dms, sqlite3, psql and PostgreSQL on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
DMS=${DMS:-target/release/dms}
[ -x "$DMS" ] || DMS=target/debug/dms
ROWS=${ROWS:-1000000}
KEYS="k1:dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU="
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS dms_bench_queue" >/dev/null' EXIT

queries() { # the two queries with fixed times, three times over
    python3 - "$@" <<'PY'
import re
s = open("host/src/store/sql.rs").read()
out = []
for name in ["QUEUE_COUNTS", "QUEUE_PENDING"]:
    key = 'pub(super) const %s: &str = "' % name
    i = s.index(key) + len(key)
    q = s[i:s.index('";', i)].replace("\\\n", "")
    q = re.sub(r"\s+", " ", q)
    for n, v in (("$1", "1700500000000"), ("$2", "1700500060000"), ("$3", "1700503600000")):
        q = q.replace(n, v)
    out.append(q + ";")
print("\n".join(out * 3))
PY
}

fill() { # $1: the series source for this dialect
    cat <<SQL
INSERT INTO tenants VALUES ('ten_1','t1',0),('ten_2','t2',0);
INSERT INTO users VALUES ('usr_1','ten_1','u1',NULL,'member','x',0,NULL),('usr_2','ten_2','u2',NULL,'member','x',0,NULL);
$1
INSERT INTO messages (id, tenant_id, sender_id, recipient_id, channel, content_type, metadata, key_id, nonce, content, requested_kind, status, deliver_at_ms, created_at_ms, updated_at_ms)
SELECT 'msg_' || n, CASE WHEN n % 2 = 0 THEN 'ten_1' ELSE 'ten_2' END, CASE WHEN n % 2 = 0 THEN 'usr_1' ELSE 'usr_2' END,
 CASE WHEN n % 2 = 0 THEN 'usr_1' ELSE 'usr_2' END, 'inbox', 'text/plain', '{}', 'k1', $2, $2, 'none',
 CASE n % 7 WHEN 0 THEN 'scheduled' WHEN 3 THEN 'retrying' WHEN 1 THEN 'delivered' WHEN 2 THEN 'read' WHEN 4 THEN 'dead' WHEN 5 THEN 'cancelled' ELSE 'delivered' END,
 1700000000000 + n * 1000, 0, 0 FROM $3;
ANALYZE;
SQL
}

echo "== SQLite, $ROWS messages"
DATA_DIR="$work" DMS_ENCRYPTION_KEYS="$KEYS" "$DMS" migrate >/dev/null
fill "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $ROWS)" "x'00'" "g" \
    | sqlite3 "$work/dms.sqlite3"
(echo .timer on; queries) | sqlite3 "$work/dms.sqlite3" | grep -i 'run time'

echo "== PostgreSQL, $ROWS messages"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS dms_bench_queue" -c "CREATE DATABASE dms_bench_queue" >/dev/null
DATABASE_URL=postgres://postgres@127.0.0.1/dms_bench_queue JWT_SECRET=$(printf 'x%.0s' $(seq 40)) \
    DMS_ENCRYPTION_KEYS="$KEYS" "$DMS" migrate >/dev/null
fill "" "'\\x00'" "generate_series(1, $ROWS) n" | psql -h 127.0.0.1 -U postgres -d dms_bench_queue -q
(echo '\timing on'; queries) | psql -h 127.0.0.1 -U postgres -d dms_bench_queue | grep Time
