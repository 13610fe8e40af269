//! Who may issue a command in an organization: membership and role, read
//! from the organization's events on every request.

use tasklog_domain::{stream_name, Aggregate, Organization, Role};
use tasklog_http::{ApiError, Caller};
use uuid::Uuid;

use super::{AppState, Loaded};

/// What a caller must be to issue a command in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any member (the domain decides the rest).
    Member,
    /// Members who may change things: member, admin, owner.
    Write,
    /// Admins and owners.
    Admin,
}

impl AppState {
    /// The organization, if the caller is a member with enough access. A
    /// non-member gets the same answer whether or not the organization exists.
    pub async fn authorize(
        &self,
        caller: &Caller,
        org_id: Uuid,
        access: Access,
    ) -> Result<Loaded<Organization>, ApiError> {
        let org = self.load::<Organization>(org_id).await?;
        check_access(&org.state, caller, access)?;
        Ok(org)
    }

    /// [`Self::authorize`] and [`Self::load`] in one read of the event store.
    pub async fn authorize_and_load<A: Aggregate>(
        &self,
        caller: &Caller,
        org_id: Uuid,
        access: Access,
        id: Uuid,
    ) -> Result<(Loaded<Organization>, Loaded<A>), ApiError> {
        let (org_stream, stream) = (stream_name::<Organization>(org_id), stream_name::<A>(id));
        let (org_from, org_base) = self.cache.start::<Organization>(&org_stream);
        let (from, base) = self.cache.start::<A>(&stream);
        let mut read = self
            .store
            .read_streams(&[(org_stream.clone(), org_from), (stream.clone(), from)])
            .await?
            .into_iter();
        let org = self
            .cache
            .extend(&org_stream, org_base, read.next().unwrap_or_default())?;
        let aggregate = self
            .cache
            .extend(&stream, base, read.next().unwrap_or_default())?;
        check_access(&org.state, caller, access)?;
        Ok((org, aggregate))
    }
}

/// Whether the caller may act in the organization with `access`.
pub(super) fn check_access(
    org: &Organization,
    caller: &Caller,
    access: Access,
) -> Result<(), ApiError> {
    let role = org
        .role_of(caller.user_id)
        .ok_or_else(|| ApiError::Forbidden("you are not a member of this organization".into()))?;
    let allowed = match access {
        Access::Member => true,
        Access::Write => role.can_write(),
        Access::Admin => role.is_admin(),
    };
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "your role ({}) does not allow this",
            role_name(role)
        )));
    }
    Ok(())
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
