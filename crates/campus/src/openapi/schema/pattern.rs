//! String schemas whose patterns are made from the functions writes are
//! checked with (trimmed text, codes, usernames, e-mail addresses, written
//! booleans), and the regex character classes they are built from.

use serde_json::{Value, json};

use crate::fields::{FALSE_WORDS, TRUE_WORDS};
use crate::input::{CODE_SYMBOLS, EMAIL_MAX, USERNAME_SYMBOLS};

/// `c` inside a regex character class, in a form ECMA-262, Python's `re` and
/// Rust's `regex` all read alike: `\uXXXX` in the Basic Multilingual Plane,
/// the character itself beyond it (each has its own astral escape syntax).
fn class_char(c: char) -> String {
    match u32::from(c) {
        _ if c.is_ascii_alphanumeric() => c.to_string(),
        n @ 0..=0xFFFF => format!("\\u{n:04X}"),
        _ => c.to_string(),
    }
}

fn escape_class(chars: &str) -> String {
    chars.chars().map(class_char).collect()
}

/// The body of a regex character class of every character `member` holds,
/// as ranges: the document's patterns are made from the functions the writes
/// are checked with, not from a second list.
fn char_class(member: fn(char) -> bool) -> String {
    let mut class = String::new();
    let mut chars = (char::MIN..=char::MAX).peekable();
    while let Some(first) = chars.next() {
        if !member(first) {
            continue;
        }
        let mut last = first;
        while let Some(&next) = chars.peek() {
            if !member(next) || u32::from(next) != u32::from(last) + 1 {
                break;
            }
            last = next;
            chars.next();
        }
        class.push_str(&class_char(first));
        if last != first {
            class.push('-');
            class.push_str(&class_char(last));
        }
    }
    class
}

/// Each class walks every `char` (1.1 million; seconds in a debug build), so
/// each is made once per process: the router is built before the server
/// accepts, and a test's timeouts would count the walk.
macro_rules! memo_class {
    ($vis:vis $name:ident, $member:expr) => {
        $vis fn $name() -> &'static str {
            static CLASS: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| char_class($member));
            &CLASS
        }
    };
}

// What `str::trim` removes (`char::is_whitespace`), as a class body.
memo_class!(whitespace_class, char::is_whitespace);
memo_class!(alphanumeric_class, char::is_alphanumeric);
memo_class!(pub(super) code_class, |c| CODE_SYMBOLS.contains(c));

pub(super) fn not_nul() -> String {
    "[^\\u0000]".to_owned()
}

pub(super) fn not_nul_nor_space() -> String {
    format!("[^\\u0000{}]", whitespace_class())
}

/// A written string that is trimmed (`str::trim`) and then must be
/// `min..=max` characters of `inner` that start and end with one of `edge`
/// (both regex classes). The pattern pins the trimmed value: the leading
/// whitespace ends at the first `edge` character and the trailing starts
/// after the last, so the part between is exactly the value the server keeps.
/// A NUL is nowhere allowed (DRF's `Null characters are not allowed.`;
/// PostgreSQL refuses them), and with `min` 0 a blank value stands for "".
pub(super) fn trimmed(inner: &str, edge: &str, min: usize, max: usize) -> Value {
    let core = match (min, max) {
        (_, 0) => String::new(),
        // Nothing inside can be whitespace: the value is `min..=max` of them.
        _ if inner == edge => format!("{edge}{{{min},{max}}}"),
        (0 | 1, 1) => edge.to_owned(),
        (0 | 1, _) => format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2),
        _ => format!("{edge}{inner}{{{},{}}}{edge}", min - 2, max - 2),
    };
    let core = if min == 0 && max > 0 {
        format!("(?:{core})?")
    } else {
        core
    };
    let space = format!("[{}]*", whitespace_class());
    let trims = "surrounding whitespace is trimmed";
    let description = match min {
        0 => format!("at most {max} characters, {trims}; blank stands for \"\""),
        _ => format!("{min} to {max} characters, {trims}"),
    };
    json!({
        "type": "string",
        "pattern": format!("^{space}{core}{space}$"),
        "description": description,
    })
}

/// A query value a filter ignores: blank (`crate::listing` trims it and
/// drops NULs).
pub(in crate::openapi) fn blank_pattern() -> String {
    format!("^[\\u0000{}]*$", whitespace_class())
}

/// An e-mail address as [`crate::input`] checks it once trimmed: no
/// whitespace, something before the first `@`, after it a domain holding a
/// `.` that neither starts nor ends it, at most [`EMAIL_MAX`] characters. Two
/// patterns, as a regex without look-around cannot say both at once.
pub(super) fn email() -> Value {
    let ws = whitespace_class();
    let space = format!("[{ws}]*");
    let any = format!("[^\\u0000{ws}]");
    let local = format!("[^@\\u0000{ws}]+");
    let edge = format!("[^.\\u0000{ws}]");
    json!({
        "type": "string",
        "description": "an e-mail address, stored lower-cased; surrounding whitespace is trimmed",
        "allOf": [
            {"pattern": format!("^{space}{local}@{edge}{any}*\\.{any}*{edge}{space}$")},
            {"pattern": format!("^{space}{any}{{1,{EMAIL_MAX}}}{space}$")},
        ],
    })
}

/// A written boolean, as [`crate::input::Input::boolean`] reads it: JSON's
/// booleans, 1 and 0, or a word of [`TRUE_WORDS`] / [`FALSE_WORDS`] in any
/// ASCII case.
pub(super) fn bool_input() -> Value {
    let any_case = |w: &str| -> String {
        w.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let words: Vec<String> = TRUE_WORDS
        .iter()
        .chain(&FALSE_WORDS)
        .map(|w| any_case(w))
        .collect();
    json!({"anyOf": [
        {"type": "boolean"},
        {"type": "integer", "enum": [0, 1]},
        {"type": "string", "pattern": format!("^(?:{})$", words.join("|"))},
    ]})
}

/// `Username{max}`: a login name as written and returned (trimmed letters,
/// digits and [`USERNAME_SYMBOLS`]).
pub(super) fn username(max: usize) -> Value {
    let class = format!(
        "[{}{}]",
        alphanumeric_class(),
        escape_class(USERNAME_SYMBOLS)
    );
    let mut s = trimmed(&class, &class, 1, max);
    s["description"] = json!(format!(
        "letters, digits and @ . + - _; {}",
        s["description"].as_str().unwrap_or_default()
    ));
    s
}
