use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tasklog_domain::{OrgEvent, ProjectEvent, TagEvent};
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

use super::{decode, name_of, stream_parts};
use crate::{ApplyError, Projection};

/// Organizations, members, projects, the tag catalog.
///
/// Changes to these are rare and applied one statement each; what is
/// frequent is the version bump every org and project event makes (a project
/// reserves a task number for each task created), so the bumps are collected
/// and written once per batch, each aggregate at its last event.
pub struct Directory;

#[derive(Default)]
struct Bumps {
    orgs: HashMap<Uuid, i64>,
    projects: HashMap<Uuid, (i64, DateTime<Utc>)>,
}

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../../migrations/projections/directory.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["organizations", "members", "projects", "tags"]
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["org", "project", "tags"])
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        let mut bumps = Bumps::default();
        for e in events {
            apply_one(tx, e, &mut bumps).await?;
        }
        if !bumps.orgs.is_empty() {
            let (ids, versions): (Vec<Uuid>, Vec<i64>) = bumps.orgs.into_iter().unzip();
            sqlx::query(
                "UPDATE organizations o SET version = b.v \
                 FROM UNNEST($1::uuid[], $2::int8[]) AS b(id, v) WHERE o.org_id = b.id",
            )
            .bind(ids)
            .bind(versions)
            .execute(&mut *tx)
            .await?;
        }
        if !bumps.projects.is_empty() {
            let mut ids = Vec::with_capacity(bumps.projects.len());
            let mut versions = Vec::with_capacity(ids.capacity());
            let mut times = Vec::with_capacity(ids.capacity());
            for (id, (v, at)) in bumps.projects {
                ids.push(id);
                versions.push(v);
                times.push(at);
            }
            sqlx::query(
                "UPDATE projects p SET version = b.v, updated_at = b.at \
                 FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[]) AS b(id, v, at) \
                 WHERE p.project_id = b.id",
            )
            .bind(ids)
            .bind(versions)
            .bind(times)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

async fn apply_one(
    tx: &mut PgConnection,
    e: &RecordedEvent,
    bumps: &mut Bumps,
) -> Result<(), ApplyError> {
    let (category, id) = stream_parts(e)?;
    let at = e.metadata.occurred_at;
    let version = e.stream_version as i64;
    match category {
        "org" => {
            match decode::<OrgEvent>(e)? {
                OrgEvent::OrganizationCreated(c) => {
                    sqlx::query("INSERT INTO organizations (org_id, name, created_at, version) VALUES ($1, $2, $3, $4)")
                        .bind(c.org_id).bind(&c.name).bind(at).bind(version)
                        .execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO members (org_id, user_id, handle, role, joined_at) VALUES ($1, $2, $3, 'owner', $4)")
                        .bind(c.org_id).bind(c.owner_id).bind(&c.owner_handle).bind(at)
                        .execute(&mut *tx).await?;
                }
                OrgEvent::MemberAdded(m) => {
                    sqlx::query("INSERT INTO members (org_id, user_id, handle, role, joined_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(id).bind(m.user_id).bind(&m.handle).bind(name_of(&m.role)).bind(at)
                        .execute(&mut *tx).await?;
                }
                OrgEvent::MemberRoleChanged(m) => {
                    sqlx::query("UPDATE members SET role = $3 WHERE org_id = $1 AND user_id = $2")
                        .bind(id)
                        .bind(m.user_id)
                        .bind(name_of(&m.to))
                        .execute(&mut *tx)
                        .await?;
                }
                OrgEvent::MemberRemoved(m) => {
                    sqlx::query("DELETE FROM members WHERE org_id = $1 AND user_id = $2")
                        .bind(id)
                        .bind(m.user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                OrgEvent::ProjectKeyRegistered(_) => {}
            }
            bumps.orgs.insert(id, version);
        }
        "project" => {
            match decode::<ProjectEvent>(e)? {
                ProjectEvent::ProjectCreated(c) => {
                    sqlx::query(
                        "INSERT INTO projects (project_id, org_id, name, key, workflow, created_at, updated_at, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                    )
                    .bind(c.project_id).bind(c.org_id).bind(&c.name).bind(&c.key)
                    .bind(serde_json::to_value(&c.workflow)?).bind(at).bind(version)
                    .execute(&mut *tx).await?;
                }
                ProjectEvent::ProjectRenamed(r) => {
                    sqlx::query("UPDATE projects SET name = $2 WHERE project_id = $1")
                        .bind(id)
                        .bind(&r.to)
                        .execute(&mut *tx)
                        .await?;
                }
                ProjectEvent::ProjectArchived(_) => {
                    sqlx::query("UPDATE projects SET archived = true WHERE project_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                ProjectEvent::ProjectUnarchived(_) => {
                    sqlx::query("UPDATE projects SET archived = false WHERE project_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                ProjectEvent::TaskNumberReserved(_) => {}
            }
            bumps.projects.insert(id, (version, at));
        }
        "tags" => match decode::<TagEvent>(e)? {
            TagEvent::TagCreated(t) => {
                sqlx::query("INSERT INTO tags (tag_id, org_id, name, color, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(t.tag_id).bind(id).bind(&t.name).bind(&t.color).bind(at)
                    .execute(&mut *tx).await?;
            }
            TagEvent::TagRenamed(t) => {
                sqlx::query("UPDATE tags SET name = $2 WHERE tag_id = $1")
                    .bind(t.tag_id)
                    .bind(&t.to)
                    .execute(&mut *tx)
                    .await?;
            }
            TagEvent::TagDeleted(t) => {
                sqlx::query("DELETE FROM tags WHERE tag_id = $1")
                    .bind(t.tag_id)
                    .execute(&mut *tx)
                    .await?;
            }
        },
        _ => {}
    }
    Ok(())
}
