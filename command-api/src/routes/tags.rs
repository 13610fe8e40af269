//! The organization's tag catalog.

use axum::extract::State;
use axum::http::StatusCode;
use tasklog_domain::{TagCatalog, TagCommand};
use tasklog_http::Method::{Delete, Patch, Post};
use tasklog_http::{Api, ApiError, AppJson, AppPath, Caller};
use uuid::Uuid;

use crate::bodies;
use crate::extract::CommandMeta;
use crate::openapi::command;
use crate::service::{Accepted, Access, AppState, Context};

pub fn routes(api: &mut Api<AppState>) {
    command(
        Post,
        "/v1/orgs/{org}/tags",
        "createTag",
        "tags",
        "Create a tag.",
    )
    .body::<bodies::CreateTag>()
    .if_match("tag catalog")
    .created()
    .described("Members, admins and owners. Names are unique in the organization.")
    .mount(api, create_tag);
    command(
        Patch,
        "/v1/orgs/{org}/tags/{tag}",
        "renameTag",
        "tags",
        "Rename a tag.",
    )
    .body::<bodies::RenameTag>()
    .if_match("tag catalog")
    .described("Admins and owners only.")
    .mount(api, rename_tag);
    command(
        Delete,
        "/v1/orgs/{org}/tags/{tag}",
        "deleteTag",
        "tags",
        "Delete a tag.",
    )
    .if_match("tag catalog")
    .described("Admins and owners only.")
    .mount(api, delete_tag);
}

async fn change_catalog(
    app: AppState,
    caller: Caller,
    meta: CommandMeta,
    org_id: Uuid,
    access: Access,
    (status, tag_id): (StatusCode, Uuid),
    command: TagCommand,
) -> Result<Accepted, ApiError> {
    app.authorize(&caller, org_id, access).await?;
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    // The catalog's stream is keyed by the organization: one per organization.
    let done = app
        .execute::<TagCatalog>(&ctx, org_id, meta.if_match, |_| Ok(command.clone()))
        .await?;
    Ok(Accepted::new(status, tag_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id))]
async fn create_tag(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(org_id): AppPath<Uuid>,
    AppJson(body): AppJson<bodies::CreateTag>,
) -> Result<Accepted, ApiError> {
    let tag_id = meta.ids.id("tag", 0);
    let command = TagCommand::CreateTag {
        tag_id,
        name: body.name,
        color: body.color,
    };
    change_catalog(
        app,
        caller,
        meta,
        org_id,
        Access::Write,
        (StatusCode::CREATED, tag_id),
        command,
    )
    .await
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn rename_tag(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, tag_id)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<bodies::RenameTag>,
) -> Result<Accepted, ApiError> {
    let command = TagCommand::RenameTag {
        tag_id,
        name: body.name,
    };
    change_catalog(
        app,
        caller,
        meta,
        org_id,
        Access::Admin,
        (StatusCode::OK, tag_id),
        command,
    )
    .await
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn delete_tag(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, tag_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    let command = TagCommand::DeleteTag { tag_id };
    change_catalog(
        app,
        caller,
        meta,
        org_id,
        Access::Admin,
        (StatusCode::OK, tag_id),
        command,
    )
    .await
}
