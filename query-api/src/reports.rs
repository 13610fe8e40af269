//! The reports: read from the reporting views in ClickHouse (the views
//! analysts read, `docs/reporting.md`), one organization at a time.
//!
//! Every statement filters by `org_id` (and `project_id` when given), with
//! the caller's values bound client-side by the `clickhouse` crate (quoted
//! and escaped: ClickHouse 18.16 has no server-side parameters) and compared
//! through `toUUID(?)` and `toDate(?)`. The database name is bound as an
//! identifier. ClickHouse is only ever reached by a report request: not at
//! start, not by readiness.

use std::time::Duration;

use chrono::NaiveDate;
use clickhouse::sql::Identifier;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use tasklog_domain::StatusCategory;
use tasklog_http::ApiError;
use uuid::Uuid;

use crate::views::{
    CreatedVsResolvedRow, CumulativeFlowRow, CycleTimeRow, ThroughputRow, WorkloadRow,
};

/// Where the reports are read: a ClickHouse client and the database of the
/// reporting views.
#[derive(Clone)]
pub struct Reports {
    client: clickhouse::Client,
    database: String,
    timeout: Duration,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a report could not be read. Every one is the analytics store's
/// problem, not the request's: 503 `analytics_unavailable`, retry.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No ClickHouse is configured for this server.
    #[error("no analytics store is configured")]
    NotConfigured,
    /// ClickHouse did not answer within the timeout.
    #[error("ClickHouse did not answer within {0:?}")]
    TimedOut(Duration),
    /// ClickHouse is out of reach or refused the statement.
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// A row that does not fit the view's documented shape.
    #[error("a reporting view's row: {0}")]
    Shape(String),
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match &e {
            ReportError::NotConfigured => {
                tracing::warn!("a report was asked for, but no ClickHouse is configured");
            }
            // A view that no longer answers the shape the API reads is a bug
            // (a migration), not an outage; it still leaves every other route be.
            ReportError::Shape(_) => tracing::error!(error = ?e, "reading a report"),
            _ => tracing::warn!(error = ?e, "reading a report"),
        }
        ApiError::AnalyticsUnavailable(
            "the reports are unavailable (the analytics store does not answer); retry shortly"
                .into(),
        )
    }
}

/// An inclusive range of days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Reports {
    /// Reports read through `client` from the views in `database` (the
    /// configured reporting database), each read bounded by `timeout`.
    pub fn new(client: clickhouse::Client, database: impl Into<String>, timeout: Duration) -> Self {
        Self {
            client,
            database: database.into(),
            timeout,
        }
    }

    /// The reporting views' database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `sql` (which names the view's database with the first `?`), with
    /// the database and `binds` bound, its rows read within the timeout.
    async fn rows<T>(&self, sql: &str, binds: &[String]) -> Result<Vec<T>, ReportError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let mut query = self.client.query(sql).bind(Identifier(&self.database));
        for value in binds {
            query = query.bind(value.as_str());
        }
        tokio::time::timeout(self.timeout, query.fetch_all::<T>())
            .await
            .map_err(|_| ReportError::TimedOut(self.timeout))?
            .map_err(ReportError::from)
    }

    /// `cumulative_flow_daily` of a project, day by day, statuses by name.
    pub async fn cumulative_flow(
        &self,
        org: Uuid,
        project: Uuid,
        days: Days,
    ) -> Result<Vec<CumulativeFlowRow>, ReportError> {
        let rows: Vec<FlowRow> = self
            .rows(
                "SELECT day, status, category, tasks
                   FROM ?.cumulative_flow_daily
                  WHERE org_id = toUUID(?) AND project_id = toUUID(?)
                    AND day >= toDate(?) AND day <= toDate(?)
                  ORDER BY day, status",
                &binds(org, Some(project), Some(days)),
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(CumulativeFlowRow {
                    day: r.day,
                    status: r.status,
                    category: category(&r.category)?,
                    tasks: r.tasks,
                })
            })
            .collect()
    }

    /// `cycle_time_weekly` of a project: the weeks whose Monday is from the
    /// Monday of `days.from` to `days.to`.
    pub async fn cycle_time(
        &self,
        org: Uuid,
        project: Uuid,
        days: Days,
    ) -> Result<Vec<CycleTimeRow>, ReportError> {
        let rows: Vec<CycleRow> = self
            .rows(
                "SELECT week, completed,
                        lead_time_p50_seconds, lead_time_p85_seconds, lead_time_p95_seconds,
                        cycle_samples,
                        cycle_time_p50_seconds, cycle_time_p85_seconds, cycle_time_p95_seconds
                   FROM ?.cycle_time_weekly
                  WHERE org_id = toUUID(?) AND project_id = toUUID(?)
                    AND week >= toMonday(toDate(?)) AND week <= toDate(?)
                  ORDER BY week",
                &binds(org, Some(project), Some(days)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| CycleTimeRow {
                week: r.week,
                completed: r.completed,
                lead_time_p50_seconds: r.lead_p50,
                lead_time_p85_seconds: r.lead_p85,
                lead_time_p95_seconds: r.lead_p95,
                cycle_samples: r.cycle_samples,
                cycle_time_p50_seconds: r.cycle_p50,
                cycle_time_p85_seconds: r.cycle_p85,
                cycle_time_p95_seconds: r.cycle_p95,
            })
            .collect())
    }

    /// `throughput_weekly` of a project: weeks as [`Self::cycle_time`] takes them.
    pub async fn throughput(
        &self,
        org: Uuid,
        project: Uuid,
        days: Days,
    ) -> Result<Vec<ThroughputRow>, ReportError> {
        let rows: Vec<WeekRow> = self
            .rows(
                "SELECT week, completed_by_assignee_id, completed
                   FROM ?.throughput_weekly
                  WHERE org_id = toUUID(?) AND project_id = toUUID(?)
                    AND week >= toMonday(toDate(?)) AND week <= toDate(?)
                  ORDER BY week, completed_by_assignee_id",
                &binds(org, Some(project), Some(days)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ThroughputRow {
                week: r.week,
                assignee: r.assignee,
                completed: r.completed,
            })
            .collect())
    }

    /// `created_vs_resolved_daily` of a project, day by day.
    pub async fn created_vs_resolved(
        &self,
        org: Uuid,
        project: Uuid,
        days: Days,
    ) -> Result<Vec<CreatedVsResolvedRow>, ReportError> {
        let rows: Vec<ResolvedRow> = self
            .rows(
                "SELECT day, created, completed, cancelled, reopened, archived
                   FROM ?.created_vs_resolved_daily
                  WHERE org_id = toUUID(?) AND project_id = toUUID(?)
                    AND day >= toDate(?) AND day <= toDate(?)
                  ORDER BY day",
                &binds(org, Some(project), Some(days)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| CreatedVsResolvedRow {
                day: r.day,
                created: r.created,
                completed: r.completed,
                cancelled: r.cancelled,
                reopened: r.reopened,
                archived: r.archived,
            })
            .collect())
    }

    /// `workload_current` of one project, or of the whole organization.
    pub async fn workload(
        &self,
        org: Uuid,
        project: Option<Uuid>,
    ) -> Result<Vec<WorkloadRow>, ReportError> {
        let sql = if project.is_some() {
            "SELECT project_id, assignee_id, status, category, open_tasks, overdue_tasks
               FROM ?.workload_current
              WHERE org_id = toUUID(?) AND project_id = toUUID(?)
              ORDER BY project_id, assignee_id, status"
        } else {
            "SELECT project_id, assignee_id, status, category, open_tasks, overdue_tasks
               FROM ?.workload_current
              WHERE org_id = toUUID(?)
              ORDER BY project_id, assignee_id, status"
        };
        let rows: Vec<LoadRow> = self.rows(sql, &binds(org, project, None)).await?;
        rows.into_iter()
            .map(|r| {
                Ok(WorkloadRow {
                    project: r.project,
                    assignee: r.assignee,
                    status: r.status,
                    category: category(&r.category)?,
                    open_tasks: r.open_tasks,
                    overdue_tasks: r.overdue_tasks,
                })
            })
            .collect()
    }
}

