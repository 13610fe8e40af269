//! The organization's reports, read from the reporting views in ClickHouse.
//!
//! Like every read: the caller must be a member of the organization (403 at
//! once otherwise, whether or not it exists), decided before the rest of the
//! request is checked and before any wait; `X-Consistency-Token` waits for
//! the `analytics` projection. A project of another organization, or none,
//! has no rows, exactly like a project without any.

use axum::extract::State;
use axum::Json;
use chrono::Datelike;
use schemars::JsonSchema;
use serde::Deserialize;
use tasklog_domain::FieldError;
use tasklog_http::query::{bad_param, ParamDate, ParamUuid};
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::consistency::{Consistency, ReadModel};
use crate::openapi::read;
use crate::reports::{Days, ReportError, Reports};
use crate::views::{
    CreatedVsResolvedRow, CumulativeFlowRow, CycleTimeRow, RangeReport, ThroughputRow,
    WorkloadReport,
};
use crate::QueryState;

const READS: &[ReadModel] = &[ReadModel::Analytics];

/// The years a report's dates may have: the days every ClickHouse `Date` holds.
pub const REPORT_YEARS: std::ops::RangeInclusive<i32> = 1970..=2099;
/// The longest range of a daily report, in days (both ends included).
pub const MAX_DAILY_DAYS: i64 = 366;
/// The longest range of a weekly report, in days (both ends included):
/// three years, however many leap days they hold.
pub const MAX_WEEKLY_DAYS: i64 = 3 * 366;

pub fn routes(api: &mut Api<QueryState>) {
    read::<RangeReport<CumulativeFlowRow>>(
        "/v1/orgs/{org}/reports/cumulative-flow",
        "getCumulativeFlow",
        "reports",
        "Tasks per status at the end of each day of a project.",
    )
    .query::<RangeParams>()
    .described(
        "The rows of `cumulative_flow_daily` for the days from `from` to `to` (at most 366), \
         by day, then status.",
    )
    .mount(api, cumulative_flow);
    read::<RangeReport<CycleTimeRow>>(
        "/v1/orgs/{org}/reports/cycle-time",
        "getCycleTime",
        "reports",
        "Lead and cycle time percentiles per week of a project.",
    )
    .query::<RangeParams>()
    .described(
        "The rows of `cycle_time_weekly` for the weeks that overlap `from` to `to` (at most \
         1098 days): from the Monday of `from`'s week to the last Monday not after `to`.",
    )
    .mount(api, cycle_time);
    read::<RangeReport<ThroughputRow>>(
        "/v1/orgs/{org}/reports/throughput",
        "getThroughput",
        "reports",
        "Tasks completed per week and assignee of a project.",
    )
    .query::<RangeParams>()
    .described(
        "The rows of `throughput_weekly` for the weeks that overlap `from` to `to` (at most \
         1098 days), by week, then assignee (unassigned last).",
    )
    .mount(api, throughput);
    read::<RangeReport<CreatedVsResolvedRow>>(
        "/v1/orgs/{org}/reports/created-vs-resolved",
        "getCreatedVsResolved",
        "reports",
        "Tasks created, completed, cancelled, reopened and archived per day of a project.",
    )
    .query::<RangeParams>()
    .described(
        "The rows of `created_vs_resolved_daily` for the days from `from` to `to` (at most 366).",
    )
    .mount(api, created_vs_resolved);
    read::<WorkloadReport>(
        "/v1/orgs/{org}/reports/workload",
        "getWorkload",
        "reports",
        "Open tasks now, per project, assignee and status.",
    )
    .query::<WorkloadParams>()
    .described(
        "The rows of `workload_current` of one project, or of the whole organization without \
         `project`.",
    )
    .mount(api, workload);
}

