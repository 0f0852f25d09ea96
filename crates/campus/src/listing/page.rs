//! The DRF page body, `{count, next, previous, results}`: its links, made from
//! the query's normal form, and its rows, spliced in as already serialized.

use bytes::Bytes;

use super::ListQuery;
use crate::error::{ApiError, ApiResult};

impl ListQuery {
    /// The DRF page body. `base` is `http://host/path/`.
    pub fn render(&self, count: u64, results: Results, base: &str) -> ApiResult<Bytes> {
        let pages = count.div_ceil(self.page_size).max(1);
        if self.page > pages {
            return Err(ApiError::InvalidPage);
        }
        let link = |page: u64| {
            let mut params: Vec<(String, String)> = self
                .params()
                .into_iter()
                .filter(|(n, _)| n != "page")
                .collect();
            if page != 1 {
                params.insert(0, ("page".to_owned(), page.to_string()));
            }
            let query = serde_urlencoded::to_string(&params).unwrap_or_default();
            if query.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{query}")
            }
        };
        let next = (self.page < pages).then(|| link(self.page + 1));
        let previous = (self.page > 1).then(|| link(self.page - 1));
        // `{"count": …, "next": …, "previous": …, "results": […]}`, the page's
        // rows spliced in as they were serialized.
        let mut body = Vec::with_capacity(results.0.len() + 2 * base.len() + 96);
        body.extend_from_slice(b"{\"count\":");
        body.extend_from_slice(count.to_string().as_bytes());
        for (name, link) in [("next", next), ("previous", previous)] {
            body.extend_from_slice(format!(",\"{name}\":").as_bytes());
            serde_json::to_writer(&mut body, &link).map_err(anyhow::Error::new)?;
        }
        body.extend_from_slice(b",\"results\":");
        body.extend_from_slice(&results.0);
        body.push(b'}');
        Ok(Bytes::from(body))
    }
}

/// A page's rows, serialized as the JSON array of the body's `results`.
///
/// Rows go from the database's structs straight to bytes: building a
/// `serde_json::Value` per row (an ordered map per object, a string per key)
/// and serializing that was most of a 500-row miss's own time.
#[derive(Debug)]
pub struct Results(Bytes);

impl Results {
    /// No rows: `[]`.
    pub fn empty() -> Self {
        Results(Bytes::from_static(b"[]"))
    }

    /// The array of `rows`, each already serialized (a row's cached detail,
    /// which is the same bytes as its representation in a list).
    pub fn joined<'a>(rows: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut out = Vec::with_capacity(4096);
        out.push(b'[');
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(row);
        }
        out.push(b']');
        Results(Bytes::from(out))
    }

    /// The serialized array.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serialized array (shared, not copied).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// An array of ids (a page's, or a list's anchors), cached as it is: its
    /// buffer holds no more than its bytes.
    pub fn ids(ids: &[i64]) -> ApiResult<Self> {
        Ok(Results(Bytes::from(
            serde_json::to_vec(ids).map_err(anyhow::Error::new)?,
        )))
    }

    /// The rows, each as its representation serializes.
    pub fn of<T: serde::Serialize>(rows: impl IntoIterator<Item = T>) -> ApiResult<Self> {
        use serde::ser::{SerializeSeq, Serializer};
        let rows = rows.into_iter();
        // About a student's row: a page's buffer grows once or twice, not
        // seven times.
        let mut out = Vec::with_capacity(rows.size_hint().0.max(8) * 384);
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut seq = ser.serialize_seq(None).map_err(anyhow::Error::new)?;
        for row in rows {
            seq.serialize_element(&row).map_err(anyhow::Error::new)?;
        }
        seq.end().map_err(anyhow::Error::new)?;
        // `Bytes` keeps the whole buffer: smaller rows than the guess do not
        // keep the rest of it alive.
        if out.capacity() > 2 * out.len() {
            out.shrink_to_fit();
        }
        Ok(Results(Bytes::from(out)))
    }
}

/// A timestamp as chrono's own `Serialize` writes it (RFC 3339 in UTC with
/// `Z`, and the fewest of 0, 3, 6 or 9 fraction digits that hold it), written
/// as one string: chrono's goes through `collect_str`, which serde_json
/// escapes a character at a time, 1,000 times a 500-row page.
pub(crate) fn timestamp<S: serde::Serializer>(
    t: &&chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{F, O};
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            #[serde(serialize_with = "timestamp")]
            t: &'a chrono::DateTime<chrono::Utc>,
        }
        for nanos in [0, 120_000_000, 123_456_000, 123_456_789, 7] {
            let t = chrono::DateTime::from_timestamp(1_796_646_625, nanos).unwrap();
            assert_eq!(
                serde_json::to_string(&Row { t: &t }).unwrap(),
                format!("{{\"t\":{}}}", serde_json::to_string(&t).unwrap())
            );
        }
    }

    #[test]
    fn links_follow_drf() {
        let q = ListQuery::parse(Some("page=2&department=CS"), F, O).unwrap();
        let none = || Results::of(Vec::<Value>::new()).unwrap();
        let body: Value =
            serde_json::from_slice(&q.render(120, none(), "http://h/api/faculty/").unwrap())
                .unwrap();
        assert_eq!(body["next"], "http://h/api/faculty/?page=3&department=CS");
        assert_eq!(body["previous"], "http://h/api/faculty/?department=CS");
        assert!(matches!(
            q.render(10, none(), "http://h/"),
            Err(ApiError::InvalidPage)
        ));
        let empty = ListQuery::parse(None, F, O).unwrap();
        assert!(
            empty.render(0, none(), "http://h/").is_ok(),
            "an empty first page is valid"
        );
    }

    /// The body is written by hand around the serialized rows: it must be the
    /// bytes serde_json makes of the same page as a `Value`, key order included.
    #[test]
    fn the_body_is_what_serde_json_makes_of_it() {
        let rows = vec![json!({"id": 1, "name": "a \"quoted\" é"}), json!({"id": 2})];
        let q = ListQuery::parse(Some("page=2&page_size=1&search=x y"), F, O).unwrap();
        let body = q
            .render(3, Results::of(&rows).unwrap(), "http://h/api/x/")
            .unwrap();
        let expected = json!({
            "count": 3,
            "next": "http://h/api/x/?page=3&page_size=1&search=x+y",
            "previous": "http://h/api/x/?page_size=1&search=x+y",
            "results": rows,
        });
        assert_eq!(body, serde_json::to_vec(&expected).unwrap());
        let first = ListQuery::parse(None, F, O).unwrap();
        let body = first
            .render(0, Results::of(&[] as &[Value]).unwrap(), "http://h/")
            .unwrap();
        assert_eq!(
            body,
            serde_json::to_vec(&json!({"count": 0, "next": null, "previous": null, "results": []}))
                .unwrap()
        );
    }
}
