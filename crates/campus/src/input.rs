//! DRF-style validation of a write's JSON object against the resource's declared
//! fields ([`crate::fields`]): each field reader records its own error messages
//! (DRF's wording), and [`Input::finish`] turns them into one 400 with every
//! field error at once. Lengths, ranges, choices, whether a field is required and
//! its default all come from the declaration, which is also what the OpenAPI
//! document is made of.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, FieldErrors};
use crate::fields::{self, Field, Initial, Mode, Type, Write};

/// Django's `EmailField` bound.
pub(crate) const EMAIL_MAX: usize = 254;
/// Every character a code may hold.
pub(crate) const CODE_SYMBOLS: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
/// What a username may hold besides letters and digits (`char::is_alphanumeric`).
pub(crate) const USERNAME_SYMBOLS: &str = "@.+-_";

pub(crate) struct Input<'a> {
    map: &'a Map<String, Value>,
    fields: &'static [Field],
    mode: Mode,
    errors: FieldErrors,
}

impl<'a> Input<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, fields: &'static [Field], mode: Mode) -> Self {
        Input {
            map,
            fields,
            mode,
            errors: FieldErrors::new(),
        }
    }

    pub(crate) fn error(&mut self, field: &str, msg: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(msg.into());
    }

    /// The declaration of a field the resource reads: reading an undeclared one
    /// is a programming error, caught by the first test that writes.
    fn decl(&self, key: &str) -> Field {
        match fields::find(self.fields, key) {
            Some(f) if f.is_writable() => *f,
            _ => panic!("`{key}` is not a declared writable field"),
        }
    }

    /// What a create stores for an absent optional field.
    fn default(&self, field: &Field) -> Option<Initial> {
        match (self.mode, field.write) {
            (Mode::Create, Write::Optional(d)) => Some(d),
            _ => None,
        }
    }

    /// The raw value; `None` if absent (recording "required" if the declaration
    /// and the mode require it).
    fn raw(&mut self, field: &Field) -> Option<&'a Value> {
        let key = field.write_name();
        match self.map.get(key.as_ref()) {
            Some(v) => Some(v),
            None => {
                if field.is_required(self.mode) {
                    self.error(&key, "This field is required.");
                }
                None
            }
        }
    }

    /// A text field of any declared kind (text, code, e-mail, username, choice,
    /// password), checked as its declaration says.
    pub(crate) fn text(&mut self, key: &str) -> Option<String> {
        let field = self.decl(key);
        let name = field.name;
        match field.ty {
            Type::Text { max, blank: true } => match self.map.get(name) {
                None => self.default(&field).map(|_| String::new()),
                Some(Value::String(s)) if s.trim().is_empty() => Some(String::new()),
                Some(_) => self.string(&field, max),
            },
            Type::Text { max, blank: false } => self.string(&field, max),
            Type::Code { max } => {
                let s = self.string(&field, max)?;
                if s.chars().all(|c| CODE_SYMBOLS.contains(c)) {
                    Some(s)
                } else {
                    self.error(
                        name,
                        "Enter a valid value: letters, digits, '_', '.' or '-'.",
                    );
                    None
                }
            }
            Type::Email => self.email(&field),
            Type::Username { max } => {
                let s = self.string(&field, max)?;
                if s.chars()
                    .all(|c| c.is_alphanumeric() || USERNAME_SYMBOLS.contains(c))
                {
                    Some(s)
                } else {
                    self.error(name, "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.");
                    None
                }
            }
            Type::Choice(choices) => {
                let s = self.string(&field, usize::MAX)?;
                if choices.contains(&s.as_str()) {
                    Some(s)
                } else {
                    self.error(name, format!("\"{s}\" is not a valid choice."));
                    None
                }
            }
            Type::Password { min, max } => {
                let s = self.string(&field, max)?;
                if s.chars().count() < min {
                    self.error(
                        name,
                        format!("Ensure this field has at least {min} characters."),
                    );
                    None
                } else {
                    Some(s)
                }
            }
            other => panic!("`{key}` is declared as {other:?}, not text"),
        }
    }

    fn string(&mut self, decl: &Field, max_len: usize) -> Option<String> {
        let field = decl.name;
        match self.raw(decl)? {
            Value::String(s) => {
                let s = s.trim().to_owned();
                if s.is_empty() {
                    self.error(field, "This field may not be blank.");
                    None
                } else if s.chars().count() > max_len {
                    self.error(
                        field,
                        format!("Ensure this field has no more than {max_len} characters."),
                    );
                    None
                } else if s.contains('\0') {
                    self.error(field, "Null characters are not allowed.");
                    None
                } else {
                    Some(s)
                }
            }
            Value::Null => {
                self.error(field, "This field may not be null.");
                None
            }
            _ => {
                self.error(field, "Not a valid string.");
                None
            }
        }
    }

    fn email(&mut self, decl: &Field) -> Option<String> {
        let field = decl.name;
        let s = self.string(decl, EMAIL_MAX)?;
        let valid = s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !s.chars().any(char::is_whitespace);
        if valid {
            Some(s.to_lowercase())
        } else {
            self.error(field, "Enter a valid email address.");
            None
        }
    }

    pub(crate) fn int(&mut self, key: &str) -> Option<i64> {
        let decl = self.decl(key);
        let Type::Int { min, max } = decl.ty else {
            panic!("`{key}` is declared as {:?}, not an integer", decl.ty);
        };
        let field = decl.name;
        let Some(v) = self.raw(&decl) else {
            return match self.default(&decl) {
                Some(Initial::Int(n)) => Some(n),
                _ => None,
            };
        };
        let n = match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            None => {
                self.error(field, "A valid integer is required.");
                None
            }
            Some(n) if n < min => {
                self.error(
                    field,
                    format!("Ensure this value is greater than or equal to {min}."),
                );
                None
            }
            Some(n) if n > max => {
                self.error(
                    field,
                    format!("Ensure this value is less than or equal to {max}."),
                );
                None
            }
            Some(n) => Some(n),
        }
    }

    pub(crate) fn boolean(&mut self, key: &str) -> Option<bool> {
        let decl = self.decl(key);
        let Type::Bool = decl.ty else {
            panic!("`{key}` is declared as {:?}, not a boolean", decl.ty);
        };
        let field = decl.name;
        let Some(v) = self.raw(&decl) else {
            return match self.default(&decl) {
                Some(Initial::Bool(b)) => Some(b),
                _ => None,
            };
        };
        let b = match v {
            Value::Bool(b) => Some(*b),
            // DRF's `1 in TRUE_VALUES` also holds for 1.0 (and 0.0, -0.0 for false).
            Value::Number(n) => match n.as_f64() {
                Some(1.0) => Some(true),
                Some(0.0) => Some(false),
                _ => None,
            },
            Value::String(s) => fields::bool_word(s),
            _ => None,
        };
        if b.is_none() {
            self.error(field, "Must be a valid boolean.");
        }
        b
    }

    /// A primary key of a related row (`department_id`).
    pub(crate) fn pk(&mut self, key: &str) -> Option<i64> {
        let decl = self.decl(key);
        let Type::Related { .. } = decl.ty else {
            panic!("`{key}` is declared as {:?}, not a related row", decl.ty);
        };
        let key = decl.write_name();
        let field = key.as_ref();
        let v = self.raw(&decl)?;
        match v {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            // Django looks a pk of 7.0 up as 7; the document's `integer` admits it.
            Value::Number(n) if n.as_f64().is_some_and(integral_i64) => {
                n.as_f64().map(|f| f as i64)
            }
            Value::String(s) if s.parse::<i64>().is_ok() => s.parse().ok(),
            Value::Null => {
                self.error(field, "This field may not be null.");
                None
            }
            other => {
                let kind = match other {
                    Value::String(_) => "str",
                    Value::Bool(_) => "bool",
                    Value::Array(_) => "list",
                    Value::Object(_) => "dict",
                    _ => "float",
                };
                self.error(
                    field,
                    format!("Incorrect type. Expected pk value, received {kind}."),
                );
                None
            }
        }
    }

    pub(crate) fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// A float with no fractional part, inside `i64`'s range (`2^63` itself is not).
