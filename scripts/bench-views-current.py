# The reporting views on current ClickHouse (chdb-core, embedded; no server):
# each view filtered to one organization, p50 and max of 5 reads, over a
# synthetic analytics store of N events (default 5,000,000; N/6 tasks, 100
# organizations, 500 projects) generated with numbers(). ClickHouse 18.16
# (what scripts/services.sh runs) does not push a filter into a view, so the
# same views there compute every organization: see `cargo bench -p tasklog
# --bench read_side` (BENCH_ONLY=analytics,views) for those figures, on a log
# `tasklog generate` wrote. This script measures what current releases (the
# compose deployment) do with the same SQL.
#
#   ~/.cache/tasklog/chdb-venv/bin/python scripts/bench-views-current.py 10000000
#
# (the venv is the one `scripts/dev.sh test` creates.) Prints figures; asserts nothing.
import glob, os, sys, time, tempfile
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from chdb import session
s = session.Session(tempfile.mkdtemp())
def run(sql, fmt="CSV"):
    return s.query(sql, fmt)
for f in sorted(glob.glob(os.path.join(ROOT, "migrations/clickhouse/*.sql"))):
    text = open(f).read()
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("--"))
    for st in text.split(";"):
        st = st.strip()
        if not st: continue
        st = st.replace("${db}", "tasklog").replace("${reporting}", "reporting").replace("${on_cluster}", "").replace("${replicated}", "")
        run(st)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000000
org = "toUUID(concat('00000000-0000-0000-0000-', leftPad(toString(number % 100), 12, '0')))"
proj = "toUUID(concat('00000000-0000-0000-0001-', leftPad(toString(number % 500), 12, '0')))"
task = "toUUID(concat('00000000-0000-0000-0002-', leftPad(toString(intDiv(number, 6)), 12, '0')))"
t0 = time.time()
run(f"""INSERT INTO tasklog.events (commit_id, event_seq, event_id, org_id, project_id, task_id, stream_id, stream_version, event_type, schema_version, actor_id, occurred_at, recorded_at, mentions)
SELECT number, number, generateUUIDv4(), {org}, {proj}, {task}, 'task-x', 1, if(number % 5 = 0, 'CommentAdded', 'TaskStatusChanged'), 1, NULL,
 toDateTime('2026-01-01 00:00:00', 'UTC') + number * 3, toDateTime('2026-01-01 00:00:00', 'UTC') + number * 3, [] FROM numbers({N})""")
run(f"""INSERT INTO tasklog.status_changes SELECT {org}, {proj}, {task}, number, number, toDateTime('2026-01-01 00:00:00','UTC') + number*3,
 if(number % 6 = 0, '', 'todo'), if(number % 6 = 0, 'todo', 'in_progress'), if(number % 6 = 0, '', 'unstarted'), if(number % 6 = 0, 'unstarted', 'started'),
 toDateTime('2026-01-01 00:00:00','UTC') + number*3, 60, 0, NULL, NULL FROM numbers({N})""")
run(f"""INSERT INTO tasklog.tasks SELECT {org}, {proj}, {task}, number, 'K-1', 't', 'high', NULL, 'in_progress', 'started', toDateTime('2026-01-01 00:00:00','UTC') + number*18,
 NULL, toDateTime('2026-01-01 00:00:00','UTC') + number*18, NULL, NULL, NULL, if(number % 3 = 0, toDateTime('2026-02-01 00:00:00','UTC') + number, NULL), NULL, NULL, 0, 0, NULL, 1
 FROM (SELECT number * 6 AS number FROM numbers({N // 6}))""")
print(f"loaded {N} events in {time.time()-t0:.1f}s")
one_org = "toUUID('00000000-0000-0000-0000-000000000007')"
for view in ["event_log", "comment_activity_daily", "cumulative_flow_daily", "task_cycle", "time_in_status", "workload_current", "created_vs_resolved_daily", "throughput_weekly", "cycle_time_weekly", "notifications_daily", "flow_efficiency"]:
    times = []
    for _ in range(5):
        t = time.time()
        r = run(f"SELECT * FROM reporting.{view} WHERE org_id = {one_org} FORMAT Null", "CSV")
        times.append((time.time() - t) * 1000)
    times.sort()
    print(f"current ClickHouse (chdb {run('SELECT version()').bytes().decode().strip()}) {view:<26} one org p50={times[2]:8.1f} ms max={times[-1]:8.1f} ms")
