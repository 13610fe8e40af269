#!/usr/bin/env bash
# Schemathesis against the three OpenAPI documents a real `tasklog serve` serves.
#
#   scripts/schemathesis.sh        (scripts/dev.sh test runs it last)
#
# Installs a pinned schemathesis into a venv under .data/, starts `tasklog
# serve` on free ports against a fresh database, populates an organization
# through the command API (members, projects, tasks, tags, comments, a
# notification), then runs schemathesis with every check, valid and invalid
# data, the owner's token and the populated ids in the paths
# (scripts/schemathesis.toml): first the query API (read only), then the
# command API, then the auditor API. Deterministic and bounded: the same examples, so the same
# failures, on every run, a few minutes in all. Exits non-zero on any failure
# that SCHEMATHESIS_KNOWN_FAILURES or SCHEMATHESIS_ACCEPTED below do not list.
#
# Environment knobs (all optional):
#   SCHEMATHESIS_SEED          explore: seeded random examples instead of the
#                              deterministic ones                   (default unset)
#   SCHEMATHESIS_MAX_EXAMPLES  examples per operation               (default 25)
#   SCHEMATHESIS_TIME_LIMIT    seconds per document; reaching it fails the
#                              run, after listing what it found   (default 600)
#   TASKLOG_BIN                the tasklog binary                   (default: cargo build -p tasklog)
#   TASKLOG_ADMIN_DATABASE_URL / TASKLOG_DATABASE_URL, as scripts/dev.sh sets them
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# A failure reads "<operation>: <check> [<status>] <problem detail>"; the
# lists below hold patterns of such lines, `*` matching anything. The stateful
# phase follows ids the server makes up, so which known failures it meets
# varies from run to run: the patterns name causes, not single examples.
#
# Known bugs (issue #10) found when this script was written: reported, but not
# failing the run. Remove each once its fix is merged (a pattern no failure
# of the run matches is reported as UNSEEN).
SCHEMATHESIS_KNOWN_FAILURES=(
    # None: the six causes found when this script was written (issue #10:
    # a NUL byte answering 500, If-Match and X-Consistency-Token typed as free
    # strings, lengths missing from the documents, X-Correlation-Id garbage
    # silently replaced) are fixed, and any recurrence fails the run.
)
# Not bugs: what schemathesis cannot know. Kept.
SCHEMATHESIS_ACCEPTED=(
    # A made-up consistency token past what the read models have applied is
    # waited for, then 503 not_yet_consistent: the query API cannot tell a
    # token from a write it has not seen yet (behind a replica, say) from one
    # no command returned, and waiting is right for the first.
    '*: ST101 Server error [503] the read models have not caught up with consistency token *'
    # It sends one generated Idempotency-Key with different requests: 422 is right.
    '*: ST202 Schema-valid request rejected [422] this Idempotency-Key was used for a different request'
    # It sends an empty X-Consistency-Token (`curl -H 'X-Consistency-Token;'`
    # in its report) as valid data, though the documented pattern allows no
    # empty value; the server refuses it, as it does an empty If-Match or
    # X-Correlation-Id, which schemathesis itself counts as invalid.
    'GET *: ST202 Schema-valid request rejected [400] X-Consistency-Token must be the token a command returned*'
    # A task's statuses are its project's workflow, which no schema can list.
    'POST /v1/orgs/{org}/tasks/{task}/status: ST202 Schema-valid request rejected [422] the request is not valid'
    # The stateful phase archives a project, then adds tasks to it: a business
    # rule it cannot know.
    'POST *: ST202 Schema-valid request rejected [422] project is archived'
    # A cursor is an opaque string the server returned; made-up ones are 422
    # (in the stateful phase too, which reports them as "Stateful tests").
    '*: ST202 Schema-valid request rejected [422] query parameter `cursor`: not a cursor this endpoint returned*'
    # A report's days: `from` not after `to`, a range of at most 366 days
    # (three years weekly), days ClickHouse's Date holds (1970 to 2099):
    # rules between parameters, or past what `format: date` says; each is
    # stated in the parameter's description.
    'GET /v1/orgs/{org}/reports/*: ST202 Schema-valid request rejected [422] query parameter*'
    # The auditor API's rules between parameters, each stated in the
    # parameters' descriptions: a range's `to` not before its `from` (times,
    # tree sizes, points of a diff); an inclusion proof's event named by
    # `event` or by `position`, not both.
    'GET /v1/orgs/{org}/audit/events: ST202 Schema-valid request rejected [422] query parameter `to`: must not be before `from`'
    'GET /v1/orgs/{org}/audit/seals/inclusion: ST202 Schema-valid request rejected [422] query parameter `position`: give `event` or `position`, not both'
    'GET /v1/orgs/{org}/audit/seals/consistency: ST202 Schema-valid request rejected [422] query parameter `to`: must not be smaller than `from`'
    'GET /v1/orgs/{org}/audit/streams/{stream}/diff: ST202 Schema-valid request rejected [422] query parameter `to`: is before `from` in this stream*s history'
)