/// The query parameters of a report over a range of days.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RangeParams {
    // Each is required, yet read as optional (absent is None): a missing one
    // is our own 422 naming it, given only to a member.
    /// The project (required).
    #[schemars(required)]
    #[schemars(with = "ParamUuid", example = &"0190a0a0-0000-7000-8000-000000000000")]
    project: Option<ParamUuid>,
    /// The first day, `YYYY-MM-DD` (UTC), from 1970-01-01 to 2099-12-31 (required).
    #[schemars(required)]
    #[schemars(with = "ParamDate", example = &"2026-03-01")]
    from: Option<ParamDate>,
    /// The last day, `YYYY-MM-DD` (UTC), not before `from` (required).
    #[schemars(required)]
    #[schemars(with = "ParamDate", example = &"2026-03-31")]
    to: Option<ParamDate>,
}

/// The query parameters of the workload report.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WorkloadParams {
    /// Only this project; the whole organization without it.
    #[serde(default)]
    #[schemars(with = "ParamUuid", example = &"0190a0a0-0000-7000-8000-000000000000")]
    project: Option<ParamUuid>,
}

/// How long a report's range may be.
#[derive(Clone, Copy, Debug)]
enum Span {
    Daily,
    Weekly,
}

impl Span {
    fn max_days(self) -> i64 {
        match self {
            Self::Daily => MAX_DAILY_DAYS,
            Self::Weekly => MAX_WEEKLY_DAYS,
        }
    }
}

