//! The organization aggregate: members, their roles and the project keys in use.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Checks;
use crate::event::domain_events;
use crate::mentions::validate_handle;
use crate::{Aggregate, DomainError, OrgId, ProjectId, UserId};

/// A member's role. Viewers and auditors only read; members write; admins and owners manage.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads everything, including audit trails; still read-only.
    Auditor,
    /// Creates and changes tasks, comments and tags.
    Member,
    /// Also manages members and projects.
    Admin,
    /// Also manages owners.
    Owner,
}

impl Role {
    /// Whether the role may change projects, tasks, comments and tags (member and above).
    pub fn can_write(self) -> bool {
        matches!(self, Self::Member | Self::Admin | Self::Owner)
    }

    /// Whether the role may manage members and projects (admin or owner).
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Admin | Self::Owner)
    }
}

/// A member of an organization.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Lowercase handle, unique in the organization, used in `@mentions`.
    pub handle: String,
    /// The member's role.
    pub role: Role,
}

/// State of an organization.
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct Organization {
    /// Whether the organization was created.
    pub exists: bool,
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: String,
    /// Members by user id.
    pub members: BTreeMap<UserId, Member>,
    /// Project keys in use, and the project holding each.
    pub project_keys: BTreeMap<String, ProjectId>,
}

impl Organization {
    /// The role of `user`, if a member.
    pub fn role_of(&self, user: UserId) -> Option<Role> {
        self.members.get(&user).map(|member| member.role)
    }

    /// The member with `handle` (compared case-insensitively).
    pub fn member_by_handle(&self, handle: &str) -> Option<UserId> {
        let handle = handle.trim().to_ascii_lowercase();
        self.members
            .iter()
            .find(|(_, member)| member.handle == handle)
            .map(|(id, _)| *id)
    }

    /// Whether `user` is a member.
    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }

    fn owner_count(&self) -> usize {
        self.members
            .values()
            .filter(|member| member.role == Role::Owner)
            .count()
    }

    /// The role of `by` if it may manage members, else `Forbidden`.
    fn authorize_admin(&self, by: UserId) -> Result<Role, DomainError> {
        self.role_of(by)
            .filter(|role| role.is_admin())
            .ok_or_else(|| {
                DomainError::Forbidden("only an admin or owner can manage members".to_owned())
            })
    }
}

/// Whether `key` is a valid project key: 2 to 10 characters, `A-Z` then `A-Z0-9`.
pub fn validate_project_key(key: &str) -> bool {
    let mut chars = key.chars();
    (2..=10).contains(&key.len())
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Records a `key` field error unless the key is valid.
pub(crate) fn check_project_key(checks: &mut Checks, key: &str) {
    checks.check(
        validate_project_key(key),
        "key",
        "must be 2 to 10 characters: an uppercase letter, then uppercase letters or digits",
    );
}

fn owner_only() -> DomainError {
    DomainError::Forbidden("only an owner can grant, change or remove the owner role".to_owned())
}

/// Handles are stored trimmed and lowercase.
fn normalize_handle(handle: &str) -> String {
    handle.trim().to_ascii_lowercase()
}

const HANDLE_RULE: &str = "must be 1 to 39 characters: letters, digits, '_', '.' or '-'";

/// Commands of the organization aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum OrgCommand {
    /// Creates the organization with its first owner.
    CreateOrganization {
        org_id: OrgId,
        name: String,
        owner_id: UserId,
        owner_handle: String,
    },
    /// Adds a member; `by` must be an admin (an owner to add an owner).
    AddMember {
        by: UserId,
        user_id: UserId,
        handle: String,
        role: Role,
    },
    /// Changes a member's role; `by` must be an admin (an owner when owners are involved).
    ChangeMemberRole {
        by: UserId,
        user_id: UserId,
        role: Role,
    },
    /// Removes a member; `by` must be an admin (an owner to remove an owner).
    RemoveMember { by: UserId, user_id: UserId },
    /// Reserves a project key for a project, unique in the organization.
    RegisterProjectKey { project_id: ProjectId, key: String },
}

/// An organization was created, its creator being the first owner.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct OrganizationCreated {
    pub org_id: OrgId,
    pub name: String,
    pub owner_id: UserId,
    #[schemars(extend("x-personal" = true))]
    pub owner_handle: String,
}

