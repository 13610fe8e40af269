//! Tasks and their comments.

use axum::extract::State;
use axum::http::StatusCode;
use tasklog_domain::{
    mentioned_handles, Aggregate, Organization, Project, ProjectCommand, ProjectEvent, TagCatalog,
    Task, TaskCommand, UserId,
};
use tasklog_http::Method::{Delete, Patch, Post};
use tasklog_http::{Api, ApiError, AppJson, AppPath, Caller};
use uuid::Uuid;

use crate::bodies;
use crate::extract::CommandMeta;
use crate::openapi::command;
use crate::service::{Accepted, Access, AppState, Context, Executed, Loaded};

pub fn routes(api: &mut Api<AppState>) {
    command(
        Post,
        "/v1/orgs/{org}/projects/{project}/tasks",
        "createTask",
        "tasks",
        "Create a task in a project.",
    )
    .body::<bodies::CreateTask>()
    .created()
    .described("Members, admins and owners. The task takes the project's next number (`WEB-42`).")
    .mount(api, create_task);
    command(
        Patch,
        "/v1/orgs/{org}/tasks/{task}",
        "editTask",
        "tasks",
        "Edit a task's title, description, priority or due date.",
    )
    .body::<bodies::EditTask>()
    .if_match("task")
    .mount(api, edit_task);
    command(
        Post,
        "/v1/orgs/{org}/tasks/{task}/assignee",
        "setAssignee",
        "tasks",
        "Assign a task to a member (or unassign it with null).",
    )
    .body::<bodies::SetAssignee>()
    .if_match("task")
    .mount(api, set_assignee);
    command(
        Delete,
        "/v1/orgs/{org}/tasks/{task}/assignee",
        "unassignTask",
        "tasks",
        "Unassign a task.",
    )
    .if_match("task")
    .mount(api, unassign);
    command(
        Post,
        "/v1/orgs/{org}/tasks/{task}/status",
        "changeTaskStatus",
        "tasks",
        "Move a task to another status of its project's workflow.",
    )
    .body::<bodies::ChangeStatus>()
    .if_match("task")
    .mount(api, change_status);
    command(
        Post,
        "/v1/orgs/{org}/tasks/{task}/tags",
        "addTaskTag",
        "tasks",
        "Tag a task.",
    )
    .body::<bodies::AddTaskTag>()
    .if_match("task")
    .mount(api, add_tag);
    command(
        Delete,
        "/v1/orgs/{org}/tasks/{task}/tags/{tag}",
        "removeTaskTag",
        "tasks",
        "Remove a tag from a task.",
    )
    .if_match("task")
    .mount(api, remove_tag);
    command(
        Post,
        "/v1/orgs/{org}/tasks/{task}/archive",
        "archiveTask",
        "tasks",
        "Archive a task.",
    )
    .if_match("task")
    .mount(api, archive_task);
    command(
        Post,
        "/v1/orgs/{org}/tasks/{task}/comments",
        "addComment",
        "comments",
        "Comment on a task.",
    )
    .body::<bodies::AddComment>()
    .if_match("task")
    .created()
    .described("`@handle` mentions of members notify them. The answer's `id` is the comment's.")
    .mount(api, add_comment);
    command(
        Patch,
        "/v1/orgs/{org}/tasks/{task}/comments/{comment}",
        "editComment",
        "comments",
        "Edit a comment (its author only).",
    )
    .body::<bodies::EditComment>()
    .if_match("task")
    .mount(api, edit_comment);
    command(
        Delete,
        "/v1/orgs/{org}/tasks/{task}/comments/{comment}",
        "deleteComment",
        "comments",
        "Delete a comment (its author, or an admin).",
    )
    .if_match("task")
    .mount(api, delete_comment);
}

/// A task of this organization; another organization's is "not found".
fn in_org(task: &Task, org_id: Uuid) -> Result<(), ApiError> {
    if task.exists && task.org_id == org_id {
        Ok(())
    } else {
        Err(ApiError::NotFound("task".into()))
    }
}