/// The values bound after the database, in the order the statements name them.
fn binds(org: Uuid, project: Option<Uuid>, days: Option<Days>) -> Vec<String> {
    let mut values = vec![org.to_string()];
    values.extend(project.map(|p| p.to_string()));
    if let Some(Days { from, to }) = days {
        // `YYYY-MM-DD`: the range is checked at the edge (years 1970 to 2099).
        values.push(from.format("%Y-%m-%d").to_string());
        values.push(to.format("%Y-%m-%d").to_string());
    }
    values
}

/// A status category as a view stores it (its JSON name).
fn category(name: &str) -> Result<StatusCategory, ReportError> {
    parse::<StatusCategory>(name).map_err(|e| ReportError::Shape(format!("category {name:?}: {e}")))
}

fn parse<T: DeserializeOwned>(name: &str) -> Result<T, serde::de::value::Error> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name))
}

// The views' rows as RowBinary carries them, column for column in the order
// the statements select them; types as docs/reporting.md states them.

#[derive(clickhouse::Row, Deserialize)]
struct FlowRow {
    #[serde(with = "clickhouse::serde::chrono::date")]
    day: NaiveDate,
    status: String,
    category: String,
    tasks: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct CycleRow {
    #[serde(with = "clickhouse::serde::chrono::date")]
    week: NaiveDate,
    completed: u64,
    lead_p50: i64,
    lead_p85: i64,
    lead_p95: i64,
    cycle_samples: u64,
    cycle_p50: Option<i64>,
    cycle_p85: Option<i64>,
    cycle_p95: Option<i64>,
}

#[derive(clickhouse::Row, Deserialize)]
struct WeekRow {
    #[serde(with = "clickhouse::serde::chrono::date")]
    week: NaiveDate,
    #[serde(with = "clickhouse::serde::uuid::option")]
    assignee: Option<Uuid>,
    completed: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct ResolvedRow {
    #[serde(with = "clickhouse::serde::chrono::date")]
    day: NaiveDate,
    created: u64,
    completed: u64,
    cancelled: u64,
    reopened: u64,
    archived: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct LoadRow {
    #[serde(with = "clickhouse::serde::uuid")]
    project: Uuid,
    #[serde(with = "clickhouse::serde::uuid::option")]
    assignee: Option<Uuid>,
    status: String,
    category: String,
    open_tasks: u64,
    overdue_tasks: u64,
}
