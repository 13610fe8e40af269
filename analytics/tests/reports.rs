//! Every reporting view (docs/reporting.md) over a known history, against
//! figures computed by hand. The history is described in `common/mod.rs`;
//! `d/hh` below is March d 2026, hh:00 UTC. Rows are compared with their
//! uuids replaced by the story's names, columns joined by " | ", lines
//! sorted.

mod common;

use chrono::Utc;
use common::Story;
use tasklog_event_store::LogPosition;
use tasklog_testkit::{EventLog, TestClickHouse, TestDatabase};

struct Reports {
    db: TestDatabase,
    ch: TestClickHouse,
    s: Story,
    log: EventLog,
}

/// The story written to a fresh database and projected into fresh
/// ClickHouse databases by the real analytics projection.
async fn reports() -> Reports {
    let (db, pool) = TestDatabase::migrated("reports").await;
    let ch = TestClickHouse::migrated().await;
    let log = EventLog::new(&pool);
    let s = Story::write(&log).await;
    common::project(&pool, &log, &ch.config, s.head).await;
    Reports { db, ch, s, log }
}

impl Reports {
    /// `sql` with `{r}` the reporting database and `{A}`, `{B}`, `{WEB}`,
    /// `{API}`, `{OPS}` the organizations' and projects' ids.
    fn sql(&self, sql: &str) -> String {
        let id = |u: uuid::Uuid| format!("toUUID('{u}')");
        sql.replace("{r}", &self.ch.config.reporting)
            .replace("{A}", &id(self.s.org))
            .replace("{B}", &id(self.s.other_org))
            .replace("{WEB}", &id(self.s.project_id("WEB")))
            .replace("{API}", &id(self.s.project_id("API")))
            .replace("{OPS}", &id(self.s.project_id("OPS")))
    }

    /// The rows of `sql`, named, columns joined by " | ", sorted.
    async fn rows(&self, sql: &str) -> Vec<String> {
        let text = self.s.named(&self.ch.tsv(&self.sql(sql)).await);
        let mut lines: Vec<String> = text.lines().map(|l| l.replace('\t', " | ")).collect();
        lines.sort();
        lines
    }

    async fn done(self) {
        drop(self.ch);
        self.db.drop_database().await;
    }
}

fn table(lines: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    lines.sort();
    lines
}

/// Per day: status rows, then tasks in backlog, todo, in_progress,
/// in_review, done, cancelled at the end of the day.
const FLOW: &str = "SELECT project_id, day, count(), sumIf(tasks, status = 'backlog'), \
    sumIf(tasks, status = 'todo'), sumIf(tasks, status = 'in_progress'), \
    sumIf(tasks, status = 'in_review'), sumIf(tasks, status = 'done'), \
    sumIf(tasks, status = 'cancelled') \
    FROM {r}.cumulative_flow_daily \
    WHERE org_id = {A} AND day BETWEEN '2026-03-01' AND '2026-03-15' \
    GROUP BY project_id, day";

