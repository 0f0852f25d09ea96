//! DRF list semantics: `page`, `page_size`, `search`, `ordering`, exact filters,
//! parsed once into a [`ListQuery`] whose normalised form is also the cache key's
//! parameter set (unknown parameters are ignored, so they can neither bust nor
//! poison the cache), and the paginated body `{count, next, previous, results}`
//! ([`page`]).

use crate::error::{ApiError, ApiResult, FieldErrors};
use tierstamp::Memo;

mod page;

pub(crate) use page::{Results, timestamp};

pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
pub(crate) const MAX_PAGE_SIZE: u64 = 500;
/// Search terms beyond this are ignored: a bound on the query's size.
const MAX_SEARCH_TERMS: usize = 10;
/// Longest `search` value, in characters (DRF's `max_length` error past it):
/// each term becomes a `LIKE` pattern, and SQLite refuses patterns over 50,000
/// bytes with an error the API would only report as a 500.
pub(crate) const MAX_SEARCH_CHARS: usize = 200;

pub(crate) use crate::fields::FilterKind;

/// The type an [`FilterKind::Int`] filter's value is parsed as: its bounds are
/// the ones the document declares.
pub(crate) type FilterInt = i64;

#[derive(Debug, Clone)]
pub enum FilterValue {
    Text(String),
    Int(FilterInt),
    Bool(bool),
}