/// Runs the command `make` builds from the organization and the task, once
/// the caller may write: on the cached ones when they still hold (see
/// `execute_cached`), else loaded in one read.
async fn change_task(
    app: &AppState,
    caller: &Caller,
    meta: &CommandMeta,
    (org_id, task_id): (Uuid, Uuid),
    make: impl Fn(&Organization, &Task) -> TaskCommand,
) -> Result<Executed<Task>, ApiError> {
    let ctx = Context {
        meta,
        caller,
        org_id,
    };
    let warm = app
        .execute_cached::<Task>(&ctx, Access::Write, task_id, |org, task| {
            in_org(task, org_id)?;
            Ok(make(org, task))
        })
        .await?;
    if let Some(done) = warm {
        return Ok(done);
    }
    let (org, task) = app
        .authorize_and_load::<Task>(caller, org_id, Access::Write, task_id)
        .await?;
    change_loaded_task(app, caller, meta, (org_id, task_id), task, |task| {
        make(&org.state, task)
    })
    .await
}

async fn change_loaded_task(
    app: &AppState,
    caller: &Caller,
    meta: &CommandMeta,
    (org_id, task_id): (Uuid, Uuid),
    task: Loaded<Task>,
    make: impl Fn(&Task) -> TaskCommand,
) -> Result<Executed<Task>, ApiError> {
    let ctx = Context {
        meta,
        caller,
        org_id,
    };
    app.execute_loaded::<Task>(&ctx, task_id, Some(task), meta.if_match, |task| {
        in_org(task, org_id)?;
        Ok(make(task))
    })
    .await
}

fn user_ids_mentioned(org: &Organization, body: &str) -> Vec<UserId> {
    mentioned_handles(body)
        .iter()
        .filter_map(|h| org.member_by_handle(h))
        .collect()
}

/// Takes the next number from the project (so `WEB-42` is unique in it), then
/// creates the task under that number.
#[tracing::instrument(skip_all, fields(caller = %caller.user_id, %org_id, %project_id))]
async fn create_task(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, project_id)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<bodies::CreateTask>,
) -> Result<Accepted, ApiError> {
    app.authorize(&caller, org_id, Access::Write).await?;
    let project = app.project_in(org_id, project_id).await?.state;
    let task_id = meta.ids.id("task", 0);
    let ctx = Context {
        meta: &meta,
        caller: &caller,
        org_id,
    };
    let create = |number| TaskCommand::CreateTask {
        task_id,
        org_id,
        project_id,
        number,
        project_key: project.key.clone(),
        title: body.title.clone(),
        description: body.description.clone(),
        priority: body.priority,
        due_date: body.due_date.map(|d| d.0),
        workflow: project.workflow.clone(),
        created_by: caller.user_id,
    };
    // A bad task is rejected before the project is even asked for a number.
    Task::default().decide(create(0))?;
    let done = app
        .create_under::<Project, Task>(
            &ctx,
            (project_id, |_| {
                Ok(ProjectCommand::ReserveTaskNumber { task_id })
            }),
            (task_id, |reserved| {
                let number = reserved
                    .iter()
                    .find_map(|e| match e {
                        ProjectEvent::TaskNumberReserved(r) if r.task_id == task_id => {
                            Some(r.number)
                        }
                        _ => None,
                    })
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!("no task number was reserved"))
                    })?;
                Ok(create(number))
            }),
        )
        .await?;
    Ok(Accepted::new(StatusCode::CREATED, task_id, &done))
}

