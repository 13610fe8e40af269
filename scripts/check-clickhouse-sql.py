#!/usr/bin/env python3
"""Check the ClickHouse migrations on current ClickHouse (chdb, embedded).

    python3 scripts/check-clickhouse-sql.py            # needs `import chdb` (pip install chdb-core)
    python3 scripts/check-clickhouse-sql.py --client --db tl_x --reporting rp_x
                                                       # the same checks through clickhouse-client
                                                       # against a running server (e.g. 18.16), in
                                                       # scratch databases it creates and drops

What it does, failing (exit 1) with the statement and the error on the first
problem:

  1. runs every migrations/clickhouse/*.sql in name order, placeholders
     filled with the defaults (${db}=tasklog, ${reporting}=reporting,
     ${on_cluster} and ${replicated} empty), statement by statement in one
     session, then every file a second time (IF NOT EXISTS must hold);
  2. finds every view the migrations create and checks it exists;
  3. inserts a small hand-made story (8 tasks over three weeks: reopened,
     reassigned, cancelled, archived, commented with mentions, a deleted
     comment, notifications read and delivered), every task version as
     the projector writes it, then queries every view and checks figures
     computed by hand (docs/reporting.md);
     The same story is also written into a second organization: every
     check filters on the first, so a filter pushed into a view wrongly
     (enable_optimize_predicate_expression) would show;
  4. inserts every row a second time and checks that no view's output
     changes (duplicates are never counted).
"""

import argparse
import datetime as dt
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIGRATIONS = os.path.join(ROOT, "migrations", "clickhouse")


def fail(msg):
    print("check-clickhouse-sql: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------- backends
class ChdbBackend:
    def __init__(self):
        try:
            from chdb import session  # noqa: F401
        except ImportError as e:
            fail("cannot import chdb (%s): pip install chdb-core" % e)
        from chdb import session

        self.dir = tempfile.mkdtemp(prefix="tasklog-chdb-")
        self.s = session.Session(self.dir)
        self.name = "chdb " + self.query("SELECT version()")[0][0]

    def query(self, sql):
        r = self.s.query(sql, "TSV")
        return parse_tsv(r.bytes().decode() if hasattr(r, "bytes") else str(r))

    def close(self):
        try:
            self.s.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class ClientBackend:
    def __init__(self, args):
        self.args = args
        self.base = ["clickhouse-client", "--host", args.host, "--port", str(args.port)]
        self.name = "clickhouse-client, server " + self.query("SELECT version()")[0][0]

    def query(self, sql):
        p = subprocess.run(self.base + ["--format", "TSV", "--query", sql],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip())
        return parse_tsv(p.stdout)

    def close(self):
        pass


def parse_tsv(text):
    return [line.split("\t") for line in text.splitlines() if line != ""]


# ------------------------------------------------------------- migrations
def statements(path, db, reporting):
    text = open(path, encoding="utf-8").read()
    text = (text.replace("${db}", db).replace("${reporting}", reporting)
            .replace("${on_cluster}", "").replace("${replicated}", ""))
    left = re.findall(r"\$\{[a-z_]+\}", text)
    if left:
        fail("%s: unknown placeholders %s" % (path, sorted(set(left))))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    parts = re.split(r";[ \t]*$", body, flags=re.M)
    return [p.strip() for p in parts if p.strip()]


def run_migrations(be, db, reporting):
    files = sorted(glob.glob(os.path.join(MIGRATIONS, "*.sql")))
    if not files:
        fail("no migrations in " + MIGRATIONS)
    views = []
    for rnd in (1, 2):
        for f in files:
            stmts = statements(f, db, reporting)
            for i, st in enumerate(stmts, 1):
                try:
                    be.query(st)
                except Exception as e:  # noqa: BLE001
                    fail("%s statement %d (run %d):\n%s\n-- error: %s"
                         % (os.path.relpath(f, ROOT), i, rnd, st[:400], e))
                # The reporting views (helper views in the tables' database are
                # checked through them).
                m = re.match(r"CREATE\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)", st, re.I)
                if m and rnd == 1 and m.group(1) == reporting and m.group(2) not in views:
                    views.append(m.group(2))
            if rnd == 1:
                print("ok: %s (%d statements)" % (os.path.relpath(f, ROOT), len(stmts)))
    print("ok: every file a second time (IF NOT EXISTS)")
    return views


# ------------------------------------------------------------ the story
B = dt.datetime(2024, 11, 4)  # a Monday


def at(day, hh=0, mm=0, ss=0):
    return (B + dt.timedelta(days=day, hours=hh, minutes=mm, seconds=ss)).strftime("%Y-%m-%d %H:%M:%S")


def day(d):
    return (B + dt.timedelta(days=d)).strftime("%Y-%m-%d")


def u(n):
    return "00000000-0000-0000-0000-%012x" % n


ORG = u(0xA)
OTHER_ORG = u(0xB)
P1, P2 = u(0x101), u(0x102)
U1, U2, U3 = u(0x11), u(0x12), u(0x13)
CATEGORY = {"Backlog": "backlog", "Todo": "unstarted", "In Progress": "started",
            "Review": "started", "Done": "completed", "Cancelled": "cancelled"}

EVENT_COLS = ["commit_id", "event_seq", "event_id", "org_id", "project_id", "task_id", "stream_id",
              "stream_version", "event_type", "schema_version", "actor_id", "occurred_at",
              "recorded_at", "status_from", "status_to", "category_from", "category_to",
              "assignee_id", "previous_assignee_id", "comment_id", "author_id", "mentions",
              "tag_id", "member_id", "role", "title", "name", "priority", "due_date",
              "notification_id"]
TASK_COLS = ["org_id", "project_id", "task_id", "number", "task_key", "title", "priority",
             "due_date", "status", "category", "status_since", "assignee_id", "created_at",
             "created_by", "first_left_backlog_at", "first_started_at", "completed_at",
             "completed_by_assignee_id", "cancelled_at", "times_reopened", "archived",
             "archived_at", "version"]
SC_COLS = ["org_id", "project_id", "task_id", "commit_id", "event_seq", "changed_at",
           "status_from", "status_to", "category_from", "category_to", "from_since",
           "seconds_in_from", "reopened", "assignee_id", "actor_id"]


def lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, list):
        return "[" + ",".join(lit(x) for x in v) + "]"
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