/// A user joined the organization.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct MemberAdded {
    pub user_id: UserId,
    #[schemars(extend("x-personal" = true))]
    pub handle: String,
    pub role: Role,
}

/// A member's role changed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct MemberRoleChanged {
    pub user_id: UserId,
    pub from: Role,
    pub to: Role,
}

/// A member left the organization.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct MemberRemoved {
    pub user_id: UserId,
}

/// A project key was reserved for a project.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProjectKeyRegistered {
    pub project_id: ProjectId,
    pub key: String,
}

domain_events! {
    /// Events of the organization aggregate.
    pub enum OrgEvent {
        OrganizationCreated,
        MemberAdded,
        MemberRoleChanged,
        MemberRemoved,
        ProjectKeyRegistered,
    }
}

impl Aggregate for Organization {
    type Command = OrgCommand;
    type Event = OrgEvent;
    const CATEGORY: &'static str = "org";

    fn decide(&self, command: OrgCommand) -> Result<Vec<OrgEvent>, DomainError> {
        match command {
            OrgCommand::CreateOrganization {
                org_id,
                name,
                owner_id,
                owner_handle,
            } => {
                if self.exists {
                    return Err(DomainError::AlreadyExists("organization"));
                }
                let mut checks = Checks::default();
                checks.length("name", &name, 1, 100);
                let name = name.trim().to_owned();
                let owner_handle = normalize_handle(&owner_handle);
                checks.check(validate_handle(&owner_handle), "owner_handle", HANDLE_RULE);
                checks.finish()?;
                Ok(vec![OrganizationCreated {
                    org_id,
                    name,
                    owner_id,
                    owner_handle,
                }
                .into()])
            }
            _ if !self.exists => Err(DomainError::NotFound("organization")),
            OrgCommand::AddMember {
                by,
                user_id,
                handle,
                role,
            } => {
                let by_role = self.authorize_admin(by)?;
                if role == Role::Owner && by_role != Role::Owner {
                    return Err(owner_only());
                }
                let handle = normalize_handle(&handle);
                let mut checks = Checks::default();
                checks.check(validate_handle(&handle), "handle", HANDLE_RULE);
                checks.finish()?;
                if self.is_member(user_id) {
                    return Err(DomainError::AlreadyExists("member"));
                }
                if self.member_by_handle(&handle).is_some() {
                    return Err(DomainError::AlreadyExists("handle"));
                }
                Ok(vec![MemberAdded {
                    user_id,
                    handle,
                    role,
                }
                .into()])
            }
            OrgCommand::ChangeMemberRole { by, user_id, role } => {
                let by_role = self.authorize_admin(by)?;
                let from = self
                    .role_of(user_id)
                    .ok_or(DomainError::NotFound("member"))?;
                if from == role {
                    return Ok(vec![]);
                }
                if (from == Role::Owner || role == Role::Owner) && by_role != Role::Owner {
                    return Err(owner_only());
                }
                if from == Role::Owner && self.owner_count() == 1 {
                    return Err(DomainError::LastOwner);
                }
                Ok(vec![MemberRoleChanged {
                    user_id,
                    from,
                    to: role,
                }
                .into()])
            }
            OrgCommand::RemoveMember { by, user_id } => {
                let by_role = self.authorize_admin(by)?;
                let role = self
                    .role_of(user_id)
                    .ok_or(DomainError::NotFound("member"))?;
                if role == Role::Owner && by_role != Role::Owner {
                    return Err(owner_only());
                }
                if role == Role::Owner && self.owner_count() == 1 {
                    return Err(DomainError::LastOwner);
                }
                Ok(vec![MemberRemoved { user_id }.into()])
            }
            OrgCommand::RegisterProjectKey { project_id, key } => {
                let key = key.trim().to_owned();
                let mut checks = Checks::default();
                check_project_key(&mut checks, &key);
                checks.finish()?;
                match self.project_keys.get(&key) {
                    Some(holder) if *holder == project_id => Ok(vec![]),
                    Some(_) => Err(DomainError::AlreadyExists("project key")),
                    None => Ok(vec![ProjectKeyRegistered { project_id, key }.into()]),
                }
            }
        }
    }

