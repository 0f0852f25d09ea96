//! JSON Schemas (OpenAPI 3.1 dialect, i.e. JSON Schema 2020-12) made from the
//! declared fields: a resource's representation, its write bodies, its list
//! page, and the error bodies every endpoint shares. The string patterns
//! they hold (from the functions writes are checked with) are in [`pattern`].

use serde_json::{Map, Value, json};

use crate::fields::{Field, Initial, Mode, Type, Unique};
use crate::resource::Resource;

mod pattern;

pub(super) use pattern::blank_pattern;
use pattern::{bool_input, code_class, email, not_nul, not_nul_nor_space, trimmed, username};

/// `#/components/schemas/{name}`.
pub(super) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `department` → `Department`: the component names of a resource.
pub(super) fn component_name(model: &str) -> String {
    let mut c = model.chars();
    c.next()
        .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The schema of one field's value. `returned`: in a response (embedded objects
/// inline, read-only fields marked) rather than a write body (related rows by id).
fn value(f: &Field, returned: bool) -> Value {
    let mut s = match f.ty {
        Type::Id => json!({"type": "integer", "format": "int64"}),
        // A write is trimmed before its length and characters are checked
        // (`crate::input`), so a write body's lengths are in its pattern.
        Type::Text { max, blank } if !returned => {
            let min = if blank { 0 } else { 1 };
            trimmed(&not_nul(), &not_nul_nor_space(), min, max)
        }
        Type::Text { max, blank } => {
            let mut s = json!({"type": "string", "maxLength": max});
            if !blank {
                s["minLength"] = json!(1);
            }
            s
        }
        Type::Code { max } if !returned => {
            let class = format!("[{}]", code_class());
            trimmed(&class, &class, 1, max)
        }
        Type::Code { max } => json!({
            "type": "string", "minLength": 1, "maxLength": max,
            "pattern": format!("^[{}]+$", code_class()),
        }),
        // Not `format: email`: the server's check is its own, and a format
        // validator would both refuse what it accepts and admit what it refuses.
        Type::Email => email(),
        Type::Bool if !returned => bool_input(),
        // Its character class is long: one component, referenced.
        Type::Username { max } => reference(&format!("Username{max}")),
        Type::Choice(choices) => json!({"type": "string", "enum": choices}),
        Type::Password { min, max } => {
            let mut s = trimmed(&not_nul(), &not_nul_nor_space(), min, max);
            s["format"] = json!("password");
            s
        }
        Type::Int { min, max } => json!({
            "type": "integer", "format": "int32", "minimum": min, "maximum": max,
        }),
        Type::Count => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Type::Bool => json!({"type": "boolean"}),
        Type::DateTime => json!({"type": "string", "format": "date-time"}),
        Type::Related { fields } if returned => object(fields, true),
        Type::Related { .. } => json!({
            "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX,
            "description": format!("id of a {} of the caller's organization", f.name),
        }),
    };
    if returned && !f.is_writable() {
        s["readOnly"] = json!(true);
    }
    if f.write_only {
        s["writeOnly"] = json!(true);
    }
    if let Some(scope) = f.unique {
        s["x-unique"] = json!(scope.as_str());
        let among = match scope {
            Unique::Organization => "within the organization",
            Unique::Everywhere => "across all organizations",
        };
        let unique = format!("unique {among}: a value another row has is a 400 field error");
        s["description"] = json!(match s["description"].as_str() {
            Some(d) => format!("{d}; {unique}"),
            None => unique,
        });
    }
    if let crate::fields::Write::Optional(d) = f.write {
        s["default"] = match d {
            Initial::Int(n) => json!(n),
            Initial::Bool(b) => json!(b),
            Initial::Blank => json!(""),
        };
    }
    s
}

/// A representation: every returned field present, nothing else. `embedded`:
/// an object inside another one, read-only as a whole.
pub(super) fn object(fields: &[Field], embedded: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields.iter().filter(|f| f.is_returned()) {
        let mut v = value(f, true);
        if embedded {
            v["readOnly"] = json!(true);
        }
        properties.insert(f.name.to_owned(), v);
        required.push(f.name);
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// A write body in `mode`: the writable fields under their write names; what
/// the mode requires is `required`. Other keys (read-only fields a client
/// echoes back) are ignored, so they are allowed.
pub(super) fn write_body(fields: &[Field], mode: Mode) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields.iter().filter(|f| f.is_writable()) {
        let name = f.write_name().into_owned();
        if f.is_required(mode) {
            required.push(name.clone());
        }
        properties.insert(name, value(f, false));
    }
    let mut s = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

/// DRF's `PageNumberPagination` body around `item`.
pub(super) fn page(item: Value) -> Value {
    let link = |what: &str| {
        json!({
            "type": ["string", "null"], "format": "uri",
            "description": format!("absolute URL of the {what} page; null on the {}", if what == "next" { "last" } else { "first" }),
        })
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer", "format": "int64", "minimum": 0, "description": "rows matching, over all pages"},
            "next": link("next"),
            "previous": link("previous"),
            "results": {"type": "array", "items": item},
        },
    })
}

/// The components of one resource: `{M}`, `Paginated{M}List`, `{M}Create`,
/// `{M}Replace`, `{M}Patch`.
pub(super) fn resource<R: Resource>(schemas: &mut Map<String, Value>) {
    for f in R::FIELDS {
        if let Type::Username { max } = f.ty {
            schemas.insert(format!("Username{max}"), username(max));
        }
    }
    let name = component_name(R::MODEL.name());
    schemas.insert(name.clone(), object(R::FIELDS, false));
    schemas.insert(format!("Paginated{name}List"), page(reference(&name)));
    for (suffix, mode) in [
        ("Create", Mode::Create),
        ("Replace", Mode::Replace),
        ("Patch", Mode::Patch),
    ] {
        schemas.insert(format!("{name}{suffix}"), write_body(R::FIELDS, mode));
    }
}

/// An object of required strings (the token endpoints' bodies).
pub(super) fn strings(names: &[&str], write_only: &[&str], closed: bool) -> Value {
    let properties: Map<String, Value> = names
        .iter()
        .map(|n| {
            let mut s = json!({"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"});
            if write_only.contains(n) {
                s["writeOnly"] = json!(true);
                s["format"] = json!("password");
            }
            ((*n).to_owned(), s)
        })
        .collect();
    let mut s = json!({"type": "object", "required": names, "properties": properties});
    if closed {
        s["additionalProperties"] = json!(false);
    }
    s
}

/// The bodies every endpoint shares: `{"detail": …}` and DRF's field errors.
pub(super) fn errors(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "DRF's error body. A rejected token adds SimpleJWT's `code` and `messages`.",
            "additionalProperties": false,
            "required": ["detail"],
            "properties": {
                "detail": {"type": "string"},
                "code": {"type": "string"},
                "messages": {"type": "array", "items": {
                    "type": "object", "additionalProperties": {"type": "string"},
                }},
            },
        }),
    );
    schemas.insert(
        "ValidationError".into(),
        json!({
            "type": "object",
            "description": "Field errors: each invalid field (or `non_field_errors`) with its messages.",
            "minProperties": 1,
            "additionalProperties": {
                "type": "array", "minItems": 1, "items": {"type": "string"},
            },
        }),
    );
    schemas.insert(
        "BadRequest".into(),
        json!({"oneOf": [reference("ValidationError"), reference("Error")]}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{faculty, users};

    #[test]
    fn representation_and_write_bodies_follow_the_declaration() {
        let user = object(&users::FIELDS, false);
        assert!(user["properties"].get("password").is_none(), "write-only");
        assert_eq!(user["properties"]["id"]["readOnly"], true);
        assert_eq!(user["required"].as_array().unwrap().len(), 8);
        let create = write_body(&users::FIELDS, Mode::Create);
        let replace = write_body(&users::FIELDS, Mode::Replace);
        assert!(
            create["required"]
                .as_array()
                .unwrap()
                .contains(&json!("password"))
        );
        assert!(
            !replace["required"]
                .as_array()
                .unwrap()
                .contains(&json!("password"))
        );
        assert!(
            write_body(&users::FIELDS, Mode::Patch)
                .get("required")
                .is_none()
        );
        let fac = object(&faculty::FIELDS, false);
        assert_eq!(
            fac["properties"]["department"]["properties"]["code"]["readOnly"],
            true
        );
        let w = write_body(&faculty::FIELDS, Mode::Create);
        assert_eq!(w["properties"]["department_id"]["type"], "integer");
        assert_eq!(w["properties"]["max_hours_per_week"]["default"], 18);
        assert!(w["properties"].get("id").is_none());
    }
}