class Story:
    """A tiny projector: the rows the analytics projection would write."""

    def __init__(self):
        self.events, self.tasks, self.sc = [], [], []
        self.projects, self.members, self.tags, self.notifications = [], [], [], []
        self.commit = 0
        self.state = {}
        self.versions = {}

    def event(self, etype, ts, stream, project=None, task=None, actor=U1, **f):
        self.commit += 1
        self.versions[stream] = self.versions.get(stream, 0) + 1
        row = dict.fromkeys(EVENT_COLS)
        row.update(commit_id=self.commit, event_seq=0, event_id=u(0x10000 + self.commit),
                   org_id=ORG, project_id=project, task_id=task, stream_id=stream,
                   stream_version=self.versions[stream], event_type=etype, schema_version=1,
                   actor_id=actor, occurred_at=ts, recorded_at=ts, status_from="",
                   status_to="", category_from="", category_to="", mentions=[], role="",
                   title="", name="", priority="")
        row.update(f)
        self.events.append(row)
        return row

    def task_row(self, tid):
        t = self.state[tid]
        self.tasks.append({c: t[c] for c in TASK_COLS})

    def create(self, tid, project, number, key, ts, status, due=None):
        ev = self.event("TaskCreated", ts, "task-" + tid, project, tid, title="Task " + key,
                        status_to=status, category_to=CATEGORY[status], priority="medium",
                        due_date=due)
        cat = CATEGORY[status]
        self.state[tid] = dict(
            org_id=ORG, project_id=project, task_id=tid, number=number, task_key=key,
            title="Task " + key, priority="medium", due_date=due, status=status, category=cat,
            status_since=ts, assignee_id=None, created_at=ts, created_by=U1,
            first_left_backlog_at=None if cat == "backlog" else ts,
            first_started_at=ts if cat == "started" else None, completed_at=None,
            completed_by_assignee_id=None, cancelled_at=None, times_reopened=0, archived=0,
            archived_at=None, version=ev["stream_version"])
        self.sc.append(dict(org_id=ORG, project_id=project, task_id=tid, commit_id=self.commit,
                            event_seq=0, changed_at=ts, status_from="", status_to=status,
                            category_from="", category_to=cat, from_since=ts, seconds_in_from=0,
                            reopened=0, assignee_id=None, actor_id=U1))
        self.task_row(tid)

    def assign(self, tid, ts, who):
        t = self.state[tid]
        ev = self.event("TaskAssigned", ts, "task-" + tid, t["project_id"], tid,
                        assignee_id=who, previous_assignee_id=t["assignee_id"])
        t.update(assignee_id=who, version=ev["stream_version"])
        self.task_row(tid)

    def move(self, tid, ts, status):
        t = self.state[tid]
        cf, ct = t["category"], CATEGORY[status]
        ev = self.event("TaskStatusChanged", ts, "task-" + tid, t["project_id"], tid,
                        status_from=t["status"], status_to=status, category_from=cf,
                        category_to=ct)
        secs = int((dt.datetime.fromisoformat(ts) - dt.datetime.fromisoformat(t["status_since"])).total_seconds())
        reopened = int(cf in ("completed", "cancelled") and ct not in ("completed", "cancelled"))
        self.sc.append(dict(org_id=ORG, project_id=t["project_id"], task_id=tid,
                            commit_id=self.commit, event_seq=0, changed_at=ts,
                            status_from=t["status"], status_to=status, category_from=cf,
                            category_to=ct, from_since=t["status_since"], seconds_in_from=secs,
                            reopened=reopened, assignee_id=t["assignee_id"], actor_id=U1))
        t.update(status=status, category=ct, status_since=ts, version=ev["stream_version"])
        t["times_reopened"] += reopened
        if ct != "backlog" and t["first_left_backlog_at"] is None:
            t["first_left_backlog_at"] = ts
        if ct == "started" and t["first_started_at"] is None:
            t["first_started_at"] = ts
        t["completed_at"] = ts if ct == "completed" else None
        t["completed_by_assignee_id"] = t["assignee_id"] if ct == "completed" else None
        t["cancelled_at"] = ts if ct == "cancelled" else None
        self.task_row(tid)

    def archive(self, tid, ts):
        t = self.state[tid]
        ev = self.event("TaskArchived", ts, "task-" + tid, t["project_id"], tid)
        t.update(archived=1, archived_at=ts, version=ev["stream_version"])
        self.task_row(tid)

    def notify(self, nid, project, tid, user, kind, ts, comment=None):
        self.notifications.append(dict(org_id=ORG, notification_id=nid, project_id=project,
                                       task_id=tid, user_id=user, kind=kind, comment_id=comment,
                                       actor_id=U1, created_at=ts))

    def inserts(self, db):
        out = []

        # Small batches, as the projector writes them: a task's versions land
        # in different parts, so a view without FINAL would count them all
        # (current releases collapse duplicates within one inserted block).
        def ins(table, cols, rows):
            for i in range(0, len(rows), 4):
                vals = ",\n".join("(" + ",".join(lit(r[c]) for c in cols) + ")" for r in rows[i:i + 4])
                out.append("INSERT INTO %s.%s (%s) VALUES\n%s" % (db, table, ",".join(cols), vals))

        ins("events", EVENT_COLS, self.events)
        ins("status_changes", SC_COLS, self.sc)
        ins("tasks", TASK_COLS, self.tasks)
        ins("projects", ["org_id", "project_id", "name", "project_key", "archived", "created_at", "version"], self.projects)
        ins("members", ["org_id", "user_id", "handle", "role", "removed", "joined_at", "version"], self.members)
        ins("tags", ["org_id", "tag_id", "name", "color", "deleted", "version"], self.tags)
        ins("notifications", ["org_id", "notification_id", "project_id", "task_id", "user_id", "kind",
                              "comment_id", "actor_id", "created_at"], self.notifications)
        return out


