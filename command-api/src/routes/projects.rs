//! Projects.

use axum::extract::State;
use axum::http::StatusCode;
use tasklog_domain::{Aggregate, OrgCommand, Organization, Project, ProjectCommand};
use tasklog_http::Method::{Patch, Post};
use tasklog_http::{Api, ApiError, AppJson, AppPath, Caller};
use uuid::Uuid;

use crate::bodies;
use crate::extract::CommandMeta;
use crate::openapi::command;
use crate::service::{Accepted, Access, AppState, Context, Loaded};

pub fn routes(api: &mut Api<AppState>) {
    command(
        Post,
        "/v1/orgs/{org}/projects",
        "createProject",
        "projects",
        "Create a project.",
    )
    .body::<bodies::CreateProject>()
    .created()
    .described("Admins and owners only. The key is unique in the organization.")
    .mount(api, create_project);
    command(
        Patch,
        "/v1/orgs/{org}/projects/{project}",
        "renameProject",
        "projects",
        "Rename a project.",
    )
    .body::<bodies::RenameProject>()
    .if_match("project")
    .mount(api, rename_project);
    command(
        Post,
        "/v1/orgs/{org}/projects/{project}/archive",
        "archiveProject",
        "projects",
        "Archive a project.",
    )
    .if_match("project")
    .mount(api, archive_project);
    command(
        Post,
        "/v1/orgs/{org}/projects/{project}/unarchive",
        "unarchiveProject",
        "projects",
        "Unarchive a project.",
    )
    .if_match("project")
    .mount(api, unarchive_project);
}

impl AppState {
    /// A project of this organization; another organization's is "not found".
    pub async fn project_in(
        &self,
        org_id: Uuid,
        project_id: Uuid,
    ) -> Result<Loaded<Project>, ApiError> {
        let project = self.load::<Project>(project_id).await?;
        if !project.state.exists || project.state.org_id != org_id {
            return Err(ApiError::NotFound("project".into()));
        }
        Ok(project)
    }
}

/// Registers the key with the organization (keys are unique per organization),
/// then creates the project under it.
#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id))]
async fn create_project(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(org_id): AppPath<Uuid>,
    AppJson(body): AppJson<bodies::CreateProject>,
) -> Result<Accepted, ApiError> {
    app.authorize(&caller, org_id, Access::Admin).await?;
    let project_id = meta.ids.id("project", 0);
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let create = ProjectCommand::CreateProject {
        project_id,
        org_id,
        name: body.name.clone(),
        key: body.key.clone(),
    };
    // A bad project is rejected before the organization is asked for its key.
    Project::default().decide(create.clone())?;
    let done = app
        .create_under::<Organization, Project>(
            &ctx,
            (org_id, |_| {
                Ok(OrgCommand::RegisterProjectKey {
                    project_id,
                    key: body.key.clone(),
                })
            }),
            (project_id, |_| Ok(create.clone())),
        )
        .await?;
    Ok(Accepted::new(StatusCode::CREATED, project_id, &done))
}

async fn change_project(
    app: AppState,
    caller: Caller,
    meta: CommandMeta,
    (org_id, project_id): (Uuid, Uuid),
    command: ProjectCommand,
) -> Result<Accepted, ApiError> {
    app.authorize(&caller, org_id, Access::Admin).await?;
    app.project_in(org_id, project_id).await?;
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let done = app
        .execute::<Project>(&ctx, project_id, meta.if_match, |_| Ok(command.clone()))
        .await?;
    Ok(Accepted::new(StatusCode::OK, project_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn rename_project(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<bodies::RenameProject>,
) -> Result<Accepted, ApiError> {
    change_project(
        app,
        caller,
        meta,
        ids,
        ProjectCommand::RenameProject { name: body.name },
    )
    .await
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn archive_project(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): AppPath<(Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    change_project(app, caller, meta, ids, ProjectCommand::ArchiveProject).await
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn unarchive_project(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): AppPath<(Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    change_project(app, caller, meta, ids, ProjectCommand::UnarchiveProject).await
}
