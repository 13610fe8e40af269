use std::borrow::Borrow;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{DomainError, Uuid};

/// Every aggregate: pure decide/evolve. No I/O, no clock, no random ids: commands carry new ids
/// and anything looked up beforehand.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// What callers ask of the aggregate.
    type Command;
    /// What happened to the aggregate.
    type Event: DomainEvent;
    /// Stream category; the stream name is `"{CATEGORY}-{uuid}"`.
    const CATEGORY: &'static str;
    /// Turns a command into the events it causes, or refuses it.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;
    /// Applies one event to the state.
    fn evolve(self, event: &Self::Event) -> Self;
}

/// An aggregate's event enum: `{"type": "<VariantName>", "data": {...}}` when serialized.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static
{
    /// The published type name: the variant (and struct) name. It never changes.
    fn event_type(&self) -> &'static str;
    /// Version of the payload's schema.
    fn schema_version(&self) -> u16 {
        1
    }
    /// The payload's personal fields (names, handles, free text), as JSON
    /// Pointers: those its JSON Schema marks `"x-personal": true`. The store
    /// commits to them through salted hashes, so they can be erased later
    /// without breaking the hash chain.
    fn personal_fields(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The `"x-personal": true` properties of each payload schema, as JSON
/// Pointers, by event type: read from the schemas once, so that the schema
/// is the one list the writer, the verifier and a later eraser share.
pub(crate) fn personal_fields_of(
    schemas: Vec<(&'static str, u16, schemars::Schema)>,
) -> std::collections::HashMap<&'static str, &'static [&'static str]> {
    schemas
        .into_iter()
        .map(|(event_type, _, schema)| {
            let mut fields: Vec<&'static str> = schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, p)| p.get("x-personal") == Some(&Value::Bool(true)))
                .map(|(name, _)| &*Box::leak(format!("/{name}").into_boxed_str()))
                .collect();
            fields.sort_unstable();
            (event_type, &*Box::leak(fields.into_boxed_slice()))
        })
        .collect()
}

/// The stream name of aggregate `A` with id `id`: `"{CATEGORY}-{id}"`.
pub fn stream_name<A: Aggregate>(id: Uuid) -> String {
    format!("{}-{}", A::CATEGORY, id)
}

/// Splits an event into its type name and its `data` payload.
pub fn encode_event<E: DomainEvent>(event: &E) -> (&'static str, Value) {
    // Events are plain structs of strings, numbers, ids and dates: serializing cannot fail.
    let value = serde_json::to_value(event).expect("domain events always serialize to JSON");
    let data = match value {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        other => other,
    };
    (event.event_type(), data)
}

/// Rebuilds an event from its type name and `data` payload.
pub fn decode_event<E: DomainEvent>(event_type: &str, data: Value) -> Result<E, serde_json::Error> {
    let mut map = serde_json::Map::with_capacity(2);
    map.insert("type".to_owned(), Value::String(event_type.to_owned()));
    map.insert("data".to_owned(), data);
    serde_json::from_value(Value::Object(map))
}

/// [`decode_event`] from a borrowed payload: readers of the log decode
/// every event once, and copying each payload first cost them more than
/// the decoding.
pub fn decode_event_ref<E: DomainEvent>(
    event_type: &str,
    data: &Value,
) -> Result<E, serde_json::Error> {
    use serde::de::value::MapDeserializer;
    let event_type = Value::String(event_type.to_owned());
    let entries = [("type", &event_type), ("data", data)];
    E::deserialize(MapDeserializer::<_, serde_json::Error>::new(
        entries.into_iter(),
    ))
}

/// Folds events into a state, starting from `A::default()`.
pub fn replay<A: Aggregate>(events: impl IntoIterator<Item = impl Borrow<A::Event>>) -> A {
    events
        .into_iter()
        .fold(A::default(), |state, event| state.evolve(event.borrow()))
}

/// Declares an aggregate's event enum from its event structs: one newtype variant per struct,
/// named like it, adjacently tagged, plus `DomainEvent`, `From<Struct>` and the schema list.
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant), )*
        }

        impl $name {
            /// Every event type name of this enum, in declaration order.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// `(type, schema version, JSON schema of the data payload)` for every event type.
            pub(crate) fn schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
                vec![$((stringify!($variant), 1, schemars::schema_for!($variant))),*]
            }
        }

        impl $crate::DomainEvent for $name {
            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => stringify!($variant), )*
                }
            }

            fn personal_fields(&self) -> &'static [&'static str] {
                static FIELDS: std::sync::OnceLock<
                    std::collections::HashMap<&'static str, &'static [&'static str]>,
                > = std::sync::OnceLock::new();
                FIELDS
                    .get_or_init(|| $crate::event::personal_fields_of(Self::schemas()))
                    .get(self.event_type())
                    .copied()
                    .unwrap_or(&[])
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(event: $variant) -> Self {
                    Self::$variant(event)
                }
            }
        )*
    };
}
pub(crate) use domain_events;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{TaskAssigned, TaskEvent, TaskUnassigned};

    #[test]
    fn encoding_an_event_splits_type_and_data() {
        let event = TaskEvent::TaskAssigned(TaskAssigned {
            assignee: Uuid::from_u128(1),
            previous: None,
        });
        let (event_type, data) = encode_event(&event);
        assert_eq!(event_type, "TaskAssigned");
        assert_eq!(
            data,
            json!({"assignee": "00000000-0000-0000-0000-000000000001", "previous": null})
        );
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"type": "TaskAssigned", "data": data})
        );
    }

    #[test]
    fn decoding_an_encoded_event_round_trips() {
        let event = TaskEvent::TaskUnassigned(TaskUnassigned {
            previous: Uuid::from_u128(7),
        });
        let (event_type, data) = encode_event(&event);
        let decoded: TaskEvent = decode_event(event_type, data).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn decoding_a_borrowed_payload_gives_what_decoding_it_owned_does() {
        let events = [
            TaskEvent::TaskUnassigned(TaskUnassigned {
                previous: Uuid::from_u128(7),
            }),
            TaskEvent::TaskAssigned(TaskAssigned {
                assignee: Uuid::from_u128(1),
                previous: None,
            }),
        ];
        for event in events {
            let (event_type, data) = encode_event(&event);
            let borrowed: TaskEvent = decode_event_ref(event_type, &data).unwrap();
            assert_eq!(borrowed, event);
        }
        let wrong = decode_event_ref::<TaskEvent>("TaskAssigned", &json!({"assignee": 5}));
        assert!(wrong.is_err(), "a bad payload is an error, not a default");
        let unknown = decode_event_ref::<TaskEvent>("NoSuchEvent", &json!({}));
        assert!(unknown.is_err(), "an unknown type is an error");
    }

    #[test]
    fn empty_events_round_trip_with_an_empty_object() {
        let event = crate::ProjectEvent::ProjectArchived(crate::ProjectArchived {});
        let (event_type, data) = encode_event(&event);
        assert_eq!(data, json!({}));
        assert_eq!(
            decode_event::<crate::ProjectEvent>(event_type, data).unwrap(),
            event
        );
    }

    #[test]
    fn decoding_tolerates_unknown_fields_for_additive_evolution() {
        let data = json!({"previous": "00000000-0000-0000-0000-000000000007", "reason": "new"});
        let decoded: TaskEvent = decode_event("TaskUnassigned", data).unwrap();
        assert_eq!(decoded.event_type(), "TaskUnassigned");
    }

    #[test]
    fn decoding_an_unknown_type_fails() {
        assert!(decode_event::<TaskEvent>("TaskExploded", json!({})).is_err());
    }

    #[test]
    fn stream_names_join_category_and_id() {
        assert_eq!(
            stream_name::<crate::Task>(Uuid::from_u128(1)),
            "task-00000000-0000-0000-0000-000000000001"
        );
    }
}
