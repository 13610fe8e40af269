//! `schemas/` is generated from the code, committed, and checked here:
//! - every event type's schema is `schemas/events/<Type>.v<version>.json` and
//!   every command body's is `schemas/commands/<Body>.json`; drift fails;
//! - a change that breaks a published event contract (a removed or retyped
//!   field, a new required field, a removed enum value, a removed event type)
//!   fails unless the event gets a new schema version.
//!
//! Regenerate with `UPDATE_SCHEMAS=1 cargo test -p tasklog-e2e --test schemas`;
//! it refuses to overwrite a published version with a breaking change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn render(schema: &schemars::Schema) -> String {
    serde_json::to_string_pretty(schema).expect("a schema serializes") + "\n"
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SCHEMAS").is_some()
}

/// Why `new` cannot read what was written under `old`; empty when it can.
fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare("", old, new, &mut out);
    // Named subschemas ($defs) are compared by name.
    if let (Some(old_defs), Some(new_defs)) = (old.get("$defs"), new.get("$defs")) {
        for (name, old_def) in old_defs.as_object().into_iter().flatten() {
            match new_defs.get(name) {
                Some(new_def) => compare(&format!("$defs/{name}"), old_def, new_def, &mut out),
                None => out.push(format!("$defs/{name}: removed")),
            }
        }
    }
    out
}

/// The values an enum schema allows: `enum`, or `oneOf` of `const`s (documented variants).
fn enum_values(v: &Value) -> Option<Vec<Value>> {
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return Some(values.clone());
    }
    let consts: Vec<Value> = v
        .get("oneOf")?
        .as_array()?
        .iter()
        .filter_map(|variant| variant.get("const").cloned())
        .collect();
    (!consts.is_empty()).then_some(consts)
}

fn compare(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    for key in ["type", "$ref", "format"] {
        if old.get(key).is_some() && old.get(key) != new.get(key) {
            out.push(format!(
                "{path}: {key} changed from {} to {}",
                old[key],
                new.get(key).unwrap_or(&Value::Null)
            ));
        }
    }
    if let Some(old_values) = enum_values(old) {
        let new_values = enum_values(new).unwrap_or_default();
        for v in old_values.iter().filter(|v| !new_values.contains(v)) {
            out.push(format!("{path}: value {v} removed"));
        }
    }
    if let Some(old_props) = old.get("properties").and_then(Value::as_object) {
        let new_props = new.get("properties").and_then(Value::as_object);
        for (field, old_field) in old_props {
            match new_props.and_then(|p| p.get(field)) {
                Some(new_field) => compare(&format!("{path}/{field}"), old_field, new_field, out),
                None => out.push(format!("{path}/{field}: removed")),
            }
        }
    }
    let required = |v: &Value| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for field in required(new).difference(&required(old)) {
        out.push(format!("{path}/{field}: newly required"));
    }
}

#[test]
fn event_schemas_match_the_code_and_published_contracts_never_break() {
    let dir = root().join("events");
    std::fs::create_dir_all(&dir).unwrap();
    let mut problems = Vec::new();
    let mut current = BTreeSet::new();
    for (name, version, schema) in tasklog_domain::event_schemas() {
        let file = dir.join(format!("{name}.v{version}.json"));
        current.insert(file.file_name().unwrap().to_string_lossy().into_owned());
        let generated = render(&schema);
        let committed = std::fs::read_to_string(&file).ok();
        if committed.as_deref() == Some(generated.as_str()) {
            continue;
        }
        let breaking = committed
            .as_deref()
            .map(|c| {
                breaking_changes(
                    &serde_json::from_str(c).unwrap(),
                    &serde_json::from_str(&generated).unwrap(),
                )
            })
            .unwrap_or_default();
        if !breaking.is_empty() {
            problems.push(format!(
                "{name} v{version} would break its published contract ({}); give the event a new schema \
                 version and upcast the old one instead",
                breaking.join("; ")
            ));
        } else if updating() {
            std::fs::write(&file, generated).unwrap();
        } else {
            problems.push(format!(
                "{} is out of date; run UPDATE_SCHEMAS=1 cargo test -p tasklog-e2e --test schemas",
                file.display()
            ));
        }
    }
    // A published event type never disappears: its events are in the log forever.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let ty = name.split(".v").next().unwrap_or_default().to_owned();
        let still_known = current.iter().any(|c| c.starts_with(&format!("{ty}.v")));
        if name.ends_with(".json") && !still_known {
            problems.push(format!(
                "event type {ty} was removed, but its events stay in the log"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn command_body_schemas_match_the_code() {
    let dir = root().join("commands");
    std::fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    for (name, schema) in tasklog_command_api::bodies::body_schemas() {
        let file = dir.join(format!("{name}.json"));
        let generated = render(&schema);
        if std::fs::read_to_string(&file).ok().as_deref() != Some(generated.as_str()) {
            if updating() {
                std::fs::write(&file, generated).unwrap();
            } else {
                stale.push(file.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (run UPDATE_SCHEMAS=1 cargo test -p tasklog-e2e --test schemas): {stale:?}"
    );
}

#[test]
fn removing_retyping_or_requiring_a_field_is_a_breaking_change() {
    use serde_json::json;
    let old = json!({
        "type": "object",
        "properties": { "title": { "type": "string" }, "priority": { "$ref": "#/$defs/P" } },
        "required": ["title"],
        "$defs": { "P": { "type": "string", "enum": ["low", "high"] } }
    });
    let additive = json!({
        "type": "object",
        "properties": {
            "title": { "type": "string" },
            "priority": { "$ref": "#/$defs/P" },
            "note": { "type": ["string", "null"] }
        },
        "required": ["title"],
        "$defs": { "P": { "type": "string", "enum": ["low", "high", "urgent"] } }
    });
    assert!(breaking_changes(&old, &additive).is_empty());

    let mut removed = old.clone();
    removed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("title");
    assert_eq!(breaking_changes(&old, &removed), ["/title: removed"]);

    let mut retyped = old.clone();
    retyped["properties"]["title"] = json!({ "type": "integer" });
    assert_eq!(breaking_changes(&old, &retyped).len(), 1);

    let mut required = old.clone();
    required["required"] = json!(["title", "priority"]);
    assert_eq!(
        breaking_changes(&old, &required),
        ["/priority: newly required"]
    );

    let mut narrowed = old.clone();
    narrowed["$defs"]["P"]["enum"] = json!(["low"]);
    assert_eq!(
        breaking_changes(&old, &narrowed),
        ["$defs/P: value \"high\" removed"]
    );

    let documented = |values: &[&str]| json!({ "oneOf": values.iter().map(|v| json!({ "type": "string", "const": v })).collect::<Vec<_>>() });
    assert!(breaking_changes(&documented(&["a", "b"]), &documented(&["a", "b", "c"])).is_empty());
    assert_eq!(
        breaking_changes(&documented(&["a", "b"]), &documented(&["a"])),
        [": value \"b\" removed"]
    );
}
