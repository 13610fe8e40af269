//! The tag catalog aggregate: one per organization, in stream `"tags-{org_id}"`.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Checks;
use crate::event::domain_events;
use crate::{Aggregate, DomainError, TagId};

/// A live tag.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct TagDef {
    /// Its name, unique case-insensitively among live tags.
    pub name: String,
    /// Its color, `#rrggbb` in lowercase.
    pub color: Option<String>,
}

/// State of an organization's tag catalog. It needs no creation: the first tag starts it.
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct TagCatalog {
    /// Whether the catalog has any event.
    pub exists: bool,
    /// Live tags.
    pub tags: BTreeMap<TagId, TagDef>,
    /// Ids of deleted tags, never reused.
    pub deleted: BTreeSet<TagId>,
}

impl TagCatalog {
    /// Whether `id` is a live tag.
    pub fn contains(&self, id: TagId) -> bool {
        self.tags.contains_key(&id)
    }

    /// Whether a live tag other than `except` has `name`, compared case-insensitively.
    fn name_taken(&self, name: &str, except: Option<TagId>) -> bool {
        let name = name.to_lowercase();
        self.tags
            .iter()
            .any(|(id, tag)| Some(*id) != except && tag.name.to_lowercase() == name)
    }
}

/// Commands of the tag catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum TagCommand {
    /// Adds a tag to the catalog.
    CreateTag {
        tag_id: TagId,
        name: String,
        color: Option<String>,
    },
    /// Renames a tag.
    RenameTag { tag_id: TagId, name: String },
    /// Deletes a tag.
    DeleteTag { tag_id: TagId },
}

/// A tag was added to the catalog.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TagCreated {
    pub tag_id: TagId,
    pub name: String,
    /// `#rrggbb`, lowercase.
    pub color: Option<String>,
}

/// A tag was renamed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TagRenamed {
    pub tag_id: TagId,
    pub from: String,
    pub to: String,
}

/// A tag was deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TagDeleted {
    pub tag_id: TagId,
}

domain_events! {
    /// Events of the tag catalog.
    pub enum TagEvent {
        TagCreated,
        TagRenamed,
        TagDeleted,
    }
}

fn is_hex_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit())
}

impl Aggregate for TagCatalog {
    type Command = TagCommand;
    type Event = TagEvent;
    const CATEGORY: &'static str = "tags";

    fn decide(&self, command: TagCommand) -> Result<Vec<TagEvent>, DomainError> {
        match command {
            TagCommand::CreateTag {
                tag_id,
                name,
                color,
            } => {
                if self.contains(tag_id) || self.deleted.contains(&tag_id) {
                    return Err(DomainError::AlreadyExists("tag"));
                }
                let mut checks = Checks::default();
                checks.length("name", &name, 1, 50);
                let name = name.trim().to_owned();
                let color = color.map(|color| color.trim().to_ascii_lowercase());
                if let Some(color) = &color {
                    checks.check(is_hex_color(color), "color", "must be #rrggbb");
                }
                checks.finish()?;
                if self.name_taken(&name, None) {
                    return Err(DomainError::AlreadyExists("tag name"));
                }
                Ok(vec![TagCreated {
                    tag_id,
                    name,
                    color,
                }
                .into()])
            }
            TagCommand::RenameTag { tag_id, name } => {
                let tag = self.tags.get(&tag_id).ok_or(DomainError::NotFound("tag"))?;
                let mut checks = Checks::default();
                checks.length("name", &name, 1, 50);
                checks.finish()?;
                let name = name.trim().to_owned();
                if name == tag.name {
                    return Ok(vec![]);
                }
                if self.name_taken(&name, Some(tag_id)) {
                    return Err(DomainError::AlreadyExists("tag name"));
                }
                Ok(vec![TagRenamed {
                    tag_id,
                    from: tag.name.clone(),
                    to: name,
                }
                .into()])
            }
            TagCommand::DeleteTag { tag_id } => {
                if !self.contains(tag_id) {
                    return Err(DomainError::NotFound("tag"));
                }
                Ok(vec![TagDeleted { tag_id }.into()])
            }
        }
    }

