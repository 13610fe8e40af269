//! The caller's own inbox.

use axum::extract::State;
use axum::http::StatusCode;
use tasklog_domain::{inbox_id, Inbox, InboxCommand};
use tasklog_http::Method::Post;
use tasklog_http::{Api, ApiError, AppPath, Caller};
use uuid::Uuid;

use crate::extract::CommandMeta;
use crate::openapi::command;
use crate::service::{Accepted, Access, AppState, Context};

pub fn routes(api: &mut Api<AppState>) {
    command(
        Post,
        "/v1/orgs/{org}/me/notifications/{notification}/read",
        "markNotificationRead",
        "notifications",
        "Mark one of the caller's notifications read.",
    )
    .if_match("inbox")
    .described("Any member, viewers included.")
    .mount(api, mark_notification_read);
}

/// Any member, viewers included, may mark their own notifications read.
#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id))]
async fn mark_notification_read(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, notification_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    app.authorize(&caller, org_id, Access::Member).await?;
    if !app
        .notification_is_callers(org_id, caller.user_id, notification_id)
        .await?
    {
        return Err(ApiError::NotFound("notification".into()));
    }
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let done = app
        .execute::<Inbox>(
            &ctx,
            inbox_id(org_id, caller.user_id),
            meta.if_match,
            |_| Ok(InboxCommand::MarkNotificationRead { notification_id }),
        )
        .await?;
    Ok(Accepted::new(StatusCode::OK, notification_id, &done))
}

impl AppState {
    /// Whether the caller has this notification in this organization.
    /// Notifications are derived by the read side from the events that cause
    /// them, and a client learns a notification's id only from there: so the
    /// read model is where its existence and its owner are checked.
    async fn notification_is_callers(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        notification_id: Uuid,
    ) -> Result<bool, ApiError> {
        let found = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM read.notifications \
             WHERE notification_id = $1 AND user_id = $2 AND org_id = $3)",
        )
        .bind(notification_id)
        .bind(user_id)
        .bind(org_id)
        .fetch_one(&self.pool)
        .await;
        match found {
            Ok(found) => Ok(found),
            // The projection has not been built yet: it knows no notification.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
