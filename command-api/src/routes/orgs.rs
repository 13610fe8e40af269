//! Organizations and their members.

use axum::extract::State;
use axum::http::StatusCode;
use tasklog_domain::{OrgCommand, Organization};
use tasklog_http::Method::{Delete, Patch, Post};
use tasklog_http::{Api, ApiError, AppJson, AppPath, Caller};
use uuid::Uuid;

use crate::bodies;
use crate::extract::CommandMeta;
use crate::openapi::command;
use crate::service::{Accepted, Access, AppState, Context, Executed};

pub fn routes(api: &mut Api<AppState>) {
    command(
        Post,
        "/v1/orgs",
        "createOrganization",
        "organizations",
        "Create an organization, owned by the caller.",
    )
    .unauthorized()
    .body::<bodies::CreateOrganization>()
    .created()
    .described(
        "Any authenticated user may create one. The owner's handle is `owner_handle`, \
         or the token's `preferred_username`.",
    )
    .mount(api, create_organization);
    command(
        Post,
        "/v1/orgs/{org}/members",
        "addMember",
        "organizations",
        "Add a member.",
    )
    .body::<bodies::AddMember>()
    .if_match("organization")
    .created()
    .described("Admins and owners only.")
    .mount(api, add_member);
    command(
        Patch,
        "/v1/orgs/{org}/members/{user}",
        "changeMemberRole",
        "organizations",
        "Change a member's role.",
    )
    .body::<bodies::ChangeMemberRole>()
    .if_match("organization")
    .described("Admins and owners only; the last owner stays an owner.")
    .mount(api, change_member_role);
    command(
        Delete,
        "/v1/orgs/{org}/members/{user}",
        "removeMember",
        "organizations",
        "Remove a member.",
    )
    .if_match("organization")
    .described("Admins and owners only; the last owner cannot be removed.")
    .mount(api, remove_member);
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn create_organization(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppJson(body): AppJson<bodies::CreateOrganization>,
) -> Result<Accepted, ApiError> {
    let org_id = meta.ids.id("org", 0);
    let owner_handle = body
        .owner_handle
        .or_else(|| caller.handle.clone())
        .ok_or_else(|| {
            ApiError::validation(
                "owner_handle",
                "required when the token has no preferred_username",
            )
        })?;
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let done = app
        .execute::<Organization>(&ctx, org_id, None, |_| {
            Ok(OrgCommand::CreateOrganization {
                org_id,
                name: body.name.clone(),
                owner_id: caller.user_id,
                owner_handle: owner_handle.clone(),
            })
        })
        .await?;
    Ok(Accepted::new(StatusCode::CREATED, org_id, &done))
}

/// Runs a membership command: admins only (the domain adds the owner rules),
/// decided first against the organization the authorization already loaded.
async fn change_membership(
    app: &AppState,
    caller: &Caller,
    meta: &CommandMeta,
    org_id: Uuid,
    command: OrgCommand,
) -> Result<Executed<Organization>, ApiError> {
    let org = app.authorize(caller, org_id, Access::Admin).await?;
    let ctx = Context {
        meta,
        caller,
        org_id,
    };
    app.execute_loaded::<Organization>(&ctx, org_id, Some(org), meta.if_match, |_| {
        Ok(command.clone())
    })
    .await
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id))]
async fn add_member(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(org_id): AppPath<Uuid>,
    AppJson(body): AppJson<bodies::AddMember>,
) -> Result<Accepted, ApiError> {
    let command = OrgCommand::AddMember {
        by: caller.user_id,
        user_id: body.user_id,
        handle: body.handle,
        role: body.role,
    };
    let done = change_membership(&app, &caller, &meta, org_id, command).await?;
    Ok(Accepted::new(StatusCode::CREATED, body.user_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id, %user_id))]
async fn change_member_role(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, user_id)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<bodies::ChangeMemberRole>,
) -> Result<Accepted, ApiError> {
    let command = OrgCommand::ChangeMemberRole {
        by: caller.user_id,
        user_id,
        role: body.role,
    };
    let done = change_membership(&app, &caller, &meta, org_id, command).await?;
    Ok(Accepted::new(StatusCode::OK, user_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id, %user_id))]
async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, user_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    let command = OrgCommand::RemoveMember {
        by: caller.user_id,
        user_id,
    };
    let done = change_membership(&app, &caller, &meta, org_id, command).await?;
    Ok(Accepted::new(StatusCode::OK, user_id, &done))
}