ST_VERSION=4.32.5
# Derandomized unless a seed is asked for (schemathesis ignores --seed then).
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    generation=(--seed "$SCHEMATHESIS_SEED")
else
    generation=(--generation-deterministic)
fi
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
TIME_LIMIT="${SCHEMATHESIS_TIME_LIMIT:-600}"
VENV="$ROOT/.data/schemathesis-venv"
OUT="$ROOT/.data/schemathesis"

die() { echo "schemathesis.sh: ERROR: $*" >&2; exit 1; }
step() { echo "schemathesis.sh: $*" >&2; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
    step "installing schemathesis $ST_VERSION into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION" || die "pip install schemathesis failed"
fi
export SCHEMATHESIS_TELEMETRY=false

if [[ -z "${TASKLOG_BIN:-}" ]]; then
    step "cargo build -p tasklog"
    cargo build --quiet -p tasklog || die "cargo build -p tasklog failed"
    TASKLOG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tasklog"
fi
[[ -x "$TASKLOG_BIN" ]] || die "no tasklog binary at $TASKLOG_BIN"

pg_port="${TASKLOG_PG_PORT:-5432}"
admin_url="${TASKLOG_ADMIN_DATABASE_URL:-postgres://postgres@127.0.0.1:${pg_port}/tasklog}"
app_url="${TASKLOG_DATABASE_URL:-postgres://tasklog_app@127.0.0.1:${pg_port}/tasklog}"
db="tasklog_schemathesis_$(date +%s)_$$"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
command_port="$(free_port)"
query_port="$(free_port)"
audit_port="$(free_port)"
command_url="http://127.0.0.1:$command_port"
query_url="http://127.0.0.1:$query_port"
audit_url="http://127.0.0.1:$audit_port"

rm -rf "$OUT"
mkdir -p "$OUT"
serve_pid=""
ch_url=""
cleanup() {
    if [[ -n "$serve_pid" ]]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    for ch_db in "$db" "${db}_reporting"; do
        curl -fsS "$ch_url" --data-binary "DROP DATABASE IF EXISTS $ch_db" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

step "fresh database $db; tasklog migrate; tasklog serve on :$command_port (commands), :$query_port (queries) and :$audit_port (auditors)"
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
export TASKLOG_ADMIN_DATABASE_URL="${admin_url%/*}/$db"
export TASKLOG_DATABASE_URL="${app_url%/*}/$db"
export TASKLOG_COMMAND_ADDR="127.0.0.1:$command_port"
export TASKLOG_QUERY_ADDR="127.0.0.1:$query_port"
export TASKLOG_AUDIT_ADDR="127.0.0.1:$audit_port"
# The analytics store gets ClickHouse databases of its own, dropped at the end.
ch_url="${TASKLOG_CLICKHOUSE_URL:-http://127.0.0.1:${TASKLOG_CH_HTTP_PORT:-8123}}"
export TASKLOG_CLICKHOUSE_DATABASE="$db" TASKLOG_CLICKHOUSE_REPORTING_DATABASE="${db}_reporting"
"$TASKLOG_BIN" migrate >/dev/null || die "tasklog migrate failed"
RUST_LOG="${RUST_LOG:-warn}" "$TASKLOG_BIN" serve >"$OUT/serve.log" 2>&1 &
serve_pid=$!
for url in "$command_url" "$query_url" "$audit_url"; do
    for _ in $(seq 600); do
        curl -fsS "$url/readyz" >/dev/null 2>&1 && break
        kill -0 "$serve_pid" 2>/dev/null || die "tasklog serve exited; see $OUT/serve.log"
        sleep 0.2
    done
    curl -fsS "$url/readyz" >/dev/null || die "$url/readyz never answered 200"
done

step "populating an organization through the command API"
ids="$("$VENV/bin/python" "$ROOT/scripts/schemathesis_populate.py" "$command_url" "$query_url" "$TASKLOG_BIN")" ||
    die "populating failed"
set -a
eval "$ids"
set +a

# One document: every check, valid and invalid data, every phase;
# deterministic, bounded by examples and time. Paths and the token come from
# scripts/schemathesis.toml.
run_schemathesis() {
    local name="$1" url="$2"
    step "schemathesis run $url/openapi.json (${generation[*]}, $MAX_EXAMPLES examples, at most ${TIME_LIMIT}s)"
    local status=0
    timeout --signal=INT --kill-after=30 "$TIME_LIMIT" \
        "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
        run "$url/openapi.json" \
        --url "$url" \
        --checks all \
        --mode all \
        --continue-on-failure \
        "${generation[@]}" \
        --max-examples "$MAX_EXAMPLES" \
        --suppress-health-check all \
        --request-timeout 30 \
        --no-color \
        --report junit --report-junit-path "$OUT/$name.xml" \
        >"$OUT/$name.txt" 2>&1 || status=$?
    # 124 (137 once SIGKILLed too): the time limit stopped it. The run is
    # incomplete, so it fails, after the findings so far are listed below.
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        step "TIME LIMIT: schemathesis against $url was stopped after ${TIME_LIMIT}s (exit $status)"
        timed_out+=("$name ($url, exit $status)")
        if [[ ! -s "$OUT/$name.xml" ]]; then
            tail -n 40 "$OUT/$name.txt" >&2
            die "schemathesis hit its time limit of ${TIME_LIMIT}s against $url before writing a report; see $OUT/$name.txt"
        fi
    elif [[ $status -ne 0 && ! -s "$OUT/$name.xml" ]]; then
        tail -n 40 "$OUT/$name.txt" >&2
        die "schemathesis did not run against $url (exit $status); see $OUT/$name.txt"
    fi
}
timed_out=()
run_schemathesis query "$query_url"
run_schemathesis command "$command_url"
run_schemathesis audit "$audit_url"

# Every distinct failure: operation, check, status and problem detail; then
# the verdict.
printf '%s\n' "${SCHEMATHESIS_KNOWN_FAILURES[@]}" >"$OUT/known.txt"
printf '%s\n' "${SCHEMATHESIS_ACCEPTED[@]}" >"$OUT/accepted.txt"
set +e
"$VENV/bin/python" - "$OUT" <<'EOF'
import json, re, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
known = [l.strip() for l in open(f"{out}/known.txt") if l.strip()]
accepted = [l.strip() for l in open(f"{out}/accepted.txt") if l.strip()]
found = {}
for name in ("query", "command", "audit"):
    for case in ET.parse(f"{out}/{name}.xml").iter("testcase"):
        for bad in case:
            if bad.tag not in ("failure", "error"):
                continue
            text = bad.text or bad.get("message") or bad.tag
            # One block per failing example: its checks ("- ST101 Server
            # error"), then the response ("[500] ...") and its body.
            for example in re.split(r"^\d+\. Test Case ID: \S+$", text, flags=re.M)[1:] or [text]:
                checks = re.findall(r"^- (.+?)\s*$", example, re.M) or [example.strip().splitlines()[0]]
                status = re.search(r"^\[(\d+)\]", example, re.M)
                body = re.search(r"^\s*`(\{.*\})`\s*$", example, re.M)
                try:
                    detail = json.loads(body.group(1)).get("detail", "") if body else ""
                except ValueError:
                    detail = ""
                # Invalid data accepted: which part was invalid says more.
                component = re.search(r"^\s*Invalid component: (.+?)\s*$", example, re.M)
                detail = component.group(1) if component else detail
                for check in checks:
                    key = f"{case.get('name')}: {check} [{status.group(1) if status else '-'}] {detail}"
                    found.setdefault(key.rstrip(), example.strip())
def matches(failure, patterns):
    # `*` is the only wildcard (a failure's "[500]" is literal).
    return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), failure, re.S) for p in patterns)
new = sorted(f for f in found if not matches(f, known + accepted))
for f in sorted(found):
    label = "FAILED " if f in new else "KNOWN  " if matches(f, known) else "OK     "
    print(label + f)
for k in known:
    if not any(matches(f, [k]) for f in found):
        print("UNSEEN " + k + "   (not met in this run: fixed? remove it once its fix is merged)")
n_known = sum(1 for f in found if f not in new and matches(f, known))
n_accepted = len(found) - len(new) - n_known
print(f"schemathesis: {len(found)} distinct findings: {len(new)} unexpected, {n_known} known bugs, "
      f"{n_accepted} accepted (what it cannot know); examples in {out}/*.txt")
sys.exit(1 if new else 0)
EOF
verdict=$?
set -e
if [[ ${#timed_out[@]} -gt 0 ]]; then
    die "schemathesis hit its time limit of ${TIME_LIMIT}s, so its run is incomplete (failing): ${timed_out[*]}. Raise SCHEMATHESIS_TIME_LIMIT or lower SCHEMATHESIS_MAX_EXAMPLES."
fi
exit "$verdict"