#[tokio::test]
async fn cumulative_flow_counts_tasks_at_the_end_of_every_day_with_quiet_days_carried_forward() {
    let r = reports().await;
    // WEB (6 statuses used, so 6 rows a day from its first task, Mar 2):
    // 2: WEB-1 todo (its backlog stay began and ended that day: not
    //    counted), WEB-2 backlog.
    // 3: WEB-1, WEB-2 in_progress; WEB-3 todo; WEB-4 backlog.
    // 4: WEB-1 done; WEB-2 in_progress; WEB-3 cancelled; WEB-4 todo.
    // 5: WEB-2 in_review.  6: WEB-2 done; WEB-4 archived, gone.
    // 7, 8: nothing happens, Mar 6 carried forward.
    // 9: + WEB-5 todo, WEB-6 in_progress.
    // 10: WEB-1 reopened to in_progress; WEB-5, WEB-7 in_progress; WEB-6
    //     in_review and back to in_progress the same day (net 0).
    // 11: WEB-1 done; WEB-6 in_review.  12: WEB-6 done.  13: WEB-7 done.
    // API (5 statuses: never cancelled), from its first task, Mar 9:
    // 9: API-1 todo.  10: API-2 in_progress (todo and left the same day).
    // 11: API-3 backlog.  12: API-1 in_progress, API-2 done.  13: API-1 done.
    assert_eq!(
        r.rows(FLOW).await,
        table(&[
            "WEB | 2026-03-02 | 6 | 1 | 1 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-03 | 6 | 1 | 1 | 2 | 0 | 0 | 0",
            "WEB | 2026-03-04 | 6 | 0 | 1 | 1 | 0 | 1 | 1",
            "WEB | 2026-03-05 | 6 | 0 | 1 | 0 | 1 | 1 | 1",
            "WEB | 2026-03-06 | 6 | 0 | 0 | 0 | 0 | 2 | 1",
            "WEB | 2026-03-07 | 6 | 0 | 0 | 0 | 0 | 2 | 1",
            "WEB | 2026-03-08 | 6 | 0 | 0 | 0 | 0 | 2 | 1",
            "WEB | 2026-03-09 | 6 | 0 | 1 | 1 | 0 | 2 | 1",
            "WEB | 2026-03-10 | 6 | 0 | 0 | 4 | 0 | 1 | 1",
            "WEB | 2026-03-11 | 6 | 0 | 0 | 2 | 1 | 2 | 1",
            "WEB | 2026-03-12 | 6 | 0 | 0 | 2 | 0 | 3 | 1",
            "WEB | 2026-03-13 | 6 | 0 | 0 | 1 | 0 | 4 | 1",
            "WEB | 2026-03-14 | 6 | 0 | 0 | 1 | 0 | 4 | 1",
            "WEB | 2026-03-15 | 6 | 0 | 0 | 1 | 0 | 4 | 1",
            "API | 2026-03-09 | 5 | 0 | 1 | 0 | 0 | 0 | 0",
            "API | 2026-03-10 | 5 | 0 | 1 | 1 | 0 | 0 | 0",
            "API | 2026-03-11 | 5 | 1 | 1 | 1 | 0 | 0 | 0",
            "API | 2026-03-12 | 5 | 1 | 0 | 1 | 0 | 1 | 0",
            "API | 2026-03-13 | 5 | 1 | 0 | 0 | 0 | 2 | 0",
            "API | 2026-03-14 | 5 | 1 | 0 | 0 | 0 | 2 | 0",
            "API | 2026-03-15 | 5 | 1 | 0 | 0 | 0 | 2 | 0",
        ])
    );
    // The grid runs to today.
    let today = Utc::now().date_naive();
    assert_eq!(
        r.rows("SELECT project_id, max(day) FROM {r}.cumulative_flow_daily WHERE org_id = {A} GROUP BY project_id")
            .await,
        table(&[&format!("API | {today}"), &format!("WEB | {today}")])
    );
    r.done().await;
}

#[tokio::test]
async fn an_archived_task_leaves_the_flow_on_its_archive_day() {
    let r = reports().await;
    // WEB-4 is in todo from 4/10 until archived 6/10; WEB-3 was in todo on
    // Mar 3 only.
    assert_eq!(
        r.rows(
            "SELECT day, tasks FROM {r}.cumulative_flow_daily WHERE org_id = {A} \
             AND project_id = {WEB} AND status = 'todo' AND day BETWEEN '2026-03-04' AND '2026-03-07'"
        )
        .await,
        table(&["2026-03-04 | 1", "2026-03-05 | 1", "2026-03-06 | 0", "2026-03-07 | 0"])
    );
    // It still counts as created on Mar 3 and archived on Mar 6 ...
    assert_eq!(
        r.rows(
            "SELECT day, created, archived FROM {r}.created_vs_resolved_daily WHERE org_id = {A} \
             AND project_id = {WEB} AND day IN ('2026-03-03', '2026-03-06')"
        )
        .await,
        table(&["2026-03-03 | 2 | 0", "2026-03-06 | 0 | 1"])
    );
    // ... its todo stay ends at archived_at: a finished stay of 6/10 − 4/10
    // = 172800 s among WEB's 8 finished todo stays (446400 s in all, see
    // the time_in_status test), and no open one.
    assert_eq!(
        r.rows(
            "SELECT finished_stays, finished_seconds, open_stays FROM {r}.time_in_status \
             WHERE org_id = {A} AND project_id = {WEB} AND status = 'todo'"
        )
        .await,
        table(&["8 | 446400 | 0"])
    );
    // ... and it is no one's open work, though cat is still its assignee.
    assert_eq!(
        r.rows("SELECT assignee_id, status FROM {r}.workload_current WHERE org_id = {A} AND assignee_id IS NOT NULL")
            .await,
        table(&["cat | in_progress"])
    );
    r.done().await;
}

