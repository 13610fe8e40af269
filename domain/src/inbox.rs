//! A user's inbox in one organization: which of their in-app notifications
//! there they have read. One stream per organization and user,
//! `"inbox-{inbox_id(org, user)}"`, so that an organization's history (its
//! export, what its auditors read) never holds another organization's event,
//! hash or version. (Events written before this rule are in streams
//! `"inbox-{user_id}"`, shared by the user's organizations; they stay there.)
//! Notifications themselves are derived
//! by the read side from the events that cause them (assignment, mention); a
//! notification's id is derived from its cause, so it is known here by id only.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::domain_events;
use crate::{Aggregate, DomainError};

/// The id of `user`'s inbox in `org`: a UUID v5 of the user's id in the
/// organization's namespace, so that anyone can compute it and no two
/// (organization, user) pairs share one.
pub fn inbox_id(org: Uuid, user: Uuid) -> Uuid {
    Uuid::new_v5(&org, user.as_bytes())
}

/// State of a user's inbox.
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Notifications marked read.
    pub read: BTreeSet<Uuid>,
}

/// Commands of an inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxCommand {
    /// Marks a notification read; marking it again changes nothing.
    MarkNotificationRead { notification_id: Uuid },
}

/// The user read a notification.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct NotificationRead {
    pub notification_id: Uuid,
}

domain_events! {
    /// Events of an inbox.
    pub enum InboxEvent {
        NotificationRead,
    }
}

impl Aggregate for Inbox {
    type Command = InboxCommand;
    type Event = InboxEvent;
    const CATEGORY: &'static str = "inbox";

    fn decide(&self, command: InboxCommand) -> Result<Vec<InboxEvent>, DomainError> {
        match command {
            InboxCommand::MarkNotificationRead { notification_id } => {
                if self.read.contains(&notification_id) {
                    return Ok(vec![]);
                }
                Ok(vec![NotificationRead { notification_id }.into()])
            }
        }
    }

    fn evolve(mut self, event: &InboxEvent) -> Self {
        match event {
            InboxEvent::NotificationRead(e) => {
                self.read.insert(e.notification_id);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Given};

    const N: Uuid = Uuid::from_u128(0x70);

    fn given(events: impl IntoIterator<Item = InboxEvent>) -> Given<Inbox> {
        testing::given(events)
    }

    #[test]
    fn marking_a_notification_read_records_it() {
        given([])
            .when(InboxCommand::MarkNotificationRead { notification_id: N })
            .then([NotificationRead { notification_id: N }.into()]);
    }

    #[test]
    fn marking_a_read_notification_again_changes_nothing() {
        given([NotificationRead { notification_id: N }.into()])
            .when(InboxCommand::MarkNotificationRead { notification_id: N })
            .then([]);
    }

    #[test]
    fn a_users_inboxes_in_two_organizations_are_two_streams() {
        let (org_a, org_b, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(inbox_id(org_a, user), inbox_id(org_a, user));
        assert_ne!(inbox_id(org_a, user), inbox_id(org_b, user));
        assert_ne!(inbox_id(org_a, user), inbox_id(org_a, Uuid::now_v7()));
    }
}