impl RangeParams {
    /// The project and days asked for, or 422 naming every parameter at fault.
    fn check(&self, span: Span) -> Result<(Uuid, Days), ApiError> {
        let mut errors = Vec::new();
        let mut refuse = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        if self.project.is_none() {
            refuse("project", "is required".into());
        }
        let mut day = |name: &str, given: Option<ParamDate>| match given {
            None => {
                refuse(name, "is required".into());
                None
            }
            Some(ParamDate(d)) if !REPORT_YEARS.contains(&d.year()) => {
                refuse(name, "must be a day from 1970-01-01 to 2099-12-31".into());
                None
            }
            Some(ParamDate(d)) => Some(d),
        };
        let from = day("from", self.from);
        let to = day("to", self.to);
        if let (Some(from), Some(to)) = (from, to) {
            let days = (to - from).num_days() + 1;
            if to < from {
                refuse("to", "must not be before from".into());
            } else if days > span.max_days() {
                refuse(
                    "to",
                    format!(
                        "must make a range of at most {} days with from (both included), not {days}",
                        span.max_days()
                    ),
                );
            }
        }
        match (self.project, from, to, errors.len()) {
            (Some(ParamUuid(project)), Some(from), Some(to), 0) => Ok((project, Days { from, to })),
            (_, _, _, 1) => {
                let e = errors.remove(0);
                Err(bad_param(&e.field, e.message))
            }
            _ => Err(ApiError::Validation {
                detail: format!(
                    "query parameters {}: not valid",
                    errors
                        .iter()
                        .map(|e| format!("`{}`", e.field))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                errors,
            }),
        }
    }
}

/// Who may read first (before anything else is checked or waited for),
/// then `check` the request, then wait for the token: the reports and what
/// `check` made of the request.
async fn admit<T>(
    state: &QueryState,
    caller: &Caller,
    org: Uuid,
    consistency: Consistency,
    check: impl FnOnce() -> Result<T, ApiError>,
) -> Result<(Reports, T), ApiError> {
    let admission = state.authorize(caller, org, consistency).await?;
    let checked = check()?;
    let reports = state.reports.clone().ok_or(ReportError::NotConfigured)?;
    state.settle(caller, org, admission, READS).await?;
    Ok((reports, checked))
}

fn range_report<R>(project: Uuid, days: Days, rows: Vec<R>) -> Json<RangeReport<R>> {
    Json(RangeReport {
        project,
        from: days.from,
        to: days.to,
        rows,
    })
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn cumulative_flow(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<RangeParams>,
) -> Result<Json<RangeReport<CumulativeFlowRow>>, ApiError> {
    let (reports, (project, days)) = admit(&state, &caller, org, consistency, || {
        params.check(Span::Daily)
    })
    .await?;
    let rows = reports.cumulative_flow(org, project, days).await?;
    Ok(range_report(project, days, rows))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn cycle_time(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<RangeParams>,
) -> Result<Json<RangeReport<CycleTimeRow>>, ApiError> {
    let (reports, (project, days)) = admit(&state, &caller, org, consistency, || {
        params.check(Span::Weekly)
    })
    .await?;
    let rows = reports.cycle_time(org, project, days).await?;
    Ok(range_report(project, days, rows))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn throughput(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<RangeParams>,
) -> Result<Json<RangeReport<ThroughputRow>>, ApiError> {
    let (reports, (project, days)) = admit(&state, &caller, org, consistency, || {
        params.check(Span::Weekly)
    })
    .await?;
    let rows = reports.throughput(org, project, days).await?;
    Ok(range_report(project, days, rows))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn created_vs_resolved(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<RangeParams>,
) -> Result<Json<RangeReport<CreatedVsResolvedRow>>, ApiError> {
    let (reports, (project, days)) = admit(&state, &caller, org, consistency, || {
        params.check(Span::Daily)
    })
    .await?;
    let rows = reports.created_vs_resolved(org, project, days).await?;
    Ok(range_report(project, days, rows))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn workload(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<WorkloadParams>,
) -> Result<Json<WorkloadReport>, ApiError> {
    let project = params.project.map(|ParamUuid(p)| p);
    let (reports, ()) = admit(&state, &caller, org, consistency, || Ok(())).await?;
    let rows = reports.workload(org, project).await?;
    Ok(Json(WorkloadReport { project, rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn params(project: bool, from: Option<&str>, to: Option<&str>) -> RangeParams {
        let date = |s: &str| ParamDate(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
        RangeParams {
            project: project.then(|| ParamUuid(Uuid::now_v7())),
            from: from.map(date),
            to: to.map(date),
        }
    }

    fn fields(e: ApiError) -> Vec<(String, String)> {
        match e {
            ApiError::Validation { errors, .. } => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_range_is_required_ordered_bounded_and_within_the_years_clickhouse_holds() {
        let ok = params(true, Some("2026-01-01"), Some("2026-12-31"));
        assert!(ok.check(Span::Daily).is_ok(), "365 days");
        let leap = params(true, Some("2024-01-01"), Some("2024-12-31"));
        assert!(leap.check(Span::Daily).is_ok(), "366 days");
        let over = params(true, Some("2024-01-01"), Some("2025-01-01"));
        assert_eq!(fields(over.check(Span::Daily).unwrap_err())[0].0, "to");
        assert!(over.check(Span::Weekly).is_ok());
        let three_years = params(true, Some("2023-01-01"), Some("2026-01-01"));
        assert!(three_years.check(Span::Weekly).is_ok());
        let more = params(true, Some("2022-01-01"), Some("2026-01-01"));
        assert_eq!(fields(more.check(Span::Weekly).unwrap_err())[0].0, "to");
        let backwards = params(true, Some("2026-02-01"), Some("2026-01-31"));
        assert_eq!(
            fields(backwards.check(Span::Daily).unwrap_err()),
            [("to".to_owned(), "must not be before from".to_owned())]
        );
        let ancient = params(true, Some("1969-12-31"), Some("1970-01-01"));
        assert_eq!(fields(ancient.check(Span::Daily).unwrap_err())[0].0, "from");
        let future = params(true, Some("2099-12-31"), Some("2100-01-01"));
        assert_eq!(fields(future.check(Span::Daily).unwrap_err())[0].0, "to");
        let nothing = params(false, None, None);
        let missing: Vec<String> = fields(nothing.check(Span::Daily).unwrap_err())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(missing, ["project", "from", "to"]);
    }
}
