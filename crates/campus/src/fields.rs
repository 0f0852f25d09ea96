//! A resource's fields, declared once: what [`crate::input::Input`] validates a
//! write against (type, length, range, choices, required or not, default) and
//! what the OpenAPI document (`crate::openapi`) describes, for both the
//! representation a resource returns and the bodies it accepts. A limit changed
//! here changes the check and the document together; the API tests hold the
//! serialized rows to the same declaration (`tests/api/openapi.rs`).

/// The type of a field, with the constraints its writes are checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    /// A primary key (64-bit integer).
    Id,
    /// Trimmed text of at most `max` characters; `blank` accepts `""` (Django's
    /// `blank=True`), which is also what an absent value becomes.
    Text {
        max: usize,
        blank: bool,
    },
    /// A code-like identifier (`CS`, `F0100001`): letters, digits, `_.-`.
    Code {
        max: usize,
    },
    /// An e-mail address, stored lower-cased.
    Email,
    /// A login name: letters, digits and `@.+-_`.
    Username {
        max: usize,
    },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A write-only secret of `min..=max` characters.
    Password {
        min: usize,
        max: usize,
    },
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A count (non-negative 64-bit integer); read-only data such as statistics.
    Count,
    Bool,
    /// An RFC 3339 UTC timestamp.
    DateTime,
    /// A related row of the same organization, shown as the embedded object
    /// `fields` and written as its id under `{name}_id`.
    Related {
        fields: &'static [Field],
    },
}

/// The strings a boolean is read from, compared ASCII-case-insensitively (in
/// a write body, where 1 and 0 are also accepted, and in a filter); the
/// document's pattern is made from the same lists.
pub(crate) const TRUE_WORDS: [&str; 4] = ["true", "1", "yes", "on"];
pub(crate) const FALSE_WORDS: [&str; 4] = ["false", "0", "no", "off"];

/// `s` as a boolean word of [`TRUE_WORDS`] or [`FALSE_WORDS`].
pub(crate) fn bool_word(s: &str) -> Option<bool> {
    let s = s.to_ascii_lowercase();
    if TRUE_WORDS.contains(&s.as_str()) {
        Some(true)
    } else if FALSE_WORDS.contains(&s.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// Where no two rows may share a field's value: a write that would is
/// answered 400 with DRF's field error (`department with this code already
/// exists.`), and the document says so (`x-unique`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unique {
    /// Among the rows of the caller's organization.
    Organization,
    /// Among all rows of every organization (a username: one login form).
    Everywhere,
}

impl Unique {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unique::Organization => "organization",
            Unique::Everywhere => "everywhere",
        }
    }
}

/// Whether and when a client writes a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Set by the server; ignored if a client sends it.
    ReadOnly,
    /// Required by POST and PUT.
    Required,
    /// Never required; a create without it gets the default.
    Optional(Initial),
    /// Required by POST only (a password: PUT keeps the current one).
    OnCreate,
}

/// What a create stores for an [`Write::Optional`] field it was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initial {
    Int(i64),
    Bool(bool),
    /// The empty string (a blank text field).
    Blank,
}

/// How a list filters by a field (`?name=value`).
#[derive(Debug, Clone, Copy)]
pub enum FilterKind {
    Text,
    /// A [`FilterInt`](crate::listing::FilterInt): a value outside its range is a field error, as a
    /// non-number is.
    Int,
    Bool,
    /// One of these strings (django-filter's `ChoiceFilter` for a field with
    /// `choices`): anything else is a field error, not an empty page.
    Choice(&'static [&'static str]),
}

/// What a list may do with a field: order by it (`?ordering=`), search it
/// (`?search=`), filter by it. Its column is the one of its name.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Listed {
    pub orderable: bool,
    pub searchable: bool,
    pub filter: Option<FilterKind>,
}

/// One declared field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The name in the representation (`department`); a related field is
    /// written as `{name}_id`.
    pub name: &'static str,
    pub ty: Type,
    pub write: Write,
    /// Accepted in writes, never returned (a password).
    pub write_only: bool,
    pub unique: Option<Unique>,
    pub list: Listed,
}

const NOT_LISTED: Listed = Listed {
    orderable: false,
    searchable: false,
    filter: None,
};