type TaskPath = AppPath<(Uuid, Uuid)>;

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn edit_task(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
    AppJson(body): AppJson<bodies::EditTask>,
) -> Result<Accepted, ApiError> {
    if body.title.is_none()
        && body.description.is_none()
        && body.priority.is_none()
        && body.due_date.is_none()
    {
        return Err(ApiError::validation(
            "",
            "name at least one field to change",
        ));
    }
    let done = change_task(&app, &caller, &meta, ids, |_, _| {
        TaskCommand::EditTaskDetails {
            title: body.title.clone(),
            description: body.description.clone(),
            priority: body.priority,
            due_date: body.due_date.map(|d| d.map(|d| d.0)),
        }
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, ids.1, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn set_assignee(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
    AppJson(body): AppJson<bodies::SetAssignee>,
) -> Result<Accepted, ApiError> {
    let done = change_task(&app, &caller, &meta, ids, |org, _| match body.assignee {
        Some(assignee) => TaskCommand::AssignTask {
            assignee,
            assignee_is_member: org.is_member(assignee),
        },
        None => TaskCommand::UnassignTask,
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, ids.1, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn unassign(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
) -> Result<Accepted, ApiError> {
    let done = change_task(&app, &caller, &meta, ids, |_, _| TaskCommand::UnassignTask).await?;
    Ok(Accepted::new(StatusCode::OK, ids.1, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn change_status(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
    AppJson(body): AppJson<bodies::ChangeStatus>,
) -> Result<Accepted, ApiError> {
    let (org_id, task_id) = ids;
    let (_, task) = app
        .authorize_and_load::<Task>(&caller, org_id, Access::Write, task_id)
        .await?;
    // The workflow is the project's: find the task's project first.
    in_org(&task.state, org_id)?;
    let workflow = app
        .project_in(org_id, task.state.project_id)
        .await?
        .state
        .workflow;
    let done = change_loaded_task(&app, &caller, &meta, ids, task, |_| {
        TaskCommand::ChangeTaskStatus {
            to: body.status.clone(),
            workflow: workflow.clone(),
        }
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, task_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn add_tag(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
    AppJson(body): AppJson<bodies::AddTaskTag>,
) -> Result<Accepted, ApiError> {
    let catalog = app.load::<TagCatalog>(ids.0).await?.state;
    let done = change_task(&app, &caller, &meta, ids, |_, _| TaskCommand::AddTag {
        tag_id: body.tag_id,
        tag_exists: catalog.contains(body.tag_id),
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, ids.1, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn remove_tag(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, task_id, tag_id)): AppPath<(Uuid, Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    let ids = (org_id, task_id);
    let done = change_task(&app, &caller, &meta, ids, |_, _| TaskCommand::RemoveTag {
        tag_id,
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, task_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn archive_task(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
) -> Result<Accepted, ApiError> {
    let done = change_task(&app, &caller, &meta, ids, |_, _| TaskCommand::ArchiveTask).await?;
    Ok(Accepted::new(StatusCode::OK, ids.1, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn add_comment(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath(ids): TaskPath,
    AppJson(body): AppJson<bodies::AddComment>,
) -> Result<Accepted, ApiError> {
    let comment_id = meta.ids.id("comment", 0);
    let done = change_task(&app, &caller, &meta, ids, |org, _| {
        TaskCommand::AddComment {
            comment_id,
            author: caller.user_id,
            body: body.body.clone(),
            mentions: user_ids_mentioned(org, &body.body),
        }
    })
    .await?;
    Ok(Accepted::new(StatusCode::CREATED, comment_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn edit_comment(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, task_id, comment_id)): AppPath<(Uuid, Uuid, Uuid)>,
    AppJson(body): AppJson<bodies::EditComment>,
) -> Result<Accepted, ApiError> {
    let ids = (org_id, task_id);
    let done = change_task(&app, &caller, &meta, ids, |org, _| {
        TaskCommand::EditComment {
            comment_id,
            editor: caller.user_id,
            body: body.body.clone(),
            mentions: user_ids_mentioned(org, &body.body),
        }
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, comment_id, &done))
}

#[tracing::instrument(skip_all, fields(caller = %caller.user_id))]
async fn delete_comment(
    State(app): State<AppState>,
    caller: Caller,
    meta: CommandMeta,
    AppPath((org_id, task_id, comment_id)): AppPath<(Uuid, Uuid, Uuid)>,
) -> Result<Accepted, ApiError> {
    let ids = (org_id, task_id);
    let done = change_task(&app, &caller, &meta, ids, |org, _| {
        TaskCommand::DeleteComment {
            comment_id,
            by: caller.user_id,
            by_is_admin: org.role_of(caller.user_id).is_some_and(|r| r.is_admin()),
        }
    })
    .await?;
    Ok(Accepted::new(StatusCode::OK, comment_id, &done))
}