    fn evolve(mut self, event: &OrgEvent) -> Self {
        match event {
            OrgEvent::OrganizationCreated(e) => {
                self.exists = true;
                self.id = e.org_id;
                self.name = e.name.clone();
                self.members.insert(
                    e.owner_id,
                    Member {
                        handle: e.owner_handle.clone(),
                        role: Role::Owner,
                    },
                );
            }
            OrgEvent::MemberAdded(e) => {
                self.members.insert(
                    e.user_id,
                    Member {
                        handle: e.handle.clone(),
                        role: e.role,
                    },
                );
            }
            OrgEvent::MemberRoleChanged(e) => {
                if let Some(member) = self.members.get_mut(&e.user_id) {
                    member.role = e.to;
                }
            }
            OrgEvent::MemberRemoved(e) => {
                self.members.remove(&e.user_id);
            }
            OrgEvent::ProjectKeyRegistered(e) => {
                self.project_keys.insert(e.key.clone(), e.project_id);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Given};
    use crate::{FieldError, Uuid};

    const ORG: Uuid = Uuid::from_u128(0x0a);
    const OWNER: Uuid = Uuid::from_u128(1);
    const ADMIN: Uuid = Uuid::from_u128(2);
    const MEMBER: Uuid = Uuid::from_u128(3);
    const NEWCOMER: Uuid = Uuid::from_u128(4);
    const OWNER2: Uuid = Uuid::from_u128(5);
    const PROJECT: Uuid = Uuid::from_u128(0x50);

    fn given(events: impl IntoIterator<Item = OrgEvent>) -> Given<Organization> {
        testing::given(events)
    }

    fn created() -> OrgEvent {
        OrganizationCreated {
            org_id: ORG,
            name: "Acme".into(),
            owner_id: OWNER,
            owner_handle: "olivia".into(),
        }
        .into()
    }

    fn added(user_id: Uuid, handle: &str, role: Role) -> OrgEvent {
        MemberAdded {
            user_id,
            handle: handle.into(),
            role,
        }
        .into()
    }

    /// Owner olivia, admin adam, member mia.
    fn staffed() -> Vec<OrgEvent> {
        vec![
            created(),
            added(ADMIN, "adam", Role::Admin),
            added(MEMBER, "mia", Role::Member),
        ]
    }

    fn with(mut events: Vec<OrgEvent>, more: OrgEvent) -> Vec<OrgEvent> {
        events.push(more);
        events
    }

    fn create(name: &str, handle: &str) -> OrgCommand {
        OrgCommand::CreateOrganization {
            org_id: ORG,
            name: name.into(),
            owner_id: OWNER,
            owner_handle: handle.into(),
        }
    }

    fn add(by: Uuid, user_id: Uuid, handle: &str, role: Role) -> OrgCommand {
        OrgCommand::AddMember {
            by,
            user_id,
            handle: handle.into(),
            role,
        }
    }

    fn change(by: Uuid, user_id: Uuid, role: Role) -> OrgCommand {
        OrgCommand::ChangeMemberRole { by, user_id, role }
    }

    fn forbidden_owner() -> DomainError {
        owner_only()
    }

    fn forbidden_admin() -> DomainError {
        DomainError::Forbidden("only an admin or owner can manage members".into())
    }

    #[test]
    fn creating_an_organization_makes_its_creator_the_owner() {
        let org = given([])
            .when(create("  Acme ", " Olivia "))
            .then([created()]);
        assert_eq!(org.role_of(OWNER), Some(Role::Owner));
        assert_eq!(org.member_by_handle("OLIVIA"), Some(OWNER));
    }

    #[test]
    fn creating_an_existing_organization_is_rejected() {
        given([created()])
            .when(create("Acme", "olivia"))
            .then_err(DomainError::AlreadyExists("organization"));
    }

    #[test]
    fn creating_an_organization_with_a_blank_name_and_bad_handle_reports_both() {
        let DomainError::Validation(errors) = Organization::default()
            .decide(create("   ", "o livia"))
            .unwrap_err()
        else {
            panic!("expected a validation error");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "owner_handle"]);
    }

    #[test]
    fn creating_an_organization_with_a_name_over_100_characters_is_rejected() {
        given([])
            .when(create(&"n".repeat(101), "olivia"))
            .then_err(DomainError::Validation(vec![FieldError::new(
                "name",
                "must be at most 100 characters",
            )]));
    }

    #[test]
    fn commands_on_a_missing_organization_are_rejected() {
        given([])
            .when(add(OWNER, MEMBER, "mia", Role::Member))
            .then_err(DomainError::NotFound("organization"));
    }

    #[test]
    fn an_admin_adds_a_member() {
        let org = given(staffed())
            .when(add(ADMIN, NEWCOMER, "Nina", Role::Viewer))
            .then([added(NEWCOMER, "nina", Role::Viewer)]);
        assert!(org.is_member(NEWCOMER));
    }

    #[test]
    fn a_plain_member_cannot_add_members() {
        given(staffed())
            .when(add(MEMBER, NEWCOMER, "nina", Role::Viewer))
            .then_err(forbidden_admin());
    }

    #[test]
    fn a_non_member_cannot_add_members() {
        given(staffed())
            .when(add(NEWCOMER, OWNER2, "otto", Role::Viewer))
            .then_err(forbidden_admin());
    }

    #[test]
    fn an_admin_cannot_add_an_owner() {
        given(staffed())
            .when(add(ADMIN, NEWCOMER, "nina", Role::Owner))
            .then_err(forbidden_owner());
    }

    #[test]
    fn an_owner_adds_an_owner() {
        given(staffed())
            .when(add(OWNER, OWNER2, "otto", Role::Owner))
            .then([added(OWNER2, "otto", Role::Owner)]);
    }

    #[test]
    fn adding_a_member_with_an_invalid_handle_is_rejected() {
        given(staffed())
            .when(add(OWNER, NEWCOMER, "nina!", Role::Member))
            .then_err(DomainError::validation("handle", HANDLE_RULE));
    }

    #[test]
    fn adding_an_existing_member_is_rejected() {
        given(staffed())
            .when(add(OWNER, MEMBER, "mia2", Role::Member))
            .then_err(DomainError::AlreadyExists("member"));
    }

    #[test]
    fn adding_a_member_with_a_taken_handle_is_rejected() {
        given(staffed())
            .when(add(OWNER, NEWCOMER, "MIA", Role::Member))
            .then_err(DomainError::AlreadyExists("handle"));
    }

    #[test]
    fn an_admin_changes_a_members_role() {
        let org = given(staffed())
            .when(change(ADMIN, MEMBER, Role::Viewer))
            .then([MemberRoleChanged {
                user_id: MEMBER,
                from: Role::Member,
                to: Role::Viewer,
            }
            .into()]);
        assert_eq!(org.role_of(MEMBER), Some(Role::Viewer));
    }

    #[test]
    fn changing_a_role_to_the_current_one_changes_nothing() {
        given(staffed())
            .when(change(ADMIN, MEMBER, Role::Member))
            .then([]);
    }

    #[test]
    fn a_plain_member_cannot_change_roles() {
        given(staffed())
            .when(change(MEMBER, MEMBER, Role::Admin))
            .then_err(forbidden_admin());
    }

    #[test]
    fn changing_the_role_of_a_non_member_is_rejected() {
        given(staffed())
            .when(change(ADMIN, NEWCOMER, Role::Admin))
            .then_err(DomainError::NotFound("member"));
    }

    #[test]
    fn an_admin_cannot_promote_to_owner() {
        given(staffed())
            .when(change(ADMIN, MEMBER, Role::Owner))
            .then_err(forbidden_owner());
    }

    #[test]
    fn an_admin_cannot_demote_an_owner() {
        given(with(staffed(), added(OWNER2, "otto", Role::Owner)))
            .when(change(ADMIN, OWNER2, Role::Member))
            .then_err(forbidden_owner());
    }

    #[test]
    fn an_owner_promotes_a_member_to_owner() {
        given(staffed())
            .when(change(OWNER, MEMBER, Role::Owner))
            .then([MemberRoleChanged {
                user_id: MEMBER,
                from: Role::Member,
                to: Role::Owner,
            }
            .into()]);
    }

    #[test]
    fn an_owner_demotes_another_owner() {
        given(with(staffed(), added(OWNER2, "otto", Role::Owner)))
            .when(change(OWNER, OWNER2, Role::Admin))
            .then([MemberRoleChanged {
                user_id: OWNER2,
                from: Role::Owner,
                to: Role::Admin,
            }
            .into()]);
    }

    #[test]
    fn demoting_the_last_owner_is_rejected() {
        given(staffed())
            .when(change(OWNER, OWNER, Role::Admin))
            .then_err(DomainError::LastOwner);
    }

    #[test]
    fn an_admin_removes_a_member() {
        let org = given(staffed())
            .when(OrgCommand::RemoveMember {
                by: ADMIN,
                user_id: MEMBER,
            })
            .then([MemberRemoved { user_id: MEMBER }.into()]);
        assert!(!org.is_member(MEMBER));
        assert_eq!(org.member_by_handle("mia"), None);
    }

    #[test]
    fn a_plain_member_cannot_remove_members() {
        given(staffed())
            .when(OrgCommand::RemoveMember {
                by: MEMBER,
                user_id: ADMIN,
            })
            .then_err(forbidden_admin());
    }

    #[test]
    fn removing_a_non_member_is_rejected() {
        given(staffed())
            .when(OrgCommand::RemoveMember {
                by: ADMIN,
                user_id: NEWCOMER,
            })
            .then_err(DomainError::NotFound("member"));
    }

    #[test]
    fn an_admin_cannot_remove_an_owner() {
        given(with(staffed(), added(OWNER2, "otto", Role::Owner)))
            .when(OrgCommand::RemoveMember {
                by: ADMIN,
                user_id: OWNER2,
            })
            .then_err(forbidden_owner());
    }

    #[test]
    fn an_owner_removes_another_owner() {
        given(with(staffed(), added(OWNER2, "otto", Role::Owner)))
            .when(OrgCommand::RemoveMember {
                by: OWNER2,
                user_id: OWNER,
            })
            .then([MemberRemoved { user_id: OWNER }.into()]);
    }

    #[test]
    fn removing_the_last_owner_is_rejected() {
        given(staffed())
            .when(OrgCommand::RemoveMember {
                by: OWNER,
                user_id: OWNER,
            })
            .then_err(DomainError::LastOwner);
    }

    #[test]
    fn registering_a_project_key_reserves_it() {
        let org = given(staffed())
            .when(OrgCommand::RegisterProjectKey {
                project_id: PROJECT,
                key: " WEB2 ".into(),
            })
            .then([ProjectKeyRegistered {
                project_id: PROJECT,
                key: "WEB2".into(),
            }
            .into()]);
        assert_eq!(org.project_keys.get("WEB2"), Some(&PROJECT));
    }

    #[test]
    fn registering_a_malformed_project_key_is_rejected() {
        for key in ["W", "web", "2WEB", "WEB-1", "ABCDEFGHIJK"] {
            let error = replay_staffed()
                .decide(OrgCommand::RegisterProjectKey {
                    project_id: PROJECT,
                    key: key.into(),
                })
                .unwrap_err();
            assert!(
                matches!(&error, DomainError::Validation(errors) if errors[0].field == "key"),
                "{key}: {error:?}"
            );
        }
    }

    fn replay_staffed() -> Organization {
        crate::replay::<Organization>(staffed())
    }

    #[test]
    fn registering_a_key_held_by_another_project_is_rejected() {
        given(with(
            staffed(),
            ProjectKeyRegistered {
                project_id: PROJECT,
                key: "WEB".into(),
            }
            .into(),
        ))
        .when(OrgCommand::RegisterProjectKey {
            project_id: Uuid::from_u128(0x51),
            key: "WEB".into(),
        })
        .then_err(DomainError::AlreadyExists("project key"));
    }

    #[test]
    fn registering_the_same_key_for_the_same_project_again_changes_nothing() {
        given(with(
            staffed(),
            ProjectKeyRegistered {
                project_id: PROJECT,
                key: "WEB".into(),
            }
            .into(),
        ))
        .when(OrgCommand::RegisterProjectKey {
            project_id: PROJECT,
            key: "WEB".into(),
        })
        .then([]);
    }

    #[test]
    fn roles_say_who_writes_and_who_administers() {
        use Role::*;
        let can_write: Vec<_> = [Viewer, Auditor, Member, Admin, Owner]
            .into_iter()
            .map(Role::can_write)
            .collect();
        assert_eq!(can_write, [false, false, true, true, true]);
        let is_admin: Vec<_> = [Viewer, Auditor, Member, Admin, Owner]
            .into_iter()
            .map(Role::is_admin)
            .collect();
        assert_eq!(is_admin, [false, false, false, true, true]);
        assert!(Viewer < Auditor && Auditor < Member && Member < Admin && Admin < Owner);
        assert_eq!(serde_json::to_value(Auditor).unwrap(), "auditor");
    }
}
