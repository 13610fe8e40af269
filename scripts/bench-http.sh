#!/usr/bin/env bash
# The HTTP write path, measured from outside as a frontend meets it: `tasklog
# serve` (release build; command, query and audit APIs, every projector, the
# sealer) on a database of its own, driven by wrk (a separate process) with
# `POST /v1/orgs/{org}/tasks/{task}/comments` over 1,000 tasks, at 1, 8 and 32
# connections. Prints req/s, p50 and p99, and the CPU the server and
# PostgreSQL used per second of the run. Prints figures; asserts nothing.
#
# The yardstick, to run in the same sitting: ../shared/bench/http-ceiling/run.sh
# (axum + jsonwebtoken + sqlx, one INSERT). BENCH_CEILING=1 runs it first.
#
#   SECS (5), CONNS ("1 8 32"), TASKS (1000: fewer tasks, more comments on each),
#   DESCRIPTION (0: characters of prose in each task's description),
#   ROUNDS (1: each connection count once per round,
#   rounds interleaved), PG (postgres://postgres@127.0.0.1:5432),
#   TASKLOG_CLICKHOUSE_URL (http://127.0.0.1:8123); CARGO_TARGET_DIR as cargo's;
#   TASKLOG_BIN: a tasklog binary to measure instead of building one (to
#   compare two builds in one sitting).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS=${SECS:-5}; CONNS=${CONNS:-"1 8 32"}; ROUNDS=${ROUNDS:-1}; TASKS=${TASKS:-1000}
DESCRIPTION=${DESCRIPTION:-0}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=tasklog_bench_http
PORT=18480

die() { echo "bench-http: ERROR: $*" >&2; exit 1; }
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
command -v psql >/dev/null || die "psql is missing"

if [[ "${BENCH_CEILING:-0}" == 1 ]]; then
    SECS=$SECS CONNS="$CONNS" "$ROOT/../shared/bench/http-ceiling/run.sh"
fi

if [[ -n "${TASKLOG_BIN:-}" ]]; then
    bin=$TASKLOG_BIN
else
    (cd "$ROOT" && cargo build -q --release -p tasklog --bin tasklog)
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/tasklog"
fi

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export TASKLOG_DATABASE_URL="${PG/postgres:\/\/postgres@/postgres://tasklog_app@}/$DB"
export TASKLOG_ADMIN_DATABASE_URL="$PG/$DB"
export TASKLOG_CLICKHOUSE_DATABASE=tasklog_bench_http
export TASKLOG_CLICKHOUSE_REPORTING_DATABASE=reporting_bench_http
export TASKLOG_COMMAND_ADDR=127.0.0.1:$PORT TASKLOG_QUERY_ADDR=127.0.0.1:$((PORT + 1))
export TASKLOG_AUDIT_ADDR=127.0.0.1:$((PORT + 2))
export TASKLOG_SEAL_SIGNING_KEY=$(python3 -c 'import os; print(os.urandom(32).hex())')
export RUST_LOG=${RUST_LOG:-warn}
"$bin" migrate >/dev/null
"$bin" serve & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
# Killed (timeout, Ctrl-C): exit, so that the EXIT trap stops the server.
trap 'exit 143' INT TERM
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || die "tasklog serve did not come up"

# One organization, one project, TASKS tasks; wrk comments on them in turn.
lua=$(mktemp --suffix .lua)
token=$("$bin" token --handle bench --ttl 3600 2>/dev/null)
python3 - "$PORT" "$lua" "$token" "$TASKS" "$DESCRIPTION" <<'PY'
import json, sys, urllib.request
port, lua, token, count, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
prose = ("When a user signs in from the dashboard the redirect drops the return path "
         "and lands on the home page instead of the page they came from. ")
description = (prose * (length // len(prose) + 1))[:length]
def post(path, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                               {"content-type": "application/json", "authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(r))["id"]
org = post("/v1/orgs", {"name": "Bench"})
project = post(f"/v1/orgs/{org}/projects", {"name": "Bench", "key": "BEN"})
tasks = [post(f"/v1/orgs/{org}/projects/{project}/tasks", {"title": f"task {i}", "description": description})
         for i in range(count)]
with open(lua, "w") as f:
    f.write(f'''wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer {token}"
local tasks = {{{",".join(f'"{t}"' for t in tasks)}}}
local body = '{{"body":"A comment of about the usual length, with a few words in it."}}'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v1/orgs/{org}/tasks/" .. tasks[counter % #tasks + 1] .. "/comments", nil, body)
end
done = function(s, l, r)
  io.write(string.format("non2xx=%d p50_ms=%.2f p99_ms=%.2f\\n", s.errors.status, l:percentile(50)/1000, l:percentile(99)/1000))
end
''')
PY

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
hz=$(getconf CLK_TCK)
# Warm up: pools, prepared statements, caches.
wrk -t2 -c8 -d2s -s "$lua" "http://127.0.0.1:$PORT" >/dev/null
for round in $(seq "$ROUNDS"); do
    for c in $CONNS; do
        t=$(( c < 2 ? 1 : 2 ))
        s0=$(ticks $server); p0=$(pg_ticks)
        r=$(wrk -t$t -c$c -d${SECS}s -s "$lua" "http://127.0.0.1:$PORT" | awk '/Requests\/sec/{rps=$2} /non2xx/{x=$0} END{print rps, x}')
        s1=$(ticks $server); p1=$(pg_ticks)
        cpu=$(python3 -c "print(f'server_cpu={($s1-$s0)/$hz/$SECS:.2f} postgres_cpu={($p1-$p0)/$hz/$SECS:.2f}')")
        echo "tasklog_comment round=$round connections=$c req/s=$r $cpu"
    done
done
rm -f "$lua"