impl Field {
    pub(crate) const fn new(name: &'static str, ty: Type, write: Write) -> Field {
        Field {
            name,
            ty,
            write,
            write_only: false,
            unique: None,
            list: NOT_LISTED,
        }
    }

    /// The same field, which a list may be ordered by.
    pub(crate) const fn orderable(self) -> Field {
        Field {
            list: Listed {
                orderable: true,
                ..self.list
            },
            ..self
        }
    }

    /// The same field, which `?search=` looks in.
    pub(crate) const fn searchable(self) -> Field {
        Field {
            list: Listed {
                searchable: true,
                ..self.list
            },
            ..self
        }
    }

    /// The same field, which a list may be filtered by, exactly: an integer
    /// field by an integer, a boolean by a boolean word, a choice by one of
    /// its choices, anything else (a related row: by its code) by text.
    pub(crate) const fn filterable(self) -> Field {
        let kind = match self.ty {
            Type::Int { .. } => FilterKind::Int,
            Type::Bool => FilterKind::Bool,
            Type::Choice(choices) => FilterKind::Choice(choices),
            _ => FilterKind::Text,
        };
        Field {
            list: Listed {
                filter: Some(kind),
                ..self.list
            },
            ..self
        }
    }

    /// The same field, its values unique within `scope`.
    pub(crate) const fn unique(self, scope: Unique) -> Field {
        Field {
            unique: Some(scope),
            ..self
        }
    }

    /// A server-set field (`id`, `created_at`, embedded objects' fields).
    pub(crate) const fn read_only(name: &'static str, ty: Type) -> Field {
        Field::new(name, ty, Write::ReadOnly)
    }

    pub(crate) const fn required(name: &'static str, ty: Type) -> Field {
        Field::new(name, ty, Write::Required)
    }

    pub(crate) const fn optional(name: &'static str, ty: Type, default: Initial) -> Field {
        Field::new(name, ty, Write::Optional(default))
    }

    /// Required on create, never returned.
    pub(crate) const fn secret(name: &'static str, ty: Type) -> Field {
        Field {
            name,
            ty,
            write: Write::OnCreate,
            write_only: true,
            unique: None,
            list: NOT_LISTED,
        }
    }

    /// The key a write sends this field under (`department_id` for `department`).
    pub(crate) fn write_name(&self) -> std::borrow::Cow<'static, str> {
        match self.ty {
            Type::Related { .. } => format!("{}_id", self.name).into(),
            _ => self.name.into(),
        }
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.write != Write::ReadOnly
    }

    pub(crate) fn is_returned(&self) -> bool {
        !self.write_only
    }

    /// Whether a write in `mode` must carry the field.
    pub(crate) fn is_required(&self, mode: Mode) -> bool {
        match (self.write, mode) {
            (_, Mode::Patch) => false,
            (Write::Required, _) => true,
            (Write::OnCreate, Mode::Create) => true,
            _ => false,
        }
    }
}

/// The three kinds of write, by how they treat absent fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// POST: required fields must be there; absent optional ones get their default.
    Create,
    /// PUT: replaces; required fields must be there, absent optional ones are
    /// left as they are (DRF: not in `validated_data`).
    Replace,
    /// PATCH: changes only the fields given.
    Patch,
}

impl Mode {
    pub(crate) fn of(creating: bool, partial: bool) -> Mode {
        match (creating, partial) {
            (_, true) => Mode::Patch,
            (true, false) => Mode::Create,
            (false, false) => Mode::Replace,
        }
    }
}

/// The declaration of `key` (a representation name or a write name) in `fields`.
pub(crate) fn find<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    fields
        .iter()
        .find(|f| f.name == key || f.write_name() == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_by_mode() {
        let name = Field::required("name", Type::Email);
        let pw = Field::secret("password", Type::Password { min: 8, max: 128 });
        let active = Field::optional("is_active", Type::Bool, Initial::Bool(true));
        assert!(name.is_required(Mode::Create) && name.is_required(Mode::Replace));
        assert!(!name.is_required(Mode::Patch));
        assert!(pw.is_required(Mode::Create) && !pw.is_required(Mode::Replace));
        assert!(!active.is_required(Mode::Create));
        let dept = Field::required("department", Type::Related { fields: &[] });
        assert_eq!(dept.write_name(), "department_id");
        assert_eq!(find(&[dept], "department_id").unwrap().name, "department");
    }
}
