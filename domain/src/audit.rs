//! An organization's audit trail: who read its history through the auditor
//! API, when, and what they asked. One stream per organization,
//! `"audit-{org_id}"`, so the record of reads is hash-chained like every
//! other stream. No projection reads it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::domain_events;
use crate::{Aggregate, DomainError, Role, UserId};

/// State of an audit trail: how many reads it holds (nothing is decided
/// from it; recording a read is never refused).
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditTrail {
    pub reads: u64,
}

/// Commands of an audit trail.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditCommand {
    /// Records a read of the organization's history.
    RecordRead(AuditLogRead),
}

/// Someone read the organization's history through the auditor API.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct AuditLogRead {
    /// Who read.
    pub reader: UserId,
    /// Their role when they read.
    pub role: Role,
    /// The API operation (`listAuditEvents`, `exportAuditLog`, …).
    pub operation: String,
    /// The path read, as requested.
    pub path: String,
    /// The query string, exactly as sent (percent-encoded; empty when none).
    pub query: String,
    /// The stream it was about, if one (`task-<uuid>`).
    pub stream: Option<String>,
}

domain_events! {
    /// Events of an audit trail.
    pub enum AuditEvent {
        AuditLogRead,
    }
}

impl Aggregate for AuditTrail {
    type Command = AuditCommand;
    type Event = AuditEvent;
    const CATEGORY: &'static str = "audit";

    fn decide(&self, command: AuditCommand) -> Result<Vec<AuditEvent>, DomainError> {
        match command {
            AuditCommand::RecordRead(read) => Ok(vec![read.into()]),
        }
    }

    fn evolve(mut self, event: &AuditEvent) -> Self {
        match event {
            AuditEvent::AuditLogRead(_) => self.reads += 1,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn every_read_is_recorded() {
        let read = AuditLogRead {
            reader: UserId::from_u128(1),
            role: Role::Auditor,
            operation: "listAuditEvents".into(),
            path: "/v1/orgs/x/audit/events".into(),
            query: "kind=task".into(),
            stream: None,
        };
        let state = testing::given::<AuditTrail>([read.clone().into()])
            .when(AuditCommand::RecordRead(read.clone()))
            .then([read.into()]);
        assert_eq!(state.reads, 2);
    }
}