def story():
    s = Story()
    s.event("OrganizationCreated", at(0, 8), "org-" + ORG, name="Acme")
    for i, (uid, handle) in enumerate([(U1, "alice"), (U2, "bob"), (U3, "carol")], 1):
        s.event("MemberAdded", at(0, 8, i), "org-" + ORG, member_id=uid, role="member")
        s.members.append(dict(org_id=ORG, user_id=uid, handle=handle, role="member", removed=0,
                              joined_at=at(0, 8, i), version=i + 1))
    for p, key, name in [(P1, "TL", "Tasklog"), (P2, "XY", "Other")]:
        s.event("ProjectCreated", at(0, 8, 30), "project-" + p, p, name=name)
        s.projects.append(dict(org_id=ORG, project_id=p, name=name, project_key=key, archived=0,
                               created_at=at(0, 8, 30), version=1))
    s.projects.append(dict(org_id=ORG, project_id=P1, name="Tasklog (renamed)", project_key="TL",
                           archived=0, created_at=at(0, 8, 30), version=2))
    s.event("TagCreated", at(0, 8, 40), "tag-1", tag_id=u(0x501), name="bug")
    s.tags.append(dict(org_id=ORG, tag_id=u(0x501), name="bug", color="red", deleted=0, version=1))

    T = {i: u(0x200 + i) for i in range(1, 9)}
    s.create(T[1], P1, 1, "TL-1", at(0, 9), "Backlog")
    s.create(T[2], P1, 2, "TL-2", at(1, 8), "Todo")
    s.move(T[1], at(1, 10), "Todo")
    s.assign(T[2], at(1, 12), U1)
    s.move(T[2], at(1, 12), "In Progress")
    s.assign(T[1], at(2, 9), U1)
    s.move(T[1], at(2, 9), "In Progress")
    s.create(T[3], P1, 3, "TL-3", at(2, 10), "Backlog")
    s.move(T[2], at(2, 18), "Done")
    s.create(T[4], P1, 4, "TL-4", at(3, 9), "Todo", due=day(18))
    s.create(T[5], P1, 5, "TL-5", at(3, 10), "Backlog")
    s.move(T[1], at(3, 12), "Review")
    s.create(T[6], P1, 6, "TL-6", at(4, 10), "Todo")
    s.move(T[1], at(4, 15), "Done")
    s.move(T[6], at(4, 16), "Done")
    s.move(T[2], at(7, 9), "In Progress")
    s.assign(T[2], at(8, 10), U2)
    s.move(T[3], at(8, 11), "Cancelled")
    s.move(T[2], at(10, 17), "Done")
    s.assign(T[4], at(14, 9), U2)
    s.move(T[4], at(14, 9), "In Progress")
    s.archive(T[5], at(16, 12))
    s.create(T[8], P2, 1, "XY-1", at(18, 8), "Backlog")
    s.archive(T[6], at(18, 9))
    s.create(T[7], P1, 7, "TL-7", at(22, 10), "Todo", due="2099-12-31")

    C = {i: u(0x300 + i) for i in range(1, 5)}
    t1 = "task-" + T[1]
    s.event("CommentAdded", at(2, 10), t1, P1, T[1], comment_id=C[1], author_id=U1, mentions=[U2])
    s.event("CommentAdded", at(2, 11), t1, P1, T[1], actor=U2, comment_id=C[2], author_id=U2, mentions=[U1, U3])
    s.event("CommentEdited", at(3, 9), t1, P1, T[1], comment_id=C[1], author_id=U1, mentions=[U2, U3])
    s.event("CommentAdded", at(3, 14), t1, P1, T[1], comment_id=C[3], author_id=U1, mentions=[])
    s.event("CommentDeleted", at(4, 8), t1, P1, T[1], comment_id=C[3])
    s.event("CommentAdded", at(18, 9), "task-" + T[8], P2, T[8], actor=U3, comment_id=C[4], author_id=U3, mentions=[U1])

    N = {i: u(0x400 + i) for i in range(1, 7)}
    s.notify(N[1], P1, T[1], U1, "assigned", at(2, 9))
    s.notify(N[2], P1, T[1], U2, "mentioned", at(2, 10), C[1])
    s.notify(N[3], P1, T[1], U1, "mentioned", at(2, 11), C[2])
    s.notify(N[4], P1, T[1], U3, "mentioned", at(2, 11), C[2])
    s.notify(N[5], P1, T[2], U2, "assigned", at(8, 10))
    s.notify(N[6], P2, T[8], U1, "mentioned", at(18, 9), C[4])
    for n, ts, etype in [(1, at(2, 9, 0, 5), "NotificationDelivered"),
                         (2, at(2, 10, 1, 5), "NotificationDelivered"),
                         (5, at(8, 10, 0, 30), "NotificationDelivered"),
                         (5, at(8, 10, 5), "NotificationDelivered"),
                         (1, at(2, 11), "NotificationRead"),
                         (2, at(3, 8), "NotificationRead"),
                         (2, at(4, 8), "NotificationRead"),
                         (5, at(8, 12), "NotificationRead")]:
        s.event(etype, ts, "inbox-" + N[n], None, None, notification_id=N[n])
    return s


