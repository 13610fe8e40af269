"""Populates an organization through the command API for scripts/schemathesis.sh.

usage: schemathesis_populate.py COMMAND_URL QUERY_URL TASKLOG_BIN

Mints tokens with `tasklog token`, creates an organization with members, a
project, tasks (assigned, moved, tagged, commented on with mentions) and tags,
waits until the query API shows the owner a notification, and prints shell
assignments (ST_TOKEN, ST_ORG, ...) of the ids schemathesis fills paths with.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

command, query, tasklog = sys.argv[1:4]


def token(user, handle):
    out = subprocess.run(
        [tasklog, "token", "--user", str(user), "--handle", handle],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def call(base, method, path, tok, body=None, allow=()):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + tok)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        if e.code in allow:
            return None
        sys.exit(f"populate: {method} {path} answered {e.code}: {e.read().decode()}")


ann, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
t_ann, t_bob = token(ann, "ann"), token(bob, "bob")

org = call(command, "POST", "/v1/orgs", t_ann, {"name": "Schemathesis"})["id"]
o = f"/v1/orgs/{org}"
call(command, "POST", f"{o}/members", t_ann, {"user_id": str(bob), "handle": "bob", "role": "member"})
call(command, "POST", f"{o}/members", t_ann, {"user_id": str(carol), "handle": "carol", "role": "viewer"})
project = call(command, "POST", f"{o}/projects", t_ann, {"name": "Website", "key": "WEB"})["id"]
call(command, "POST", f"{o}/projects", t_ann, {"name": "Mobile", "key": "MOB"})
bug = call(command, "POST", f"{o}/tags", t_ann, {"name": "bug", "color": "#ff0000"})["id"]
ui = call(command, "POST", f"{o}/tags", t_ann, {"name": "ui"})["id"]
tasks = []
for i, (title, priority) in enumerate([("Ship it", "high"), ("Fix login", "urgent"), ("Docs", "low")]):
    body = {"title": title, "description": f"task {i}", "priority": priority}
    if i == 0:
        body["due_date"] = "2026-12-24"
    tasks.append(call(command, "POST", f"{o}/projects/{project}/tasks", t_ann, body)["id"])
task = tasks[0]
call(command, "POST", f"{o}/tasks/{task}/assignee", t_ann, {"assignee": str(bob)})
call(command, "POST", f"{o}/tasks/{task}/status", t_ann, {"status": "todo"})
call(command, "POST", f"{o}/tasks/{task}/tags", t_ann, {"tag_id": bug})
call(command, "POST", f"{o}/tasks/{tasks[1]}/tags", t_ann, {"tag_id": ui})
comment = call(command, "POST", f"{o}/tasks/{task}/comments", t_ann, {"body": "@bob please look"})["id"]
# Bob answers and hands a task to Ann: Ann gets notifications.
call(command, "POST", f"{o}/tasks/{task}/comments", t_bob, {"body": "@ann done, see the diff"})
call(command, "POST", f"{o}/tasks/{tasks[1]}/assignee", t_bob, {"assignee": str(ann)})

notification = None
deadline = time.time() + 60
while notification is None:
    # 403 until the query side has seen Ann join.
    page = call(query, "GET", f"{o}/me/notifications", t_ann, allow=(403,))
    items = page["items"] if page else []
    if items:
        notification = items[0]["id"]
    elif time.time() > deadline:
        sys.exit("populate: the query API never showed Ann a notification")
    else:
        time.sleep(0.2)

for name, value in [
    ("ST_TOKEN", t_ann), ("ST_ORG", org), ("ST_PROJECT", project), ("ST_TASK", task),
    ("ST_TAG", ui), ("ST_COMMENT", comment), ("ST_USER", carol), ("ST_NOTIFICATION", notification),
]:
    print(f"{name}={value}")