    fn evolve(mut self, event: &TagEvent) -> Self {
        self.exists = true;
        match event {
            TagEvent::TagCreated(e) => {
                self.tags.insert(
                    e.tag_id,
                    TagDef {
                        name: e.name.clone(),
                        color: e.color.clone(),
                    },
                );
            }
            TagEvent::TagRenamed(e) => {
                if let Some(tag) = self.tags.get_mut(&e.tag_id) {
                    tag.name = e.to.clone();
                }
            }
            TagEvent::TagDeleted(e) => {
                self.tags.remove(&e.tag_id);
                self.deleted.insert(e.tag_id);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Given};
    use crate::Uuid;

    const BUG: Uuid = Uuid::from_u128(0x90);
    const UX: Uuid = Uuid::from_u128(0x91);

    fn given(events: impl IntoIterator<Item = TagEvent>) -> Given<TagCatalog> {
        testing::given(events)
    }

    fn created(tag_id: Uuid, name: &str) -> TagEvent {
        TagCreated {
            tag_id,
            name: name.into(),
            color: None,
        }
        .into()
    }

    fn create(tag_id: Uuid, name: &str, color: Option<&str>) -> TagCommand {
        TagCommand::CreateTag {
            tag_id,
            name: name.into(),
            color: color.map(Into::into),
        }
    }

    fn rename(tag_id: Uuid, name: &str) -> TagCommand {
        TagCommand::RenameTag {
            tag_id,
            name: name.into(),
        }
    }

    #[test]
    fn the_first_tag_starts_the_catalog() {
        let catalog = given([])
            .when(create(BUG, " bug ", Some("#FF0000")))
            .then([TagCreated {
                tag_id: BUG,
                name: "bug".into(),
                color: Some("#ff0000".into()),
            }
            .into()]);
        assert!(catalog.exists);
        assert!(catalog.contains(BUG));
    }

    #[test]
    fn creating_a_tag_with_a_taken_name_is_rejected_case_insensitively() {
        given([created(BUG, "Bug")])
            .when(create(UX, "BUG", None))
            .then_err(DomainError::AlreadyExists("tag name"));
    }

    #[test]
    fn the_name_of_a_deleted_tag_can_be_used_again() {
        given([created(BUG, "bug"), TagDeleted { tag_id: BUG }.into()])
            .when(create(UX, "bug", None))
            .then([created(UX, "bug")]);
    }

    #[test]
    fn reusing_a_tag_id_is_rejected() {
        given([created(BUG, "bug")])
            .when(create(BUG, "other", None))
            .then_err(DomainError::AlreadyExists("tag"));
        given([created(BUG, "bug"), TagDeleted { tag_id: BUG }.into()])
            .when(create(BUG, "other", None))
            .then_err(DomainError::AlreadyExists("tag"));
    }

    #[test]
    fn creating_a_tag_with_a_blank_name_and_a_bad_color_reports_both() {
        given([])
            .when(create(BUG, "  ", Some("red")))
            .then_err(DomainError::Validation(vec![
                crate::FieldError::new("name", "must not be empty"),
                crate::FieldError::new("color", "must be #rrggbb"),
            ]));
    }

    #[test]
    fn creating_a_tag_with_a_name_over_50_characters_is_rejected() {
        given([])
            .when(create(BUG, &"t".repeat(51), None))
            .then_err(DomainError::validation(
                "name",
                "must be at most 50 characters",
            ));
    }

    #[test]
    fn colors_must_be_six_hex_digits() {
        for color in ["#fff", "#gggggg", "ff0000", "#ff00000", ""] {
            let error = TagCatalog::default()
                .decide(create(BUG, "bug", Some(color)))
                .unwrap_err();
            assert_eq!(error, DomainError::validation("color", "must be #rrggbb"));
        }
    }

    #[test]
    fn renaming_a_tag_records_old_and_new_names() {
        let catalog = given([created(BUG, "bug")])
            .when(rename(BUG, "defect"))
            .then([TagRenamed {
                tag_id: BUG,
                from: "bug".into(),
                to: "defect".into(),
            }
            .into()]);
        assert_eq!(catalog.tags[&BUG].name, "defect");
    }

    #[test]
    fn renaming_a_tag_may_change_only_its_case() {
        given([created(BUG, "bug")])
            .when(rename(BUG, "Bug"))
            .then([TagRenamed {
                tag_id: BUG,
                from: "bug".into(),
                to: "Bug".into(),
            }
            .into()]);
    }

    #[test]
    fn renaming_a_tag_to_its_name_changes_nothing() {
        given([created(BUG, "bug")])
            .when(rename(BUG, " bug"))
            .then([]);
    }

    #[test]
    fn renaming_a_tag_to_a_taken_name_is_rejected() {
        given([created(BUG, "bug"), created(UX, "ux")])
            .when(rename(UX, "BUG"))
            .then_err(DomainError::AlreadyExists("tag name"));
    }

    #[test]
    fn renaming_a_tag_to_blank_is_rejected() {
        given([created(BUG, "bug")])
            .when(rename(BUG, ""))
            .then_err(DomainError::validation("name", "must not be empty"));
    }

    #[test]
    fn renaming_an_unknown_tag_is_rejected() {
        given([])
            .when(rename(BUG, "bug"))
            .then_err(DomainError::NotFound("tag"));
    }

    #[test]
    fn deleting_a_tag_removes_it() {
        let catalog = given([created(BUG, "bug")])
            .when(TagCommand::DeleteTag { tag_id: BUG })
            .then([TagDeleted { tag_id: BUG }.into()]);
        assert!(!catalog.contains(BUG));
    }

    #[test]
    fn deleting_an_unknown_or_deleted_tag_is_rejected() {
        given([])
            .when(TagCommand::DeleteTag { tag_id: BUG })
            .then_err(DomainError::NotFound("tag"));
        given([created(BUG, "bug"), TagDeleted { tag_id: BUG }.into()])
            .when(TagCommand::DeleteTag { tag_id: BUG })
            .then_err(DomainError::NotFound("tag"));
    }
}
