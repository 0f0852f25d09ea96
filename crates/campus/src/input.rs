//! DRF-style validation of a write's JSON object: each field reader records its
//! own error messages (DRF's wording), and [`Input::finish`] turns them into one
//! 400 with every field error at once.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, FieldErrors};

pub struct Input<'a> {
    map: &'a Map<String, Value>,
    /// PATCH: absent fields are left alone instead of required.
    partial: bool,
    errors: FieldErrors,
}

impl<'a> Input<'a> {
    pub fn new(map: &'a Map<String, Value>, partial: bool) -> Self {
        Input {
            map,
            partial,
            errors: FieldErrors::new(),
        }
    }

    pub fn error(&mut self, field: &str, msg: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(msg.into());
    }

    pub fn has_error(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    /// The raw value; `None` if absent (recording "required" unless partial or
    /// `optional`).
    fn raw(&mut self, field: &str, optional: bool) -> Option<&'a Value> {
        match self.map.get(field) {
            Some(v) => Some(v),
            None => {
                if !self.partial && !optional {
                    self.error(field, "This field is required.");
                }
                None
            }
        }
    }

    pub fn string(&mut self, field: &str, max_len: usize) -> Option<String> {
        match self.raw(field, false)? {
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

    /// A string that may be blank or absent (Django's `blank=True`): `""` then.
    pub fn optional_string(&mut self, field: &str, max_len: usize) -> Option<String> {
        match self.map.get(field) {
            None if self.partial => None,
            None => Some(String::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Some(String::new()),
            Some(_) => self.string(field, max_len),
        }
    }

    /// A code-like identifier (`CS`, `F0100001`): letters, digits, `_.-`.
    pub fn code(&mut self, field: &str, max_len: usize) -> Option<String> {
        let s = self.string(field, max_len)?;
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            Some(s)
        } else {
            self.error(
                field,
                "Enter a valid value: letters, digits, '_', '.' or '-'.",
            );
            None
        }
    }

    pub fn email(&mut self, field: &str) -> Option<String> {
        let s = self.string(field, 254)?;
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

    pub fn int(&mut self, field: &str, min: i64, max: i64, optional: bool) -> Option<i64> {
        let v = self.raw(field, optional)?;
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

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        let v = self.raw(field, true)?;
        let b = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if b.is_none() {
            self.error(field, "Must be a valid boolean.");
        }
        b
    }

    /// A primary key of a related row (`department_id`).
    pub fn pk(&mut self, field: &str) -> Option<i64> {
        let v = self.raw(field, false)?;
        match v {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
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

    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// DRF's message for a related key that does not exist (or is another tenant's).
pub fn missing_pk(id: i64) -> String {
    format!("Invalid pk \"{id}\" - object does not exist.")
}
