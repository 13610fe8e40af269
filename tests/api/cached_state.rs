//! A process decides a task's commands on the organization and the task as it
//! last saw them, without reading (the warm path). Another process may have
//! changed either since: the append's checks make sure no command ever acts
//! on a stale membership or a stale task.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp, User};

/// Two processes over one database, and a task that `commenter` has
/// commented on twice through the first: the second comment was decided on
/// what the first left in its cache.
struct TwoProcesses {
    first: TestApp,
    second: TestApp,
    org: Uuid,
    owner: User,
    task: Uuid,
}

impl TwoProcesses {
    async fn start(commenter_role: Option<&str>) -> (Self, User) {
        let first = spawn_app().await;
        let second = first.another_process().await;
        let (org, owner) = first.org().await;
        let commenter = match commenter_role {
            Some(role) => first.member(org, &owner, "mira", role).await,
            None => owner.clone(),
        };
        let project = first.project(org, &owner, "WEB").await;
        let task = first.task(org, project, &owner, "Cached").await;
        let both = Self {
            first,
            second,
            org,
            owner,
            task,
        };
        for body in ["one", "two"] {
            let r = both.comment(&both.first, &commenter, body).await;
            assert_eq!(r.status(), 201);
        }
        (both, commenter)
    }

    async fn comment(&self, app: &TestApp, user: &User, body: &str) -> reqwest::Response {
        let (org, task) = (self.org, self.task);
        app.post(
            &format!("/v1/orgs/{org}/tasks/{task}/comments"),
            user,
            json!({ "body": body }),
        )
        .await
    }

    async fn comments(&self) -> Vec<serde_json::Value> {
        self.first
            .stream(&format!("task-{}", self.task))
            .await
            .into_iter()
            .filter(|(t, _)| t == "CommentAdded")
            .map(|(_, p)| p)
            .collect()
    }
}

#[tokio::test]
async fn a_member_removed_by_another_process_is_refused_by_one_that_cached_them() {
    let (both, member) = TwoProcesses::start(Some("member")).await;
    let r = both
        .second
        .request(
            Method::DELETE,
            &format!("/v1/orgs/{}/members/{}", both.org, member.id),
            &both.owner,
            None,
            &[],
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let r = both.comment(&both.first, &member, "three").await;
    assert_problem(r, 403, "forbidden").await;
    assert_eq!(both.comments().await.len(), 2, "nothing appended");
}

#[tokio::test]
async fn a_task_changed_by_another_process_is_decided_on_its_current_state() {
    let (both, owner) = TwoProcesses::start(None).await;
    let r = both
        .second
        .request(
            Method::POST,
            &format!("/v1/orgs/{}/tasks/{}/archive", both.org, both.task),
            &owner,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let r = both.comment(&both.first, &owner, "three").await;
    assert_problem(r, 422, "archived").await;
    assert_eq!(both.comments().await.len(), 2, "nothing appended");
}

#[tokio::test]
async fn a_mention_resolves_against_the_members_of_now_not_of_the_cache() {
    let (both, owner) = TwoProcesses::start(None).await;
    // A member who joins through the other process ...
    let newcomer = both.second.member(both.org, &owner, "nell", "member").await;
    // ... is mentioned through the first, whose cache predates them.
    let r = both.comment(&both.first, &owner, "over to @nell").await;
    assert_eq!(r.status(), 201);

    let comments = both.comments().await;
    assert_eq!(comments.len(), 3);
    assert_eq!(
        comments[2]["mentions"],
        json!([newcomer.id]),
        "{}",
        comments[2]
    );
}