# ------------------------------------------------------------ expectations
def expectations(r):
    """(what, SQL, expected rows as tab-joined strings) -- figures worked out by hand."""
    p1 = "org_id = '%s' AND project_id = '%s'" % (ORG, P1)
    p2 = "org_id = '%s' AND project_id = '%s'" % (ORG, P2)
    return [
        ("task_cycle: lead/cycle seconds, reopenings, archive",
         "SELECT task_key, status, lead_time_seconds, cycle_time_seconds, times_reopened, "
         "assignee_id, archived FROM %s.task_cycle WHERE org_id = '%s' ORDER BY task_key" % (r, ORG),
         ["TL-1\tDone\t367200\t194400\t0\t%s\t0" % U1,
          "TL-2\tDone\t810000\t795600\t1\t%s\t0" % U2,
          "TL-3\tCancelled\t\\N\t\\N\t0\t\\N\t0",
          "TL-4\tIn Progress\t\\N\t\\N\t0\t%s\t0" % U2,
          "TL-5\tBacklog\t\\N\t\\N\t0\t\\N\t1",
          "TL-6\tDone\t21600\t\\N\t0\t\\N\t1",
          "TL-7\tTodo\t\\N\t\\N\t0\t\\N\t0",
          "XY-1\tBacklog\t\\N\t\\N\t0\t\\N\t0"]),
        ("throughput_weekly: a task counts once, in the week of its last completion",
         "SELECT week, completed_by_assignee_id, completed FROM %s.throughput_weekly WHERE %s "
         "ORDER BY week, completed_by_assignee_id" % (r, p1),
         ["%s\t%s\t1" % (day(0), U1), "%s\t\\N\t1" % day(0), "%s\t%s\t1" % (day(7), U2)]),
        ("cycle_time_weekly: exact percentiles; cycle only over started tasks",
         "SELECT week, completed, lead_time_p50_seconds, lead_time_p85_seconds, lead_time_p95_seconds, "
         "cycle_samples, cycle_time_p50_seconds, cycle_time_p95_seconds FROM %s.cycle_time_weekly "
         "WHERE %s ORDER BY week" % (r, p1),
         ["%s\t2\t367200\t367200\t367200\t1\t194400\t194400" % day(0),
          "%s\t1\t810000\t810000\t810000\t1\t795600\t795600" % day(7)]),
        ("created_vs_resolved_daily: totals",
         "SELECT count(), sum(created), sum(completed), sum(cancelled), sum(reopened), sum(archived), "
         "min(day), max(day) = toDate(now(), 'UTC') FROM %s.created_vs_resolved_daily WHERE %s" % (r, p1),
         ["%d\t7\t3\t1\t1\t2\t%s\t1" % (days_to_today(0), day(0))]),
        ("created_vs_resolved_daily: days with activity",
         "SELECT day, created, completed, cancelled, reopened, archived FROM %s.created_vs_resolved_daily "
         "WHERE %s AND created + completed + cancelled + reopened + archived > 0 ORDER BY day" % (r, p1),
         ["%s\t1\t0\t0\t0\t0" % day(0), "%s\t1\t0\t0\t0\t0" % day(1), "%s\t1\t0\t0\t0\t0" % day(2),
          "%s\t2\t0\t0\t0\t0" % day(3), "%s\t1\t2\t0\t0\t0" % day(4), "%s\t0\t0\t0\t1\t0" % day(7),
          "%s\t0\t0\t1\t0\t0" % day(8), "%s\t0\t1\t0\t0\t0" % day(10), "%s\t0\t0\t0\t0\t1" % day(16),
          "%s\t0\t0\t0\t0\t1" % day(18), "%s\t1\t0\t0\t0\t0" % day(22)]),
        ("cumulative_flow_daily: a dense grid, every status used x every day to today",
         "SELECT count(), uniqExact(status), min(day), max(day) = toDate(now(), 'UTC') "
         "FROM %s.cumulative_flow_daily WHERE %s" % (r, p1),
         ["%d\t6\t%s\t1" % (6 * days_to_today(0), day(0))]),
        ("cumulative_flow_daily: tasks per status at the end of chosen days",
         "SELECT day, groupArray((status, tasks)) FROM (SELECT day, status, tasks FROM "
         "%s.cumulative_flow_daily WHERE %s AND tasks > 0 AND day IN ('%s') ORDER BY day, status) "
         "GROUP BY day ORDER BY day" % (r, p1, "','".join(day(d) for d in (0, 1, 2, 3, 4, 7, 8, 10, 14, 15, 16, 17, 18, 22))),
         ["%s\t[('Backlog',1)]" % day(0),
          "%s\t[('In Progress',1),('Todo',1)]" % day(1),
          "%s\t[('Backlog',1),('Done',1),('In Progress',1)]" % day(2),
          "%s\t[('Backlog',2),('Done',1),('Review',1),('Todo',1)]" % day(3),
          "%s\t[('Backlog',2),('Done',3),('Todo',1)]" % day(4),
          "%s\t[('Backlog',2),('Done',2),('In Progress',1),('Todo',1)]" % day(7),
          "%s\t[('Backlog',1),('Cancelled',1),('Done',2),('In Progress',1),('Todo',1)]" % day(8),
          "%s\t[('Backlog',1),('Cancelled',1),('Done',3),('Todo',1)]" % day(10),
          "%s\t[('Backlog',1),('Cancelled',1),('Done',3),('In Progress',1)]" % day(14),
          "%s\t[('Backlog',1),('Cancelled',1),('Done',3),('In Progress',1)]" % day(15),
          "%s\t[('Cancelled',1),('Done',3),('In Progress',1)]" % day(16),
          "%s\t[('Cancelled',1),('Done',3),('In Progress',1)]" % day(17),
          "%s\t[('Cancelled',1),('Done',2),('In Progress',1)]" % day(18),
          "%s\t[('Cancelled',1),('Done',2),('In Progress',1),('Todo',1)]" % day(22)]),
        ("cumulative_flow_daily: today, and the second project",
         "SELECT project_id = '%s', status, tasks, count() FROM %s.cumulative_flow_daily WHERE org_id = '%s' "
         "AND day >= toDate(now(), 'UTC') - 1 GROUP BY project_id, status, tasks ORDER BY project_id, status"
         % (P1, r, ORG),
         ["1\tBacklog\t0\t2", "1\tCancelled\t1\t2", "1\tDone\t2\t2", "1\tIn Progress\t1\t2",
          "1\tReview\t0\t2", "1\tTodo\t1\t2", "0\tBacklog\t1\t2"]),
        ("time_in_status: finished stays (archived = finished at archived_at) and open stays",
         "SELECT status, category, finished_stays, finished_seconds, avg_finished_seconds, open_stays "
         "FROM %s.time_in_status WHERE %s ORDER BY status" % (r, p1),
         ["Backlog\tbacklog\t3\t1742400\t580800\t0",
          "Cancelled\tcancelled\t0\t0\t\\N\t1",
          "Done\tcompleted\t2\t1584000\t792000\t2",
          "In Progress\tstarted\t3\t493200\t164400\t1",
          "Review\tstarted\t1\t97200\t97200\t0",
          "Todo\tunstarted\t4\t1069200\t267300\t1"]),
        ("time_in_status: open seconds as of now()",
         # 18.16 may evaluate the scalar subquery's now() a second apart from
         # the view's: two open stays, so up to 2 s either way.
         "SELECT status, abs(toInt64(open_seconds) - toInt64((SELECT sum(toUInt64(now()) - toUInt64(toDateTime(x, 'UTC'))) FROM "
         "(SELECT arrayJoin(%s) AS x)))) <= 2 FROM %s.time_in_status WHERE %s AND status = 'Done'"
         % ("['%s','%s']" % (at(4, 15), at(10, 17)), r, p1),
         ["Done\t1"]),
        ("flow_efficiency: time in started / first leaving backlog to completion",
         "SELECT week, completed, started_seconds, elapsed_seconds, round(flow_efficiency, 6) "
         "FROM %s.flow_efficiency WHERE %s ORDER BY week" % (r, p1),
         ["%s\t2\t194400\t298800\t%s" % (day(0), round(194400 / 298800, 6)),
          "%s\t1\t396000\t810000\t%s" % (day(7), round(396000 / 810000, 6))]),
        ("workload_current: open tasks per assignee and status, overdue",
         "SELECT project_id = '%s', assignee_id, status, open_tasks, overdue_tasks FROM %s.workload_current "
         "WHERE org_id = '%s' ORDER BY project_id, status" % (P1, r, ORG),
         ["1\t%s\tIn Progress\t1\t1" % U2, "1\t\\N\tTodo\t1\t0", "0\t\\N\tBacklog\t1\t0"]),
        ("comment_activity_daily: added, edited, deleted, mentions of added comments, commenters",
         "SELECT project_id = '%s', day, comments_added, comments_edited, comments_deleted, mentions, commenters "
         "FROM %s.comment_activity_daily WHERE org_id = '%s' ORDER BY day" % (P1, r, ORG),
         ["1\t%s\t2\t0\t0\t3\t2" % day(2), "1\t%s\t1\t1\t0\t0\t1" % day(3),
          "1\t%s\t0\t0\t1\t0\t0" % day(4), "0\t%s\t1\t0\t0\t1\t1" % day(18)]),
        ("notifications_daily: created, first read, first delivered and mean delay",
         "SELECT project_id = '%s', day, kind, created, read, delivered, avg_delivery_delay_seconds "
         "FROM %s.notifications_daily WHERE org_id = '%s' ORDER BY day, kind" % (P1, r, ORG),
         ["1\t%s\tassigned\t1\t1\t1\t5" % day(2), "1\t%s\tmentioned\t3\t0\t1\t65" % day(2),
          "1\t%s\tmentioned\t0\t1\t0\t\\N" % day(3), "1\t%s\tassigned\t1\t1\t1\t30" % day(8),
          "0\t%s\tmentioned\t1\t0\t0\t\\N" % day(18)]),
        ("event_log: every event once; org-level events have no project",
         "SELECT count(), countIf(project_id IS NULL), uniqExact(event_id) FROM %s.event_log "
         "WHERE org_id = '%s'" % (r, ORG),
         None),  # filled in below from the story
    ]


