//! What a cache entry holds: the body exactly as it will be sent, plus the stamp it
//! was computed under, its soft expiry, how long the loader took, and its ETag.
//!
//! The framing is hand-written rather than serde-encoded so that decoding an entry
//! read from Redis is a bounds check and a zero-copy [`Bytes::slice`] of the body:
//! a hit never copies or re-serialises the response.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::StoreError;

const MAGIC: u8 = 0xC1;
const MAX_GENS: usize = 32;

/// The generations of an entry's dependencies and the epoch they were read under.
///
/// A reader *captures* a stamp before it runs its loader and stores the result under
/// it. An entry is valid only while the current stamp matches the one it was stored
/// under: one write (a generation bump) or one outage (an epoch bump) in between,
/// and the entry is never served again. That is the whole stale-set defence: it
/// depends on no timing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Stamp {
    /// The global epoch, bumped by an instance after it saw the shared store fail.
    pub epoch: u64,
    /// One generation per dependency, in the order of the entry's generation keys.
    pub gens: Vec<u64>,
}

impl Stamp {
    /// Whether an entry stored under `stored` is still valid now that the current
    /// stamp is `self`.
    pub fn validates(&self, stored: &Stamp) -> bool {
        stored.gens == self.gens && stored.epoch >= self.epoch
    }
}

/// A strong ETag: 128 bits of BLAKE3 over the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Etag(pub [u8; 16]);

impl Etag {
    /// The ETag of a body.
    pub fn of(body: &[u8]) -> Self {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(body).as_bytes()[..16]);
        Etag(out)
    }
    /// The header value, quoted: `"0123…"`.
    pub fn header_value(&self) -> String {
        String::from_utf8(self.header_bytes().to_vec()).expect("hex digits are ASCII")
    }
    /// [`header_value`](Self::header_value) as bytes, without allocating: written
    /// on every cached response, where pushing two digits at a time with
    /// capacity checks cost more than the rest of the response's headers.
    pub fn header_bytes(&self) -> [u8; 34] {
        let mut out = [b'"'; 34];
        for (i, x) in self.0.iter().enumerate() {
            out[1 + 2 * i] = HEX[usize::from(x >> 4)];
            out[2 + 2 * i] = HEX[usize::from(x & 15)];
        }
        out
    }
    /// Whether an `If-None-Match` header value names this ETag (or is `*`).
    pub fn matches(&self, if_none_match: &str) -> bool {
        let me = self.header_value();
        if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == me)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends lowercase hex; on every hit's path (ETags), so no `format!` per byte.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The stamp captured before the loader ran.
    pub stamp: Stamp,
    /// Unix time in ms after which the entry is served as `STALE` while it refreshes.
    pub soft_expiry_ms: u64,
    /// How long the loader took, in ms: the `delta` of probabilistic early refresh.
    pub load_ms: u32,
    /// The body's ETag.
    pub etag: Etag,
    /// The body.
    pub body: Bytes,
}

impl Envelope {
    /// Encodes the entry for the shared store.
    pub fn encode(&self) -> Bytes {
        let n = self.stamp.gens.len().min(MAX_GENS);
        let mut b = BytesMut::with_capacity(1 + 8 + 1 + 8 * n + 8 + 4 + 16 + self.body.len());
        b.put_u8(MAGIC);
        b.put_u64_le(self.stamp.epoch);
        b.put_u8(n as u8);
        for g in &self.stamp.gens[..n] {
            b.put_u64_le(*g);
        }
        b.put_u64_le(self.soft_expiry_ms);
        b.put_u32_le(self.load_ms);
        b.put_slice(&self.etag.0);
        b.put_slice(&self.body);
        b.freeze()
    }

    /// Decodes an entry; anything malformed (another program's value under our key,
    /// a truncated write) is an error, which callers treat as a miss.
    pub fn decode(raw: Bytes) -> Result<Self, StoreError> {
        let bad = StoreError::Malformed("cache envelope");
        let mut pos = 0usize;
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], StoreError> {
            let s = raw
                .get(*pos..*pos + n)
                .ok_or(StoreError::Malformed("cache envelope"))?;
            *pos += n;
            Ok(s)
        };
        let u64_at = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        if take(&mut pos, 1)?[0] != MAGIC {
            return Err(bad);
        }
        let epoch = u64_at(take(&mut pos, 8)?);
        let n = take(&mut pos, 1)?[0] as usize;
        if n > MAX_GENS {
            return Err(bad);
        }
        let mut gens = Vec::with_capacity(n);
        for _ in 0..n {
            gens.push(u64_at(take(&mut pos, 8)?));
        }
        let soft_expiry_ms = u64_at(take(&mut pos, 8)?);
        let load_ms = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes"));
        let mut etag = [0u8; 16];
        etag.copy_from_slice(take(&mut pos, 16)?);
        let body = raw.slice(pos..);
        Ok(Envelope {
            stamp: Stamp { epoch, gens },
            soft_expiry_ms,
            load_ms,
            etag: Etag(etag),
            body,
        })
    }

    /// Bytes this entry costs in an in-process cache (the weigher's measure).
    pub fn weight(&self) -> u32 {
        (self.body.len() + 64 + 8 * self.stamp.gens.len()).min(u32::MAX as usize) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        let body = Bytes::from_static(b"{\"count\":1}");
        Envelope {
            stamp: Stamp {
                epoch: 7,
                gens: vec![1, u64::MAX, 3],
            },
            soft_expiry_ms: 1_700_000_000_000,
            load_ms: 12,
            etag: Etag::of(&body),
            body,
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        assert_eq!(Envelope::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn truncated_or_foreign_values_are_rejected() {
        let raw = sample().encode();
        for cut in 0..(raw.len() - 11) {
            assert!(Envelope::decode(raw.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(Envelope::decode(Bytes::from_static(b"hello world")).is_err());
    }

    #[test]
    fn validity_needs_equal_generations_and_a_current_epoch() {
        let stored = Stamp {
            epoch: 5,
            gens: vec![1, 2],
        };
        assert!(
            Stamp {
                epoch: 5,
                gens: vec![1, 2]
            }
            .validates(&stored)
        );
        assert!(
            Stamp {
                epoch: 4,
                gens: vec![1, 2]
            }
            .validates(&stored)
        );
        assert!(
            !Stamp {
                epoch: 6,
                gens: vec![1, 2]
            }
            .validates(&stored)
        );
        assert!(
            !Stamp {
                epoch: 5,
                gens: vec![1, 3]
            }
            .validates(&stored)
        );
    }

    #[test]
    fn etag_headers_are_the_quoted_lowercase_hex_of_the_digest() {
        for body in [&b""[..], b"x", b"[1,2]"] {
            let e = Etag::of(body);
            let hex: String = e.0.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(e.header_value(), format!("\"{hex}\""));
        }
    }

    #[test]
    fn etags_match_if_none_match_lists() {
        let e = Etag::of(b"x");
        let v = e.header_value();
        assert!(e.matches(&v));
        assert!(e.matches(&format!("\"nope\", W/{v}")));
        assert!(e.matches("*"));
        assert!(!e.matches("\"nope\""));
    }
}
