//! The caller's own inbox.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tasklog_domain::{Inbox, InboxCommand};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppPath, CommandMeta};
use crate::service::{Accepted, Access, AppState, Context};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/orgs/{org}/me/notifications/{notification}/read",
        post(mark_notification_read),
    )
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
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let done = app
        .execute::<Inbox>(&ctx, caller.user_id, meta.if_match, |_| {
            Ok(InboxCommand::MarkNotificationRead { notification_id })
        })
        .await?;
    Ok(Accepted::new(StatusCode::OK, notification_id, &done))
}