fn integral_i64(f: f64) -> bool {
    f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64
}

/// DRF's message for a related key that does not exist (or is another tenant's).
pub(crate) fn missing_pk(id: i64) -> String {
    format!("Invalid pk \"{id}\" - object does not exist.")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIELDS: [Field; 4] = [
        Field::read_only("id", Type::Id),
        Field::required("code", Type::Code { max: 4 }),
        Field::optional("hours", Type::Int { min: 0, max: 80 }, Initial::Int(18)),
        Field::optional(
            "note",
            Type::Text {
                max: 10,
                blank: true,
            },
            Initial::Blank,
        ),
    ];

    fn read(
        body: serde_json::Value,
        mode: Mode,
    ) -> (Option<String>, Option<i64>, Option<String>, FieldErrors) {
        let map = body.as_object().unwrap().clone();
        let mut i = Input::new(&map, &FIELDS, mode);
        let got = (i.text("code"), i.int("hours"), i.text("note"));
        let errors = match i.finish() {
            Err(ApiError::Validation(e)) => e,
            _ => FieldErrors::new(),
        };
        (got.0, got.1, got.2, errors)
    }

    #[test]
    fn the_declaration_decides_required_defaults_and_limits() {
        let (_, hours, note, errors) = read(json!({}), Mode::Create);
        assert_eq!(
            (hours, note.as_deref()),
            (Some(18), Some("")),
            "create defaults"
        );
        assert_eq!(errors["code"], vec!["This field is required."]);
        let (_, hours, note, errors) = read(json!({"code": "AB"}), Mode::Replace);
        assert_eq!(
            (hours, note),
            (None, None),
            "PUT leaves absent optional fields"
        );
        assert!(errors.is_empty());
        let (_, _, _, errors) = read(json!({}), Mode::Patch);
        assert!(errors.is_empty(), "PATCH requires nothing");
        let (_, _, _, errors) = read(json!({"code": "ABCDE", "hours": 81}), Mode::Patch);
        assert_eq!(
            errors["code"],
            vec!["Ensure this field has no more than 4 characters."]
        );
        assert_eq!(
            errors["hours"],
            vec!["Ensure this value is less than or equal to 80."]
        );
    }

    #[test]
    #[should_panic(expected = "not a declared writable field")]
    fn reading_an_undeclared_field_is_a_bug() {
        let map = Map::new();
        Input::new(&map, &FIELDS, Mode::Patch).text("id");
    }
}