#[tokio::test]
async fn task_cycle_has_every_task_as_it_stands_with_lead_and_cycle_times_of_its_current_completion(
) {
    let r = reports().await;
    // Lead = completed_at − created_at, cycle = completed_at − first_started_at:
    // API-1: 13/10 − 9/10 = 345600; 13/10 − 12/10 = 86400.
    // API-2: 12/12 − 10/09 = 183600; 12/12 − 10/12 = 172800.
    // WEB-1: its last completion 11/16 − 2/09 = 802800; − 3/09 = 716400
    //        (first start ever, before the reopening); reopened once.
    // WEB-2: 6/12 − 2/11 = 349200; 6/12 − 3/11 = 262800; completed by cat,
    //        assigned to bob now.
    // WEB-3: cancelled 4/12, no lead or cycle; never started.
    // WEB-4: archived in todo, left the backlog 4/10.
    // WEB-5: open; WEB-6: 12/09 − 9/08 = 262800; 12/09 − 9/12 = 248400.
    // WEB-7: 13/14 − 10/08 = 280800; 13/14 − 10/10 = 273600.
    assert_eq!(
        r.rows(
            "SELECT task_key, status, category, created_at, first_left_backlog_at, first_started_at, \
             completed_at, completed_by_assignee_id, cancelled_at, lead_time_seconds, cycle_time_seconds, \
             times_reopened, assignee_id, due_date, archived, archived_at, project_id \
             FROM {r}.task_cycle WHERE org_id = {A}"
        )
        .await,
        table(&[
            "API-1 | done | completed | 2026-03-09 10:00:00 | 2026-03-09 11:00:00 | 2026-03-12 10:00:00 | 2026-03-13 10:00:00 | \\N | \\N | 345600 | 86400 | 0 | \\N | \\N | 0 | \\N | API",
            "API-2 | done | completed | 2026-03-10 09:00:00 | 2026-03-10 10:00:00 | 2026-03-10 12:00:00 | 2026-03-12 12:00:00 | \\N | \\N | 183600 | 172800 | 0 | \\N | \\N | 0 | \\N | API",
            "API-3 | backlog | backlog | 2026-03-11 09:00:00 | \\N | \\N | \\N | \\N | \\N | \\N | \\N | 0 | \\N | \\N | 0 | \\N | API",
            "WEB-1 | done | completed | 2026-03-02 09:00:00 | 2026-03-02 10:00:00 | 2026-03-03 09:00:00 | 2026-03-11 16:00:00 | bob | \\N | 802800 | 716400 | 1 | bob | \\N | 0 | \\N | WEB",
            "WEB-2 | done | completed | 2026-03-02 11:00:00 | 2026-03-03 10:00:00 | 2026-03-03 11:00:00 | 2026-03-06 12:00:00 | cat | \\N | 349200 | 262800 | 0 | bob | \\N | 0 | \\N | WEB",
            "WEB-3 | cancelled | cancelled | 2026-03-03 09:00:00 | 2026-03-03 12:00:00 | \\N | \\N | \\N | 2026-03-04 12:00:00 | \\N | \\N | 0 | \\N | \\N | 0 | \\N | WEB",
            "WEB-4 | todo | unstarted | 2026-03-03 10:00:00 | 2026-03-04 10:00:00 | \\N | \\N | \\N | \\N | \\N | \\N | 0 | cat | 2026-03-05 | 1 | 2026-03-06 10:00:00 | WEB",
            "WEB-5 | in_progress | started | 2026-03-09 09:00:00 | 2026-03-09 10:00:00 | 2026-03-10 09:00:00 | \\N | \\N | \\N | \\N | \\N | 0 | cat | 2026-03-10 | 0 | \\N | WEB",
            "WEB-6 | done | completed | 2026-03-09 08:00:00 | 2026-03-09 09:00:00 | 2026-03-09 12:00:00 | 2026-03-12 09:00:00 | cat | \\N | 262800 | 248400 | 0 | cat | \\N | 0 | \\N | WEB",
            "WEB-7 | done | completed | 2026-03-10 08:00:00 | 2026-03-10 09:00:00 | 2026-03-10 10:00:00 | 2026-03-13 14:00:00 | bob | \\N | 280800 | 273600 | 0 | bob | \\N | 0 | \\N | WEB",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn a_reopened_task_counts_once_in_throughput_in_the_week_of_its_last_completion() {
    let r = reports().await;
    // WEB-1 was done 4/15 (week of Mar 2), reopened 10/09 and done again
    // 11/16: it counts once, in the week of Mar 9, and week 1 has only
    // WEB-2 (cat). Week of Mar 9: WEB-1, WEB-7 (bob), WEB-6 (cat); API-1,
    // API-2 unassigned.
    assert_eq!(
        r.rows("SELECT project_id, week, completed_by_assignee_id, completed FROM {r}.throughput_weekly WHERE org_id = {A}")
            .await,
        table(&[
            "WEB | 2026-03-02 | cat | 1",
            "WEB | 2026-03-09 | bob | 2",
            "WEB | 2026-03-09 | cat | 1",
            "API | 2026-03-09 | \\N | 2",
        ])
    );
    // Its first completion day no longer counts; its reopening does.
    assert_eq!(
        r.rows(
            "SELECT day, completed, reopened FROM {r}.created_vs_resolved_daily WHERE org_id = {A} \
             AND project_id = {WEB} AND day IN ('2026-03-04', '2026-03-10', '2026-03-11')"
        )
        .await,
        table(&["2026-03-04 | 0 | 0", "2026-03-10 | 0 | 1", "2026-03-11 | 1 | 0"])
    );
    r.done().await;
}

#[tokio::test]
async fn a_completion_is_credited_to_the_assignee_at_completion_not_the_current_one() {
    let r = reports().await;
    // WEB-2: bob, then cat (5/09), done 6/12, then bob again (12/09).
    assert_eq!(
        r.rows(
            "SELECT week, completed_by_assignee_id, completed FROM {r}.throughput_weekly \
             WHERE org_id = {A} AND project_id = {WEB} AND week = '2026-03-02'"
        )
        .await,
        table(&["2026-03-02 | cat | 1"])
    );
    assert_eq!(
        r.rows("SELECT completed_by_assignee_id, assignee_id FROM {r}.task_cycle WHERE org_id = {A} AND task_key = 'WEB-2'")
            .await,
        table(&["cat | bob"])
    );
    r.done().await;
}

#[tokio::test]
async fn percentiles_are_exact() {
    let r = reports().await;
    // The value at floor(level × n) of the sorted values (0-based).
    // WEB week of Mar 2: WEB-2 alone: lead 349200, cycle 262800.
    // WEB week of Mar 9: leads [262800 (WEB-6), 280800 (WEB-7), 802800
    // (WEB-1)]: p50 = [1] = 280800, p85 = [2] (2.55) = 802800, p95 = [2];
    // cycles [248400, 273600, 716400] likewise (an interpolating p85 would
    // be 586560).
    // API week of Mar 9: leads [183600 (API-2), 345600 (API-1)]: every
    // percentile is [1], the larger; cycles [86400, 172800]: 172800.
    assert_eq!(
        r.rows(
            "SELECT project_id, week, completed, lead_time_p50_seconds, lead_time_p85_seconds, \
             lead_time_p95_seconds, cycle_samples, cycle_time_p50_seconds, cycle_time_p85_seconds, \
             cycle_time_p95_seconds FROM {r}.cycle_time_weekly WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | 2026-03-02 | 1 | 349200 | 349200 | 349200 | 1 | 262800 | 262800 | 262800",
            "WEB | 2026-03-09 | 3 | 280800 | 802800 | 802800 | 3 | 273600 | 716400 | 716400",
            "API | 2026-03-09 | 2 | 345600 | 345600 | 345600 | 2 | 172800 | 172800 | 172800",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn created_vs_resolved_counts_tasks_by_their_current_resolution_on_every_day() {
    let r = reports().await;
    // created, completed, cancelled, reopened, archived.
    // WEB: created 2 on Mar 2 (WEB-1, 2), 3 (WEB-3, 4), 9 (WEB-5, 6), 1 on
    // Mar 10 (WEB-7); WEB-3 cancelled Mar 4; WEB-2 done and WEB-4 archived
    // Mar 6; WEB-1 reopened Mar 10 (its Mar 4 completion no longer counts)
    // and done Mar 11; WEB-6 done Mar 12, WEB-7 Mar 13.
    // API: created Mar 9, 10, 11; API-2 done Mar 12, API-1 Mar 13.
    // Every day in between and after has its zero row.
    assert_eq!(
        r.rows(
            "SELECT project_id, day, created, completed, cancelled, reopened, archived \
             FROM {r}.created_vs_resolved_daily WHERE org_id = {A} AND day BETWEEN '2026-03-01' AND '2026-03-15'"
        )
        .await,
        table(&[
            "WEB | 2026-03-02 | 2 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-03 | 2 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-04 | 0 | 0 | 1 | 0 | 0",
            "WEB | 2026-03-05 | 0 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-06 | 0 | 1 | 0 | 0 | 1",
            "WEB | 2026-03-07 | 0 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-08 | 0 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-09 | 2 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-10 | 1 | 0 | 0 | 1 | 0",
            "WEB | 2026-03-11 | 0 | 1 | 0 | 0 | 0",
            "WEB | 2026-03-12 | 0 | 1 | 0 | 0 | 0",
            "WEB | 2026-03-13 | 0 | 1 | 0 | 0 | 0",
            "WEB | 2026-03-14 | 0 | 0 | 0 | 0 | 0",
            "WEB | 2026-03-15 | 0 | 0 | 0 | 0 | 0",
            "API | 2026-03-09 | 1 | 0 | 0 | 0 | 0",
            "API | 2026-03-10 | 1 | 0 | 0 | 0 | 0",
            "API | 2026-03-11 | 1 | 0 | 0 | 0 | 0",
            "API | 2026-03-12 | 0 | 1 | 0 | 0 | 0",
            "API | 2026-03-13 | 0 | 1 | 0 | 0 | 0",
            "API | 2026-03-14 | 0 | 0 | 0 | 0 | 0",
            "API | 2026-03-15 | 0 | 0 | 0 | 0 | 0",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn time_in_status_counts_each_status_entry_as_a_stay_finished_or_open_until_now() {
    let r = reports().await;
    // Finished stays (seconds), sorted; p50 = [floor(n/2)], p85 = [floor(0.85 n)]:
    // WEB backlog: WEB-1, 5, 6, 7 3600 each, WEB-3 10800, WEB-2 82800, WEB-4
    //   86400: 7 stays, 194400, avg 27771.4, p50 [3] 3600, p85 [5] 82800.
    // WEB todo: WEB-1 82800 and 3600 (after its reopening), WEB-2 3600,
    //   WEB-3 86400, WEB-4 172800 (ended by its archiving), WEB-5 82800,
    //   WEB-6 10800, WEB-7 3600: 8, 446400, avg 55800, p50 [4] 82800, p85
    //   [6] 86400.
    // WEB in_progress: WEB-1 86400 twice, WEB-2 176400, WEB-6 86400 and
    //   64800 (two entries), WEB-7 259200: 6, 759600, avg 126600, p50 [3]
    //   86400, p85 [5] 259200; open: WEB-5.
    // WEB in_review: WEB-1 21600 twice, WEB-2 86400, WEB-6 10800 and 86400,
    //   WEB-7 14400: 6, 241200, avg 40200, p50 21600, p85 86400.
    // WEB done: WEB-1 4/15 → 10/09 = 496800; open: WEB-1, 2, 6, 7.
    // WEB cancelled: none finished (NULLs); open: WEB-3.
    // API backlog: API-1, 2 3600 each; open API-3. todo: API-2 7200, API-1
    //   255600. in_progress: API-1 82800, API-2 165600. in_review: API-1
    //   3600, API-2 7200. done: open API-1, 2.
    assert_eq!(
        r.rows(
            "SELECT project_id, status, category, finished_stays, finished_seconds, \
             round(avg_finished_seconds, 1), p50_finished_seconds, p85_finished_seconds, open_stays \
             FROM {r}.time_in_status WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | backlog | backlog | 7 | 194400 | 27771.4 | 3600 | 82800 | 0",
            "WEB | todo | unstarted | 8 | 446400 | 55800 | 82800 | 86400 | 0",
            "WEB | in_progress | started | 6 | 759600 | 126600 | 86400 | 259200 | 1",
            "WEB | in_review | started | 6 | 241200 | 40200 | 21600 | 86400 | 0",
            "WEB | done | completed | 1 | 496800 | 496800 | 496800 | 496800 | 4",
            "WEB | cancelled | cancelled | 0 | 0 | \\N | \\N | \\N | 1",
            "API | backlog | backlog | 2 | 7200 | 3600 | 3600 | 3600 | 1",
            "API | todo | unstarted | 2 | 262800 | 131400 | 255600 | 255600 | 0",
            "API | in_progress | started | 2 | 248400 | 124200 | 165600 | 165600 | 0",
            "API | in_review | started | 2 | 10800 | 5400 | 7200 | 7200 | 0",
            "API | done | completed | 0 | 0 | \\N | \\N | \\N | 2",
        ])
    );
    // Open stays run to now(): WEB-3 has been cancelled since 4/12.
    let open: i64 = r
        .rows("SELECT open_seconds FROM {r}.time_in_status WHERE org_id = {A} AND project_id = {WEB} AND status = 'cancelled'")
        .await[0]
        .parse()
        .unwrap();
    let expected = (Utc::now() - common::at(4, 12)).num_seconds();
    assert!(
        (open - expected).abs() <= 60,
        "open {open} s, expected about {expected} s"
    );
    r.done().await;
}

#[tokio::test]
async fn flow_efficiency_is_time_started_over_time_from_leaving_the_backlog_to_completion() {
    let r = reports().await;
    // started / elapsed per task:
    // WEB-2: in_progress 176400 + in_review 86400 = 262800 / 6/12 − 3/10 = 266400.
    // WEB-1: 86400 + 21600 + 86400 + 21600 = 216000 / 11/16 − 2/10 = 799200.
    // WEB-6: 86400 + 10800 + 64800 + 86400 = 248400 / 12/09 − 9/09 = 259200.
    // WEB-7: 259200 + 14400 = 273600 / 13/14 − 10/09 = 277200.
    // API-1: 82800 + 3600 = 86400 / 13/10 − 9/11 = 342000.
    // API-2: 165600 + 7200 = 172800 / 12/12 − 10/10 = 180000.
    // Week sums, then the ratio: 738000 / 1335600 = 0.5526; 259200 / 522000 = 0.4966.
    assert_eq!(
        r.rows(
            "SELECT project_id, week, completed, started_seconds, elapsed_seconds, round(flow_efficiency, 4) \
             FROM {r}.flow_efficiency WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | 2026-03-02 | 1 | 262800 | 266400 | 0.9865",
            "WEB | 2026-03-09 | 3 | 738000 | 1335600 | 0.5526",
            "API | 2026-03-09 | 2 | 259200 | 522000 | 0.4966",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn workload_is_open_unarchived_work_per_assignee_with_what_is_overdue() {
    let r = reports().await;
    // Open now: WEB-5 (cat, in_progress, due Mar 10: overdue) and API-3
    // (unassigned, backlog, no due date). WEB-4 (cat, todo, due Mar 5) is
    // archived; the rest are done or cancelled.
    assert_eq!(
        r.rows(
            "SELECT project_id, assignee_id, status, category, open_tasks, overdue_tasks \
             FROM {r}.workload_current WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | cat | in_progress | started | 1 | 1",
            "API | \\N | backlog | backlog | 1 | 0",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn mentions_count_once_per_comment_added_not_per_edit() {
    let r = reports().await;
    // added, edited, deleted, mentions, commenters:
    // Mar 9: ann adds C1 mentioning bob and cat (2).
    // Mar 10: ann edits C1, same mentions: counted as an edit, no mention.
    // Mar 11: bob adds C2 mentioning ann (1), cat adds C3 (none): 2
    //         commenters. C2, deleted on Mar 12, still counts here.
    // Mar 12: bob deletes C2.
    assert_eq!(
        r.rows(
            "SELECT project_id, day, comments_added, comments_edited, comments_deleted, mentions, commenters \
             FROM {r}.comment_activity_daily WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | 2026-03-09 | 1 | 0 | 0 | 2 | 1",
            "WEB | 2026-03-10 | 0 | 1 | 0 | 0 | 0",
            "WEB | 2026-03-11 | 2 | 0 | 0 | 1 | 2",
            "WEB | 2026-03-12 | 0 | 0 | 1 | 0 | 0",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn a_notification_counts_as_created_on_its_day_and_as_read_on_the_day_of_its_first_read() {
    let r = reports().await;
    // Assigned (by ann, to someone else): WEB-1 bob and WEB-2 bob Mar 2,
    // WEB-4 cat Mar 3, WEB-2 cat Mar 5, WEB-5 cat and WEB-6 cat Mar 9,
    // WEB-7 bob Mar 10, WEB-2 bob Mar 12. Mentioned: C1 bob and cat Mar 9,
    // C2 (by bob) ann Mar 11. Read: bob's WEB-1 assignment Mar 2; C1 by cat
    // Mar 10 and by bob Mar 11; C2 by ann Mar 11. Nothing delivered.
    assert_eq!(
        r.rows(
            "SELECT project_id, day, kind, created, read, delivered, avg_delivery_delay_seconds \
             FROM {r}.notifications_daily WHERE org_id = {A}"
        )
        .await,
        table(&[
            "WEB | 2026-03-02 | assigned | 2 | 1 | 0 | \\N",
            "WEB | 2026-03-03 | assigned | 1 | 0 | 0 | \\N",
            "WEB | 2026-03-05 | assigned | 1 | 0 | 0 | \\N",
            "WEB | 2026-03-09 | assigned | 2 | 0 | 0 | \\N",
            "WEB | 2026-03-09 | mentioned | 2 | 0 | 0 | \\N",
            "WEB | 2026-03-10 | assigned | 1 | 0 | 0 | \\N",
            "WEB | 2026-03-10 | mentioned | 0 | 1 | 0 | \\N",
            "WEB | 2026-03-11 | mentioned | 1 | 2 | 0 | \\N",
            "WEB | 2026-03-12 | assigned | 1 | 0 | 0 | \\N",
        ])
    );
    r.done().await;
}

#[tokio::test]
async fn org_level_events_carry_no_project() {
    let r = reports().await;
    // type, events, without project, without task, with a notification id.
    // Organization, membership, project-key and inbox events have no
    // project; project events have their own; TaskNumberReserved names its
    // task. Status changes: WEB-1 8, WEB-2 4, WEB-3 2, WEB-4 1, WEB-5 2,
    // WEB-6 6, WEB-7 4, API-1 4, API-2 4 = 35. Assignments: 6 at creation
    // (WEB-1, 2, 4, 5, 6, 7; none for WEB-3 and API-*) + WEB-2 to cat and
    // back to bob = 8.
    assert_eq!(
        r.rows(
            "SELECT event_type, count(), countIf(project_id IS NULL), countIf(task_id IS NULL), \
             countIf(notification_id IS NOT NULL) FROM {r}.event_log WHERE org_id = {A} GROUP BY event_type"
        )
        .await,
        table(&[
            "CommentAdded | 3 | 0 | 0 | 0",
            "CommentDeleted | 1 | 0 | 0 | 0",
            "CommentEdited | 1 | 0 | 0 | 0",
            "MemberAdded | 2 | 2 | 2 | 0",
            "NotificationRead | 4 | 4 | 4 | 4",
            "OrganizationCreated | 1 | 1 | 1 | 0",
            "ProjectCreated | 2 | 0 | 2 | 0",
            "ProjectKeyRegistered | 2 | 2 | 2 | 0",
            "TaskArchived | 1 | 0 | 0 | 0",
            "TaskAssigned | 8 | 0 | 0 | 0",
            "TaskCreated | 10 | 0 | 0 | 0",
            "TaskNumberReserved | 10 | 0 | 0 | 0",
            "TaskStatusChanged | 35 | 0 | 0 | 0",
        ])
    );
    assert_eq!(r.s.events[&r.s.org], 80);
    r.done().await;
}

#[tokio::test]
async fn every_event_of_the_log_is_in_the_event_log_once_in_log_order() {
    let r = reports().await;
    let events = r
        .log
        .store()
        .read_all(LogPosition::START, 10_000)
        .await
        .unwrap();
    let expected: Vec<String> = events
        .iter()
        .map(|e| format!("{} | {} | {}", e.event_id, e.stream_id, e.stream_version))
        .collect();
    let text = r
        .ch
        .tsv(&r.sql(
            "SELECT toString(event_id), stream_id, stream_version FROM {r}.event_log ORDER BY commit_id, event_seq",
        ))
        .await;
    let actual: Vec<String> = text.lines().map(|l| l.replace('\t', " | ")).collect();
    assert_eq!(actual, expected);
    assert_eq!(events.len(), r.s.events.values().sum::<usize>());
    r.done().await;
}

#[tokio::test]
async fn another_organizations_figures_never_appear_in_the_first_ones_rows() {
    let r = reports().await;
    for view in [
        "cumulative_flow_daily",
        "task_cycle",
        "cycle_time_weekly",
        "throughput_weekly",
        "created_vs_resolved_daily",
        "time_in_status",
        "flow_efficiency",
        "workload_current",
        "comment_activity_daily",
        "notifications_daily",
        "event_log",
    ] {
        let sql = format!(
            "SELECT count() FROM {{r}}.{view} WHERE (org_id = {{A}} AND project_id = {{OPS}}) \
             OR (org_id = {{B}} AND (project_id = {{WEB}} OR project_id = {{API}}))"
        );
        assert_eq!(r.rows(&sql).await, table(&["0"]), "{view}");
    }
    // B's own figures, on the same days as A's: OPS-1 created 2/09 assigned
    // yan, done 4/15 (lead 2/09 → 4/15 = 194400); zed's comment 9/12
    // mentioning yan, read 9/13.
    assert_eq!(
        r.rows("SELECT project_id, week, completed_by_assignee_id, completed FROM {r}.throughput_weekly WHERE org_id = {B}")
            .await,
        table(&["OPS | 2026-03-02 | yan | 1"])
    );
    assert_eq!(
        r.rows("SELECT task_key, lead_time_seconds FROM {r}.task_cycle WHERE org_id = {B}")
            .await,
        table(&["OPS-1 | 194400"])
    );
    assert_eq!(
        r.rows("SELECT project_id, day, kind, created, read FROM {r}.notifications_daily WHERE org_id = {B}")
            .await,
        table(&["OPS | 2026-03-02 | assigned | 1 | 0", "OPS | 2026-03-09 | mentioned | 1 | 1"])
    );
    assert_eq!(
        r.rows("SELECT project_id, day, comments_added, mentions, commenters FROM {r}.comment_activity_daily WHERE org_id = {B}")
            .await,
        table(&["OPS | 2026-03-09 | 1 | 1 | 1"])
    );
    assert_eq!(
        r.rows("SELECT count() FROM {r}.event_log WHERE org_id = {B}")
            .await,
        table(&[&r.s.events[&r.s.other_org].to_string()])
    );
    assert_eq!(r.s.events[&r.s.other_org], 13);
    r.done().await;
}

/// Two tasks of a workflow the default one does not allow (the events are
/// appended as they are, as a custom workflow would produce them): X goes
/// todo → done at once, never started; Y goes todo 3/09 → in_progress 3/10
/// → done 4/10 → cancelled 5/10.
async fn outside_the_default_workflow() -> (TestDatabase, TestClickHouse, uuid::Uuid) {
    use tasklog_domain::*;
    let (db, pool) = TestDatabase::migrated("reports").await;
    let ch = TestClickHouse::migrated().await;
    let log = EventLog::new(&pool);
    let (org, ann, project) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let by = |day, hour| tasklog_testkit::By {
        org,
        actor: ann,
        at: common::at(day, hour),
    };
    let change = |from: &str, fc, to: &str, tc| {
        TaskEvent::from(TaskStatusChanged {
            from: from.into(),
            to: to.into(),
            from_category: fc,
            to_category: tc,
        })
    };
    use StatusCategory::*;
    let mut head = LogPosition::START;
    for (number, moves) in [
        (
            1,
            vec![((4, 10), change("todo", Unstarted, "done", Completed))],
        ),
        (
            2,
            vec![
                ((3, 10), change("todo", Unstarted, "in_progress", Started)),
                ((4, 10), change("in_progress", Started, "done", Completed)),
                ((5, 10), change("done", Completed, "cancelled", Cancelled)),
            ],
        ),
    ] {
        let task = uuid::Uuid::now_v7();
        let stream = format!("task-{task}");
        let created = TaskEvent::from(TaskCreated {
            task_id: task,
            org_id: org,
            project_id: project,
            number,
            key: format!("X-{number}"),
            title: "t".into(),
            description: String::new(),
            priority: Priority::None,
            due_date: None,
            status: "todo".into(),
            status_category: Unstarted,
            created_by: ann,
        });
        head = log.append(&stream, by(3, 9), [created]).await.position;
        for ((day, hour), event) in moves {
            head = log.append(&stream, by(day, hour), [event]).await.position;
        }
    }
    common::project(&pool, &log, &ch.config, head).await;
    (db, ch, org)
}

#[tokio::test]
async fn done_to_cancelled_is_not_a_reopening() {
    let (db, ch, org) = outside_the_default_workflow().await;
    let r = &ch.config.reporting;
    // X-2 leaves done for cancelled on Mar 5: a cancellation, not a
    // reopening (it never becomes open again).
    assert_eq!(
        ch.tsv(&format!(
            "SELECT task_key, times_reopened, cancelled_at, completed_at FROM {r}.task_cycle \
             WHERE org_id = toUUID('{org}') ORDER BY task_key"
        ))
        .await,
        "X-1\t0\t\\N\t2026-03-04 10:00:00\nX-2\t0\t2026-03-05 10:00:00\t\\N\n"
    );
    assert_eq!(
        ch.tsv(&format!(
            "SELECT day, completed, cancelled, reopened FROM {r}.created_vs_resolved_daily \
             WHERE org_id = toUUID('{org}') AND day BETWEEN '2026-03-03' AND '2026-03-05' ORDER BY day"
        ))
        .await,
        "2026-03-03\t0\t0\t0\n2026-03-04\t1\t0\t0\n2026-03-05\t0\t1\t0\n"
    );
    drop(ch);
    db.drop_database().await;
}

#[tokio::test]
async fn a_task_that_never_started_has_no_cycle_time() {
    let (db, ch, org) = outside_the_default_workflow().await;
    let r = &ch.config.reporting;
    // lead 4/10 − 3/09 = 90000 s; never started, so no cycle time and
    // no cycle sample: the week's cycle percentiles are NULL, not 0.
    assert_eq!(
        ch.tsv(&format!(
            "SELECT task_key, lead_time_seconds, cycle_time_seconds FROM {r}.task_cycle \
             WHERE org_id = toUUID('{org}') AND task_key = 'X-1'"
        ))
        .await,
        "X-1\t90000\t\\N\n"
    );
    assert_eq!(
        ch.tsv(&format!(
            "SELECT week, completed, lead_time_p50_seconds, cycle_samples, cycle_time_p50_seconds, \
             cycle_time_p95_seconds FROM {r}.cycle_time_weekly WHERE org_id = toUUID('{org}')"
        ))
        .await,
        "2026-03-02\t1\t90000\t0\t\\N\t\\N\n"
    );
    drop(ch);
    db.drop_database().await;
}
