//! The read path: one `MGET` of an entry and its counters, or the script when a
//! counter is missing (creating it is a write); replies are decoded here, and
//! the epoch of a read is taken after its call.

use std::sync::Arc;

use bytes::Bytes;

use crate::envelope::{Envelope, Stamp};
use crate::error::StoreError;
use crate::store::{Fetched, Tier};

use super::{RedisStore, parse_u64};

impl RedisStore {
    /// The current stamp only (no entry): what strict L1 validation reads.
    pub(crate) async fn fetch_stamp(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> Result<Stamp, StoreError> {
        self.fetch_inner(key, gen_keys, false)
            .await
            .map(|f| f.stamp)
    }

    /// The fast path of a read: one `MGET` of the entries and their counters.
    /// It is atomic like the scripts and reads the same keys, but Redis runs it
    /// without the Lua VM, which was half of Redis' time per cached read. Only
    /// when a counter is missing (first use, or evicted) must the script run,
    /// since creating the counter is a write. `None` if the reply is malformed.
    async fn mget(
        &self,
        op: &'static str,
        keys: &[&str],
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, StoreError> {
        let reply = self
            .call(op, |mut c| async move {
                // Sized up front: grown argument by argument, its buffers were
                // reallocated several times on every cached read.
                let bytes = 4 + keys.iter().map(|k| k.len()).sum::<usize>();
                let mut cmd = redis::Cmd::with_capacity(keys.len() + 1, bytes);
                cmd.arg("MGET");
                for k in keys {
                    cmd.arg(*k);
                }
                // The reply is taken apart here rather than by `query_async`,
                // whose error scan and generic conversion walk it twice more.
                match redis::aio::ConnectionLike::req_packed_command(&mut c, &cmd).await? {
                    redis::Value::ServerError(e) => Err(e.into()),
                    other => Ok(other),
                }
            })
            .await?;
        Ok(mget_values(reply, keys.len()))
    }

    pub(super) async fn fetch_inner(
        &self,
        key: &str,
        gen_keys: &[String],
        with_entry: bool,
    ) -> Result<Fetched, StoreError> {
        self.ready().await?;
        let mut keys: Vec<&str> = Vec::with_capacity(gen_keys.len() + 1);
        if with_entry {
            keys.push(key);
        }
        keys.extend(gen_keys.iter().map(String::as_str));
        if let Some(mut raw) = self.mget("fetch", &keys).await? {
            // Read after the call, never before: the call may have reconnected
            // to a server that came back with older data, whose identity check
            // bumps the epoch before the read runs. The epoch only grows; a
            // newer one only makes validation stricter.
            let epoch = self.epoch();
            let entry = if with_entry {
                decode_entry(key, raw.remove(0))
            } else {
                None
            };
            if let Some(gens) = present_gens(raw) {
                return Ok(Fetched {
                    entry,
                    stamp: Stamp { epoch, gens },
                    tier: Tier::L2,
                });
            }
        }
        let inner = &self.inner;
        let raw: Vec<Option<Vec<u8>>> = self
            .call("fetch", |mut c| async move {
                let mut inv = inner.scripts.fetch.key(key);
                for k in gen_keys {
                    inv.key(k);
                }
                inv.arg(if with_entry { "1" } else { "0" });
                inv.invoke_async(&mut c).await
            })
            .await?;
        if raw.len() != gen_keys.len() + 1 {
            return Err(StoreError::Malformed("fetch reply length"));
        }
        let epoch = self.epoch();
        let mut it = raw.into_iter();
        let entry = decode_entry(key, it.next().flatten());
        let gens = it
            .map(|g| {
                g.ok_or(StoreError::Malformed("missing generation"))
                    .and_then(|b| parse_u64_bytes(&b))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fetched {
            entry,
            stamp: Stamp { epoch, gens },
            tier: Tier::L2,
        })
    }

    pub(super) async fn fetch_many_inner(
        &self,
        items: &[(&str, &[String])],
    ) -> Result<Vec<Fetched>, StoreError> {
        self.ready().await?;
        let keys: Vec<&str> = items
            .iter()
            .flat_map(|(key, gens)| std::iter::once(*key).chain(gens.iter().map(String::as_str)))
            .collect();
        if let Some(raw) = self.mget("fetch_many", &keys).await? {
            // After the call, as in `fetch_inner`.
            let epoch = self.epoch();
            let mut it = raw.into_iter();
            let mut out = Vec::with_capacity(items.len());
            for (key, gen_keys) in items {
                let entry = decode_entry(key, it.next().flatten());
                let Some(gens) = present_gens(it.by_ref().take(gen_keys.len())) else {
                    break;
                };
                out.push(Fetched {
                    entry,
                    stamp: Stamp { epoch, gens },
                    tier: Tier::L2,
                });
            }
            if out.len() == items.len() {
                return Ok(out);
            }
        }
        let inner = &self.inner;
        let raw: Vec<Option<Vec<u8>>> = self
            .call("fetch_many", |mut c| async move {
                let mut inv = inner.scripts.fetch_many.prepare_invoke();
                for (key, gen_keys) in items {
                    inv.key(*key);
                    for g in *gen_keys {
                        inv.key(g);
                    }
                    inv.arg(gen_keys.len());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        // After the call, as in `fetch_inner`.
        decode_items(items, raw, self.epoch(), "fetch_many reply length")
    }
}

impl RedisStore {
    /// Takes the lease on the first item's key and, when it did, reads every
    /// item as `fetch_many_inner` does, in one round trip (`lease.lua`; the
    /// items in one slot); `None` if another holder has the lease.
    pub(super) async fn lease_and_fetch_inner(
        &self,
        items: &[(&str, &[String])],
        token: u64,
        ttl: std::time::Duration,
    ) -> Result<Option<Vec<Fetched>>, StoreError> {
        let Some((key, _)) = items.first() else {
            return Err(StoreError::Malformed("lease_and_fetch of no key"));
        };
        self.ready().await?;
        let inner = &self.inner;
        let lease = crate::store::lease_key(key);
        let raw: Option<Vec<Option<Vec<u8>>>> = self
            .call("lease", |mut c| async move {
                let mut inv = inner.scripts.lease.key(&lease);
                inv.arg(token.to_string())
                    .arg(ttl.as_millis().max(1) as u64);
                for (key, gen_keys) in items {
                    inv.key(*key);
                    for g in *gen_keys {
                        inv.key(g);
                    }
                    inv.arg(gen_keys.len());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        // After the call, as in `fetch_inner`.
        decode_items(items, raw, self.epoch(), "lease reply length").map(Some)
    }
}

/// The reply of a script that reads items (`read_items` in counters.lua):
/// each item's entry, then its generations, all present.
fn decode_items(
    items: &[(&str, &[String])],
    raw: Vec<Option<Vec<u8>>>,
    epoch: u64,
    wrong_length: &'static str,
) -> Result<Vec<Fetched>, StoreError> {
    let expected: usize = items.iter().map(|(_, g)| g.len() + 1).sum();
    if raw.len() != expected {
        return Err(StoreError::Malformed(wrong_length));
    }
    let mut it = raw.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for (key, gen_keys) in items {
        let entry = decode_entry(key, it.next().flatten());
        let gens = it
            .by_ref()
            .take(gen_keys.len())
            .map(|g| {
                g.ok_or(StoreError::Malformed("missing generation"))
                    .and_then(|b| parse_u64_bytes(&b))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Fetched {
            entry,
            stamp: Stamp { epoch, gens },
            tier: Tier::L2,
        });
    }
    Ok(out)
}

/// An `MGET` reply's values, `None` if it is not `len` strings and nils (the
/// caller then reads through the script, which reports any error properly).
fn mget_values(reply: redis::Value, len: usize) -> Option<Vec<Option<Vec<u8>>>> {
    let redis::Value::Array(items) = reply else {
        return None;
    };
    if items.len() != len {
        return None;
    }
    items
        .into_iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => Some(Some(b)),
            redis::Value::Nil => Some(None),
            _ => None,
        })
        .collect()
}

/// Generations as read by `MGET`, or `None` if one is missing or not a number
/// (the script then creates it).
fn present_gens(raw: impl IntoIterator<Item = Option<Vec<u8>>>) -> Option<Vec<u64>> {
    raw.into_iter()
        .map(|g| g.and_then(|b| parse_u64_bytes(&b).ok()))
        .collect()
}

fn decode_entry(key: &str, raw: Option<Vec<u8>>) -> Option<Arc<Envelope>> {
    match Envelope::decode(Bytes::from(raw?)) {
        Ok(e) => Some(Arc::new(e)),
        Err(e) => {
            tracing::warn!(key, error = %e, "undecodable cache entry treated as a miss");
            None
        }
    }
}

fn parse_u64_bytes(b: &[u8]) -> Result<u64, StoreError> {
    // Counters are read on every cached request, as plain digits (what INCR
    // writes): those are folded directly, 19 digits at most so nothing overflows.
    // Anything else takes the general parse and its error.
    if !b.is_empty()
        && b.len() <= 19
        && let Some(n) = b.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    {
        return Ok(n);
    }
    std::str::from_utf8(b)
        .map_err(|_| StoreError::Malformed("counter"))
        .and_then(parse_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mget_replies_are_strings_and_nils_of_the_asked_length() {
        use redis::Value;
        let reply = || {
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Nil,
                Value::BulkString(b"7".to_vec()),
            ])
        };
        assert_eq!(
            mget_values(reply(), 3),
            Some(vec![Some(b"a".to_vec()), None, Some(b"7".to_vec())])
        );
        assert_eq!(mget_values(reply(), 2), None);
        assert_eq!(mget_values(Value::Nil, 0), None);
        assert_eq!(mget_values(Value::Int(1), 1), None);
        let odd = Value::Array(vec![Value::Int(3), Value::Nil]);
        assert_eq!(mget_values(odd, 2), None);
    }

    #[test]
    fn counters_parse_like_the_general_parse() {
        for ok in ["0", "7", "0042", "1796543809702064", "9999999999999999999"] {
            assert_eq!(
                parse_u64_bytes(ok.as_bytes()).unwrap(),
                ok.parse::<u64>().unwrap()
            );
        }
        // Past the fast path: the general parse answers.
        assert_eq!(parse_u64_bytes(b" 12 ").unwrap(), 12);
        assert_eq!(parse_u64_bytes(b"18446744073709551615").unwrap(), u64::MAX);
        for bad in ["", "-1", "1a", "99999999999999999999", "\u{1F600}"] {
            assert!(parse_u64_bytes(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