impl FilterValue {
    fn key(&self) -> String {
        match self {
            FilterValue::Text(s) => s.clone(),
            FilterValue::Int(i) => i.to_string(),
            FilterValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page: u64,
    pub page_size: u64,
    /// Search terms, each to match one of the searched fields (DRF's SearchFilter).
    pub search: Vec<String>,
    /// (field, descending), known fields only, ending at [`TIE_BREAKER`]; the
    /// resource appends an ascending `id` when the ordering holds none.
    pub ordering: Vec<(&'static str, bool)>,
    pub filters: Vec<(&'static str, FilterValue)>,
    /// The page's rows are these (their ids already read, in any order), not
    /// found by `page` and `page_size`: set by the server, never by a client,
    /// and no part of a key or a link.
    pub only_ids: Option<Vec<i64>>,
    /// A row known to be at a position at or before the page's first, in a
    /// list ordered by `id` alone ([`ListQuery::by_id`]): the page is read
    /// from it, its `OFFSET` counted from there (`query::page`). Set by the
    /// server from the list's cached anchors, never by a client, and no part
    /// of a key or a link.
    pub anchor: Option<Anchor>,
}

/// Row `id` is at (0-based) `position` of a list ordered by `id` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub id: i64,
    pub position: u64,
}

/// A list's anchors are the ids at positions 0, `ANCHOR_EVERY`,
/// 2 × `ANCHOR_EVERY`, …: a page read from its anchor skips fewer than this
/// many index entries, however deep it is.
pub(crate) const ANCHOR_EVERY: u64 = 1000;

/// How many pages' worth of rows a page's `OFFSET` may skip for the page to
/// be read by the list's select itself, not by ids first
/// ([`ListQuery::is_deep`]): reading those rows from the heap costs less than
/// walking the index twice.
const SHALLOW_PAGES: u64 = 2;

/// Postgres rejects NUL in text; a value containing one can match nothing anyway.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

/// `page_size` as DRF's `PageNumberPagination` reads it (`_positive_int(…,
/// strict=True, cutoff=max_page_size)`): a positive integer, cut off at
/// [`MAX_PAGE_SIZE`] however large; anything else (absent, `0`, `-5`, `true`,
/// `abc`) is ignored and the default used, never an error.
fn page_size(raw: Option<&str>) -> u64 {
    use std::num::IntErrorKind;
    match raw.map(|s| s.trim().parse::<u64>()) {
        Some(Ok(n)) if n >= 1 => n.min(MAX_PAGE_SIZE),
        // Python's int() has no upper bound: 10**30 is a positive integer, cut off.
        Some(Err(e)) if *e.kind() == IntErrorKind::PosOverflow => MAX_PAGE_SIZE,
        _ => DEFAULT_PAGE_SIZE,
    }
}

/// The field every list ends its ordering with (unique, so it decides every tie).
pub(crate) const TIE_BREAKER: &str = "id";

/// `ordering` in its normal form, so that equal orders share one cache key:
/// known fields only, each once, and nothing from `id` on: `id` is unique, so
/// fields after it cannot change the order, and an ascending `id` at the end is
/// what every list appends anyway (`?ordering=id` is the default order, and
/// `?ordering=name,id` is `?ordering=name`).
fn parse_ordering(raw: &str, orderable: &[&'static str]) -> Vec<(&'static str, bool)> {
    let mut ordering: Vec<(&'static str, bool)> = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        let (name, desc) = match part.strip_prefix('-') {
            Some(n) => (n, true),
            None => (part, false),
        };
        let Some(field) = orderable.iter().find(|f| **f == name) else {
            continue;
        };
        if ordering.iter().any(|(f, _)| f == field) {
            continue;
        }
        if *field == TIE_BREAKER {
            if desc {
                ordering.push((field, desc));
            }
            break;
        }
        ordering.push((field, desc));
    }
    ordering
}

impl ListQuery {
    pub fn parse(
        raw: Option<&str>,
        filters: &[(&'static str, FilterKind)],
        orderable: &[&'static str],
    ) -> ApiResult<Self> {
        // Borrowed where nothing is escaped (what serde_urlencoded parses with, without
        // its copies). Decoding is lossy, as there: a bad escape or invalid UTF-8
        // becomes U+FFFD, never an error.
        let pairs: Vec<_> = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).collect();
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_ref())
        };
        let page = match get("page") {
            None | Some("") => 1,
            Some(p) => match p.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(ApiError::InvalidPage),
            },
        };
        let page_size = page_size(get("page_size"));
        // The offset must fit SQL's signed 64-bit OFFSET: a page past that is
        // past the end of any table.
        if (page - 1)
            .checked_mul(page_size)
            .is_none_or(|offset| offset > i64::MAX as u64)
        {
            return Err(ApiError::InvalidPage);
        }
        if get("search").is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS) {
            let mut e = FieldErrors::new();
            e.insert(
                "search".to_owned(),
                vec![format!(
                    "Ensure this field has no more than {MAX_SEARCH_CHARS} characters."
                )],
            );
            return Err(ApiError::Validation(e));
        }
        let search = get("search")
            .map(|s| {
                clean(s)
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|t| !t.is_empty())
                    .take(MAX_SEARCH_TERMS)
                    .map(|t| t.to_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let ordering = parse_ordering(get("ordering").unwrap_or(""), orderable);
        let mut errors = FieldErrors::new();
        let mut parsed = Vec::new();
        for (name, kind) in filters {
            let Some(v) = get(name).map(clean) else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let value = match kind {
                FilterKind::Text => Some(FilterValue::Text(v.to_owned())),
                FilterKind::Int => v.parse::<FilterInt>().ok().map(FilterValue::Int),
                FilterKind::Choice(choices) => choices
                    .contains(&v)
                    .then(|| FilterValue::Text(v.to_owned())),
                FilterKind::Bool => crate::fields::bool_word(v).map(FilterValue::Bool),
            };
            match value {
                Some(value) => parsed.push((*name, value)),
                None => {
                    let msg = match kind {
                        FilterKind::Int => "A valid integer is required.".to_owned(),
                        FilterKind::Choice(_) => format!(
                            "Select a valid choice. {v} is not one of the available choices."
                        ),
                        _ => "Must be a valid boolean.".to_owned(),
                    };
                    errors.insert((*name).to_owned(), vec![msg]);
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(ListQuery {
            page,
            page_size,
            search,
            ordering,
            filters: parsed,
            only_ids: None,
            anchor: None,
        })
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.page_size
    }

    /// The normalised parameters: what the cache key and the page links are made of.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if self.page != 1 {
            p.push(("page".to_owned(), self.page.to_string()));
        }
        if self.page_size != DEFAULT_PAGE_SIZE {
            p.push(("page_size".to_owned(), self.page_size.to_string()));
        }
        if !self.search.is_empty() {
            p.push(("search".to_owned(), self.search.join(" ")));
        }
        if !self.ordering.is_empty() {
            let o: Vec<String> = self
                .ordering
                .iter()
                .map(|(f, d)| format!("{}{f}", if *d { "-" } else { "" }))
                .collect();
            p.push(("ordering".to_owned(), o.join(",")));
        }
        for (name, v) in &self.filters {
            p.push(((*name).to_owned(), v.key()));
        }
        p
    }

    /// The parameters that decide which rows match, and so the total: the
    /// search and the filters, not the page, its size or the order. Lists that
    /// differ only in those share one cached total.
    pub fn total_params(&self) -> Vec<(String, String)> {
        self.params()
            .into_iter()
            .filter(|(n, _)| !matches!(n.as_str(), "page" | "page_size" | "ordering"))
            .collect()
    }

    /// `Some(descending)` when the list is ordered by `id` alone (the default
    /// order, or `ordering=id` / `-id`): the lists whose pages can be read
    /// from an [`Anchor`].
    pub fn by_id(&self) -> Option<bool> {
        match self.ordering.as_slice() {
            [] => Some(false),
            [(field, desc)] if *field == TIE_BREAKER => Some(*desc),
            _ => None,
        }
    }

    /// Whether the page lies deep enough to be found by its ids first
    /// (`query::page`), its `OFFSET` skipping index entries, not rows.
    pub fn is_deep(&self) -> bool {
        self.offset() > SHALLOW_PAGES * self.page_size
    }

    /// Whether the page is read from one of its list's anchors when they are
    /// cached: a deep page past the first anchor of a list ordered by `id`.
    pub fn starts_from_anchor(&self) -> bool {
        self.by_id().is_some() && self.is_deep() && self.offset() >= ANCHOR_EVERY
    }

    /// The anchor of this page among `anchors` (the ids at every
    /// [`ANCHOR_EVERY`]th position of the list): the last at or before its
    /// first row, if the list has one.
    pub fn anchor_in(&self, anchors: &[i64]) -> Option<Anchor> {
        let k = self.offset() / ANCHOR_EVERY;
        let id = *anchors.get(usize::try_from(k).ok()?)?;
        Some(Anchor {
            id,
            position: k * ANCHOR_EVERY,
        })
    }

    /// The parameters that decide which rows match and their order: all but
    /// the page's number and size (a list's anchors are keyed by them).
    pub fn order_params(&self) -> Vec<(String, String)> {
        self.params()
            .into_iter()
            .filter(|(n, _)| !matches!(n.as_str(), "page" | "page_size"))
            .collect()
    }

    pub fn filter(&self, name: &str) -> Option<&FilterValue> {
        self.filters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// A list read's request, parsed: its DRF query, the base of its page links and
/// its cache key.
#[derive(Debug)]
pub struct ParsedList {
    pub query: ListQuery,
    pub base: String,
    pub key: tierstamp::CacheKey,
    /// The key of the list's total (`resource::list::page_parts`).
    pub total_key: tierstamp::CacheKey,
    /// The key of the ids of the page's rows (`resource::list::rows`).
    pub ids_key: tierstamp::CacheKey,
    /// The key of the list's anchors, when this page is read from one
    /// ([`ListQuery::starts_from_anchor`]).
    pub anchors_key: Option<tierstamp::CacheKey>,
}

/// List requests already parsed, by what they were parsed from: the model, the
/// caller's scope, the base URL (scheme, host and path) and the raw query string.
///
/// A client repeats the same few list URLs, and parsing the query, normalising
/// it and building and hashing the key was a quarter of a cached list read's
/// own work. All of it is a function of those four inputs alone (the key's
/// prefix, version and generation keys are fixed for the process), so the
/// answer is reused as is; the memo key holds every input in full, so a query
/// string can never reach another request's entry. Only valid requests whose
/// inputs add up to at most `resource::list::MAX_MEMO_KEY` bytes are
/// remembered (the host is at most 255 bytes, the rest of the header is not
/// looked at), and the memo is emptied when it holds `MAX_MEMO_LISTS` of them:
/// memory stays bounded whatever clients send.
pub(crate) type ListMemo = Memo<Box<[u8]>, std::sync::Arc<ParsedList>, MAX_MEMO_LISTS>;

const MAX_MEMO_LISTS: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const F: &[(&str, FilterKind)] = &[
        ("department", FilterKind::Text),
        ("semester", FilterKind::Int),
        ("role", FilterKind::Choice(&["admin", "staff"])),
    ];
    pub(super) const O: &[&str] = &["id", "last_name"];

    #[test]
    fn defaults_and_clamping() {
        let q = ListQuery::parse(Some("page_size=100000&foo=bar"), F, O).unwrap();
        assert_eq!((q.page, q.page_size), (1, MAX_PAGE_SIZE));
        for ignored in ["abc", "0", "-5", "true", "", "1.5"] {
            let q = ListQuery::parse(Some(&format!("page_size={ignored}")), F, O).unwrap();
            assert_eq!(q.page_size, DEFAULT_PAGE_SIZE, "page_size={ignored}");
        }
        let q = ListQuery::parse(Some("page_size=100000000000000000000000000000"), F, O).unwrap();
        assert_eq!(q.page_size, MAX_PAGE_SIZE, "cut off, as DRF does");
        let q = ListQuery::parse(Some("page_size=abc"), F, O).unwrap();
        assert!(
            q.params().is_empty(),
            "unknown parameters never reach the key"
        );
    }

    #[test]
    fn bad_pages_are_404_and_bad_filters_400() {
        for p in [
            "0",
            "-1",
            "abc",
            "99999999999999999999999",
            "18446744073709551615",
            "200000000000000000",
        ] {
            assert!(matches!(
                ListQuery::parse(Some(&format!("page={p}")), F, O),
                Err(ApiError::InvalidPage)
            ));
        }
        match ListQuery::parse(Some("semester=abc"), F, O) {
            Err(ApiError::Validation(e)) => {
                assert_eq!(e["semester"], vec!["A valid integer is required."])
            }
            other => panic!("{other:?}"),
        }
        match ListQuery::parse(Some("semester=123456789012345678901&role=AAA"), F, O) {
            Err(ApiError::Validation(e)) => {
                assert_eq!(e["semester"], vec!["A valid integer is required."]);
                assert_eq!(
                    e["role"],
                    vec!["Select a valid choice. AAA is not one of the available choices."]
                );
            }
            other => panic!("{other:?}"),
        }
        let q = ListQuery::parse(Some("semester=-9223372036854775808&role=staff"), F, O).unwrap();
        assert_eq!(q.filters.len(), 2);
    }

    #[test]
    fn a_search_longer_than_the_bound_is_a_field_error() {
        let long = "a".repeat(MAX_SEARCH_CHARS + 1);
        match ListQuery::parse(Some(&format!("search={long}")), F, O) {
            Err(ApiError::Validation(e)) => assert_eq!(
                e["search"],
                vec![format!(
                    "Ensure this field has no more than {MAX_SEARCH_CHARS} characters."
                )]
            ),
            other => panic!("{other:?}"),
        }
        let q = ListQuery::parse(Some(&format!("search={}", &long[1..])), F, O).unwrap();
        assert_eq!(q.search, vec![long[1..].to_owned()]);
    }

    #[test]
    fn ordering_keeps_known_fields_once() {
        let q = ListQuery::parse(Some("ordering=-last_name,password,last_name"), F, O).unwrap();
        assert_eq!(q.ordering, vec![("last_name", true)]);
    }

    #[test]
    fn ordering_ends_at_the_tie_breaker() {
        let ordering = |raw: &str| {
            ListQuery::parse(Some(&format!("ordering={raw}")), F, O)
                .unwrap()
                .ordering
        };
        // The default order, spelled out, is the default order (one cache key).
        assert!(ordering("id").is_empty());
        assert!(ordering("id,-last_name").is_empty());
        assert_eq!(ordering("last_name,id"), vec![("last_name", false)]);
        // Descending id is an order of its own; nothing after it matters.
        assert_eq!(ordering("-id"), vec![("id", true)]);
        assert_eq!(
            ordering("last_name,-id,-last_name"),
            vec![("last_name", false), ("id", true)]
        );
    }
}