def days_to_today(first):
    today = dt.datetime.now(dt.timezone.utc).date()
    return (today - (B + dt.timedelta(days=first)).date()).days + 1


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", action="store_true", help="use clickhouse-client against a server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--db", help="tables' database (default tasklog; required with --client)")
    ap.add_argument("--reporting", help="views' database (default reporting; required with --client)")
    ap.add_argument("--keep", action="store_true", help="--client: keep the scratch databases")
    args = ap.parse_args()

    if args.client:
        if not args.db or not args.reporting:
            fail("--client needs --db and --reporting (scratch databases it creates and drops)")
        be = ClientBackend(args)
        for d in (args.db, args.reporting):
            if be.query("SELECT count() FROM system.databases WHERE name = '%s'" % d)[0][0] != "0":
                fail("database %s exists already: give scratch names" % d)
        db, rep = args.db, args.reporting
    else:
        be = ChdbBackend()
        db, rep = args.db or "tasklog", args.reporting or "reporting"
    print("check-clickhouse-sql: %s; tables in `%s`, views in `%s`" % (be.name, db, rep))

    try:
        views = run_migrations(be, db, rep)
        present = {row[0] for row in be.query(
            "SELECT name FROM system.tables WHERE database = '%s'" % rep)}
        missing = [v for v in views if v not in present]
        if missing:
            fail("views not created: %s" % missing)
        print("ok: %d views exist: %s" % (len(views), ", ".join(views)))

        for v in views:
            try:
                be.query("SELECT * FROM %s.%s LIMIT 1" % (rep, v))
            except Exception as e:  # noqa: BLE001
                fail("SELECT from %s.%s on empty tables: %s" % (rep, v, e))
        print("ok: every view answers on empty tables")

        # No merges: duplicates and old versions stay in their own parts, so
        # only FINAL keeps them from being counted.
        for t in ("events", "status_changes", "tasks", "projects", "members", "tags", "notifications"):
            be.query("SYSTEM STOP MERGES %s.%s" % (db, t))
        s = story()
        # The same story once more in another organization (same project,
        # task and notification ids): every check filters on ORG, so a
        # filter pushed into a view wrongly would count these rows too.
        story_rows = s.inserts(db)
        story_rows += [st.replace(ORG, OTHER_ORG) for st in story_rows]
        for st in story_rows:
            try:
                be.query(st)
            except Exception as e:  # noqa: BLE001
                fail("inserting the story: %s\n%s" % (e, st[:300]))
        print("ok: inserted the story (%d events, %d task versions, %d status changes, %d notifications), "
              "and the same in a second organization"
              % (len(s.events), len(s.tasks), len(s.sc), len(s.notifications)))

        def snapshot():
            snap = {}
            for v in views:
                cols = [c[0] for c in be.query(
                    "SELECT name FROM system.columns WHERE database = '%s' AND table = '%s'" % (rep, v))]
                # Columns measured against now() move between two reads.
                cols = [c for c in cols if c != "open_seconds"]
                try:
                    rows = be.query("SELECT %s FROM %s.%s" % (", ".join("`%s`" % c for c in cols), rep, v))
                except Exception as e:  # noqa: BLE001
                    fail("SELECT from %s.%s: %s" % (rep, v, e))
                if not rows:
                    fail("%s.%s returned no rows over the story" % (rep, v))
                snap[v] = sorted("\t".join(r) for r in rows)
            return snap

        checks = expectations(rep)
        nulls = sum(1 for e in s.events if e["project_id"] is None)
        checks[-1] = checks[-1][:2] + (["%d\t%d\t%d" % (len(s.events), nulls, len(s.events))],)
        checked = {v: 0 for v in views}

        def verify(label):
            bad = 0
            for what, sql, want in checks:
                try:
                    got = ["\t".join(r) for r in be.query(sql)]
                except Exception as e:  # noqa: BLE001
                    fail("%s: query failed: %s\n%s" % (what, e, sql))
                if got != want:
                    bad += 1
                    print("MISMATCH (%s) %s\n  query: %s\n  want: %s\n  got:  %s"
                          % (label, what, sql, "\n        ".join(want), "\n        ".join(got)),
                          file=sys.stderr)
                for v in views:
                    if re.search(r"\.%s\b" % v, sql):
                        checked[v] += 1
            if bad:
                fail("%d figure check(s) differ (%s)" % (bad, label))

        verify("rows written once")
        print("ok: %d figure checks over the story" % len(checks))
        unchecked = [v for v, n in checked.items() if n == 0]
        if unchecked:
            fail("views without a figure check: %s" % unchecked)

        first = snapshot()
        for st in story_rows:
            be.query(st)
        raw = be.query("SELECT count() FROM %s.events" % db)[0][0]
        print("ok: inserted every row a second time (%s rows in %s.events without FINAL, %d events in each organization)"
              % (raw, db, len(s.events)))
        verify("rows written twice")
        second = snapshot()
        for v in views:
            if first[v] != second[v]:
                fail("%s.%s changed when every row was written twice (a duplicate was counted)" % (rep, v))
            print("ok: %-26s %5d rows, unchanged by duplicates" % (v, len(first[v])))
        print("check-clickhouse-sql: all checks passed")
    finally:
        if args.client and not args.keep:
            for d in (rep, db):
                try:
                    be.query("DROP DATABASE IF EXISTS %s" % d)
                except Exception:  # noqa: BLE001
                    pass
        be.close()


if __name__ == "__main__":
    main()
